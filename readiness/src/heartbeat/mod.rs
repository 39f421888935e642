//! The fast path: the readiness service holds a heartbeat stream to every worker pod of the
//! services it serves, so a worker that dies (its socket closes at once) or hangs (3 beats
//! missed) is down in the answers within milliseconds, seconds before the kubelet notices.
//!
//! A worker is up only when both agree: the kubelet calls its pod Ready *and* its beats flow.
//! A worker the readiness service can't reach counts as down, even while Kubernetes calls it
//! Ready (a partition): never a "ready" that nobody has confirmed.

mod pods;
pub mod stream;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use tokio::sync::mpsc;

pub use pods::follow;
use stream::{Lost, Signal};

use super::now_ms;
use super::view::Heartbeats;

/// After a lost stream, try again after this, doubling per failed try up to [`MAX_RETRY`]: a
/// killed worker's container is back in about a second, and counts as up once it beats again.
const FIRST_RETRY: Duration = Duration::from_millis(100);
const MAX_RETRY: Duration = Duration::from_secs(1);

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CauseLabels {
    cause: &'static str,
}

#[derive(Default)]
struct Metrics {
    lost: Family<CauseLabels, Counter>,
    beating: Gauge,
    streams: Gauge,
}

/// One worker pod, as the readiness service sees it.
#[derive(Default)]
pub struct Link {
    kube_ready: AtomicBool,
    beating: AtomicBool,
    /// An old worker without `/v1/heartbeat`: Kubernetes alone decides for it.
    legacy: AtomicBool,
    last_down: Mutex<Option<(i64, String)>>,
    /// Draining (SIGTERM): its live calls.
    draining: Mutex<Option<u32>>,
}

impl Link {
    fn up(&self) -> bool {
        self.kube_ready.load(Ordering::SeqCst)
            && (self.beating.load(Ordering::SeqCst) || self.legacy.load(Ordering::SeqCst))
    }
}

/// Every followed worker, by service (`namespace/name`) and pod name.
pub struct Board {
    services: RwLock<HashMap<String, HashMap<String, Arc<Link>>>>,
    /// Bumped on every change that can change an answer: cached answers compare it.
    generation: AtomicU64,
    changed: mpsc::UnboundedSender<String>,
    metrics: Metrics,
}

impl Board {
    /// The board, and the services whose workers changed (for the SSE push).
    pub fn new() -> (Arc<Board>, mpsc::UnboundedReceiver<String>) {
        let (changed, rx) = mpsc::unbounded_channel();
        let board = Board {
            services: Default::default(),
            generation: AtomicU64::new(0),
            changed,
            metrics: Metrics::default(),
        };
        (Arc::new(board), rx)
    }

