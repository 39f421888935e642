//! "No service reported Ready while its workers are down", checked all along, not only once a
//! round has recovered: every 250 ms the monitor lists the services and their pods, and times each
//! window in which a service's status says Ready (for its current generation) while none of its
//! worker pods is ready.
//!
//! Such a window always opens for a moment: the node writes the pod not ready, and the status
//! follows once the operator has seen it and written. It is stale when it outlasts the operator's
//! reaction (`REACTION`). While no operator can write (the leader was killed and no standby leads
//! yet, or the operators' apiserver or etcd restarts) nothing can follow; windows that overlap
//! such a blind interval are counted apart, not as violations.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;
use kube::api::ListParams;
use kube::{Api, ResourceExt};
use telephony_operator::crd::{Phase, TelephonyService};

use super::{pod_ready, INSTANCE};

/// How long the status may trail the node: the watch event through the proxy (new connections
/// wait up to 0.2 s), a reconcile, and the status write, with room for a watch the proxy just cut.
pub const REACTION: Duration = Duration::from_secs(3);
const EVERY: Duration = Duration::from_millis(250);

/// Intervals in which no operator could write: each opens at a fault and closes once an operator
/// leads again (or the apiserver is back).
#[derive(Clone, Default)]
pub struct Blind(Arc<Mutex<Vec<Interval>>>);

/// From, and until (None: still open).
type Interval = (Instant, Option<Instant>);

impl Blind {
    pub fn open(&self) {
        if let Ok(mut b) = self.0.lock() {
            b.push((Instant::now(), None));
        }
    }

    pub fn close(&self) {
        if let Ok(mut b) = self.0.lock() {
            for (_, end) in b.iter_mut().filter(|(_, end)| end.is_none()) {
                *end = Some(Instant::now());
            }
        }
    }

    /// Whether `[from, to]` overlaps a blind interval, or began within `REACTION` after one ended
    /// (the new leader's first look: its caches fill, then it reconciles).
    fn covers(&self, from: Instant, to: Instant) -> bool {
        self.0.lock().is_ok_and(|b| {
            b.iter().any(|(start, end)| *start <= to && end.is_none_or(|e| from <= e + REACTION))
        })
    }
}

/// What the monitor saw.
#[derive(Default)]
pub struct Windows {
    pub samples: usize,
    /// Windows that closed within `REACTION`, and the longest of them.
    pub prompt: usize,
    pub longest_prompt: Duration,
    /// Windows that overlapped a blind interval, and the longest of them.
    pub blind: usize,
    pub longest_blind: Duration,
    /// Stale: outside any blind interval and longer than `REACTION`.
    pub stale: Vec<String>,
}

impl Windows {
    fn close(&mut self, name: &str, from: Instant, to: Instant, blind: &Blind) {
        let took = to - from;
        if blind.covers(from, to) {
            self.blind += 1;
            self.longest_blind = self.longest_blind.max(took);
        } else if took <= REACTION {
            self.prompt += 1;
            self.longest_prompt = self.longest_prompt.max(took);
        } else {
            self.stale.push(format!("{name} said Ready for {} with no ready worker", crate::stats::ms(took)));
        }
    }
}

/// Samples until `stop` is set; open windows are closed at the end.
pub async fn monitor(
    tsvcs: Api<TelephonyService>,
    pods: Api<Pod>,
    blind: Blind,
    stop: Arc<std::sync::atomic::AtomicBool>,
) -> Windows {
    let mut seen = Windows::default();
    let mut open: HashMap<String, Instant> = HashMap::new();
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        tokio::time::sleep(EVERY).await;
        let (Ok(t), Ok(p)) =
            (tsvcs.list(&ListParams::default()).await, pods.list(&ListParams::default()).await)
        else {
            continue; // the apiserver restarts: nothing to sample
        };
        let now = Instant::now();
        seen.samples += 1;
        let workers = ready_workers(&p.items);
        let stale_now: Vec<String> = t
            .items
            .iter()
            .filter(|t| said_ready(t) && !workers.contains_key(&t.name_any()))
            .map(|t| t.name_any())
            .collect();
        for name in &stale_now {
            open.entry(name.clone()).or_insert(now);
        }
        let closed: Vec<String> = open.keys().filter(|n| !stale_now.contains(n)).cloned().collect();
        for name in closed {
            if let Some(from) = open.remove(&name) {
                seen.close(&name, from, now, &blind);
            }
        }
    }
    let now = Instant::now();
    for (name, from) in open {
        seen.close(&name, from, now, &blind);
    }
    seen
}

/// The service's status says Ready, for its current generation.
pub fn said_ready(t: &TelephonyService) -> bool {
    t.status
        .as_ref()
        .is_some_and(|s| s.phase == Phase::Ready && s.observed_generation == t.metadata.generation)
}

/// Ready worker pods (not being deleted) per service name; services with none are absent.
pub fn ready_workers(pods: &[Pod]) -> HashMap<String, usize> {
    let mut by: HashMap<String, usize> = HashMap::new();
    for p in pods.iter().filter(|p| p.metadata.deletion_timestamp.is_none() && pod_ready(p)) {
        *by.entry(p.labels().get(INSTANCE).cloned().unwrap_or_default()).or_default() += 1;
    }
    by
}