    pub fn register(&self, registry: &mut Registry) {
        let r = registry.sub_registry_with_prefix("dialtone_readiness_heartbeat");
        let m = &self.metrics;
        r.register("lost", "Workers marked down by their heartbeat stream, by cause", m.lost.clone());
        r.register("beating", "Workers whose beats flow", m.beating.clone());
        r.register("streams", "Worker pods followed (one stream each)", m.streams.clone());
    }

    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::SeqCst)
    }

    /// What the beats say about `namespace/name` (no workers followed: none up).
    pub fn heartbeats(&self, service: &str) -> Heartbeats {
        let Ok(services) = self.services.read() else { return Heartbeats::default() };
        let Some(pods) = services.get(service) else { return Heartbeats::default() };
        let up = pods.values().filter(|l| l.up()).count();
        let last_down = pods
            .iter()
            .filter_map(|(pod, l)| {
                let (at, why) = l.last_down.lock().ok()?.clone()?;
                Some((at, format!("pod {pod}: {why}")))
            })
            .max()
            .map(|(_, why)| why);
        let mut draining: Vec<(String, u32)> =
            pods.iter().filter_map(|(pod, l)| Some((pod.clone(), (*l.draining.lock().ok()?)?))).collect();
        draining.sort();
        Heartbeats { up: i32::try_from(up).unwrap_or(i32::MAX), last_down, draining }
    }

    fn changed(&self, service: &str) {
        self.generation.fetch_add(1, Ordering::SeqCst);
        let _ = self.changed.send(service.to_string());
    }

    fn add(&self, service: &str, pod: &str) -> Arc<Link> {
        let link = Arc::new(Link::default());
        if let Ok(mut services) = self.services.write() {
            services.entry(service.to_string()).or_default().insert(pod.to_string(), link.clone());
        }
        self.metrics.streams.inc();
        link
    }

    fn remove(&self, service: &str, pod: &str) {
        let removed = {
            let Ok(mut services) = self.services.write() else { return };
            let Some(pods) = services.get_mut(service) else { return };
            let link = pods.remove(pod);
            if pods.is_empty() {
                services.remove(service);
            }
            link
        };
        if let Some(link) = removed {
            self.metrics.streams.dec();
            if link.beating.load(Ordering::SeqCst) {
                self.metrics.beating.dec();
            }
            self.changed(service);
        }
    }

    fn kube_ready(&self, service: &str, link: &Link, ready: bool) {
        if link.kube_ready.swap(ready, Ordering::SeqCst) != ready {
            self.changed(service);
        }
    }

    fn beat(&self, service: &str, link: &Link) {
        self.set_draining(service, link, None);
        if !link.beating.swap(true, Ordering::SeqCst) {
            self.metrics.beating.inc();
            self.changed(service);
        }
    }

    /// The worker stopped beating, for `cause`: counted and told once per fall.
    fn down(&self, service: &str, link: &Link, cause: &'static str, why: impl FnOnce() -> String) {
        if !link.beating.swap(false, Ordering::SeqCst) {
            return;
        }
        let why = why();
        tracing::info!(service, cause, "worker down: {why}");
        self.metrics.beating.dec();
        self.metrics.lost.get_or_create(&CauseLabels { cause }).inc();
        if let Ok(mut last) = link.last_down.lock() {
            *last = Some((now_ms(), why));
        }
        self.changed(service);
    }

    /// A worker that drains is down for new calls at once; its live calls are shown.
    fn draining(&self, service: &str, link: &Link, calls: u32) {
        self.down(service, link, "draining", || format!("draining, {calls} live calls"));
        self.set_draining(service, link, Some(calls));
    }

    fn set_draining(&self, service: &str, link: &Link, calls: Option<u32>) {
        let Ok(mut draining) = link.draining.lock() else { return };
        if *draining != calls {
            *draining = calls;
            drop(draining);
            self.changed(service);
        }
    }

    fn legacy(&self, service: &str, link: &Link) {
        tracing::warn!(
            service,
            "a worker has no {} (an older image): Kubernetes alone decides for it",
            stream::PATH
        );
        link.legacy.store(true, Ordering::SeqCst);
        self.changed(service);
    }
}

/// Holds the stream to one worker for as long as its pod is followed (the task is aborted then).
async fn follow_worker(board: Arc<Board>, service: String, link: Arc<Link>, addr: SocketAddr) {
    let mut failures = 0u32;
    // A silence not confirmed yet: a beating worker whose stream goes quiet is asked once more, on
    // a fresh connection, before it is called down. A hung process can't answer it; one that was
    // only starved of CPU for a moment does (seen under load: 300 ms gaps on a saturated node).
    let mut suspect: Option<Lost> = None;
    loop {
        let first_within = suspect.map_or(stream::FIRST_SIGNAL, confirm_window);
        let mut heard = false;
        let lost = stream::hold(addr, first_within, |signal| {
            if !heard && suspect.is_some() {
                tracing::info!(%service, "a worker's stream went quiet, but it answered a fresh one: still up");
            }
            heard = true;
            match signal {
                Signal::Beat => board.beat(&service, &link),
                Signal::Unready(why) => {
                    board.down(&service, &link, "unready", || format!("not ready: {why}"))
                }
                Signal::Draining(calls) => board.draining(&service, &link, calls),
            }
        })
        .await;
        if lost == Lost::Rejected(404) {
            board.legacy(&service, &link);
            return;
        }
        let earlier = suspect.take().filter(|_| !heard);
        if earlier.is_none() && matches!(lost, Lost::Silent(_)) && link.beating.load(Ordering::SeqCst) {
            suspect = Some(lost);
            continue;
        }
        let lost = earlier.unwrap_or(lost);
        board.down(&service, &link, lost.cause(), || lost.describe());
        failures = if heard { 0 } else { failures.saturating_add(1) };
        tokio::time::sleep(retry_delay(failures)).await;
    }
}

/// How long the confirming connection has: one beat period (the silence was 3), at least 50 ms.
fn confirm_window(silence: Lost) -> Duration {
    match silence {
        Lost::Silent(ms) => Duration::from_millis((ms / u64::from(stream::MISSED_BEATS)).max(50)),
        _ => stream::FIRST_SIGNAL,
    }
}

fn retry_delay(failures: u32) -> Duration {
    let factor = 1u32.checked_shl(failures.saturating_sub(1)).unwrap_or(u32::MAX);
    FIRST_RETRY.saturating_mul(factor).min(MAX_RETRY)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_silence_is_confirmed_within_one_more_period() {
        assert_eq!(confirm_window(Lost::Silent(300)), Duration::from_millis(100));
        assert_eq!(confirm_window(Lost::Silent(90)), Duration::from_millis(50), "at least 50 ms");
    }

    #[test]
    fn retries_soon_after_a_lost_stream_then_back_off_to_a_second() {
        let waits: Vec<u128> = (0..6).map(|n| retry_delay(n).as_millis()).collect();
        assert_eq!(waits, [100, 100, 200, 400, 800, 1000]);
        assert_eq!(retry_delay(u32::MAX), MAX_RETRY);
    }

    #[test]
    fn a_worker_is_up_only_while_the_kubelet_and_the_beats_agree() {
        let (board, mut changes) = Board::new();
        let link = board.add("shop/calls", "calls-a");
        let up = |b: &Board| b.heartbeats("shop/calls").up;
        assert_eq!(up(&board), 0);
        board.beat("shop/calls", &link);
        assert_eq!(up(&board), 0, "beats without the kubelet's Ready");
        board.kube_ready("shop/calls", &link, true);
        assert_eq!(up(&board), 1);
        let generation = board.generation();
        board.beat("shop/calls", &link);
        assert_eq!(board.generation(), generation, "a beat that changes nothing changes no answer");

        let down = |lost: Lost| board.down("shop/calls", &link, lost.cause(), || lost.describe());
        down(Lost::Closed);
        let hb = board.heartbeats("shop/calls");
        assert_eq!((hb.up, hb.last_down.as_deref()), (0, Some("pod calls-a: its heartbeat stream closed")));
        assert!(board.generation() > generation);
        down(Lost::Refused);
        assert_eq!(
            board.metrics.lost.get_or_create(&CauseLabels { cause: "closed" }).get(),
            1,
            "counted once per fall, not per failed reconnect"
        );
        assert_eq!(board.metrics.lost.get_or_create(&CauseLabels { cause: "refused" }).get(), 0);

        board.beat("shop/calls", &link);
        board.down("shop/calls", &link, "unready", || "not ready: Telnyx check failed".into());
        let hb = board.heartbeats("shop/calls");
        assert_eq!(hb.last_down.as_deref(), Some("pod calls-a: not ready: Telnyx check failed"));
        board.beat("shop/calls", &link);
        board.draining("shop/calls", &link, 2);
        let hb = board.heartbeats("shop/calls");
        assert_eq!(
            (hb.up, hb.draining.clone()),
            (0, vec![("calls-a".to_string(), 2)]),
            "draining is down for new calls"
        );
        assert_eq!(hb.last_down.as_deref(), Some("pod calls-a: draining, 2 live calls"));
        let generation = board.generation();
        board.draining("shop/calls", &link, 1);
        assert!(board.generation() > generation, "a call ending changes the answer");
        assert_eq!(board.heartbeats("shop/calls").draining, vec![("calls-a".to_string(), 1)]);
        board.legacy("shop/calls", &link);
        assert_eq!(up(&board), 1, "an old worker without heartbeats: the kubelet decides");
        board.remove("shop/calls", "calls-a");
        assert_eq!(up(&board), 0);
        let mut told = vec![];
        while let Ok(s) = changes.try_recv() {
            told.push(s);
        }
        assert!(told.len() >= 5 && told.iter().all(|s| s == "shop/calls"), "{told:?}");
    }
}
