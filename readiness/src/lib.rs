//! The readiness service: tells the main app, cheaply and instantly and without Kubernetes
//! credentials, whether telephony is available. Every answer comes from memory (a watch of
//! TelephonyServices); when the watch can't be trusted, every answer is `unknown` (503).

mod freshness;
pub mod heartbeat;
mod http;
pub mod openapi;
pub mod view;

use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Client, ResourceExt};
use tokio::sync::broadcast;

pub use freshness::{now_ms, Freshness};
pub use http::router;

// The API's types and names, under the paths the modules use.
pub(crate) use dialtone_api::{crd, names};

use crate::crd::TelephonyService;
use heartbeat::Board;
use view::{Heartbeats, StatusView};

/// The readiness service's connection limits: 30 s for a request head, 16 KiB heads, 100
/// headers, and 4,096 connections (each app replica holds one `/v1/watch` stream; the load test
/// runs 1,000 of them).
const LIMITS: dialtone_serving::Limits = dialtone_serving::Limits {
    header_read_timeout: Duration::from_secs(30),
    max_head_bytes: 16 * 1024,
    max_connections: 4096,
    write_timeout: Duration::from_secs(30),
};

/// What changed, for the SSE stream.
#[derive(Debug, Clone)]
pub enum Change {
    /// A service's new answer, as JSON: encoded once for every subscriber (with 1,000 of them,
    /// encoding per subscriber was most of the readiness service's CPU).
    Status(Arc<str>),
    Deleted {
        namespace: String,
        name: String,
    },
}

impl Change {
    pub fn status(view: &StatusView) -> Change {
        Change::Status(serde_json::to_string(view).unwrap_or_else(|_| "{}".into()).into())
    }
}

/// Everything the HTTP layer reads.
pub struct AppState {
    /// One cache per watched scope: `None` watches all namespaces.
    pub(crate) scopes: Vec<(Option<String>, Store<TelephonyService>)>,
    pub(crate) freshness: Freshness,
    pub(crate) changes: broadcast::Sender<Change>,
    pub(crate) metrics: http::Metrics,
    pub(crate) cors_origins: Vec<String>,
    /// The encoded answer per service, reused until the object or the confirmation time changes.
    pub(crate) answers: RwLock<HashMap<String, Arc<Answer>>>,
    /// The workers' heartbeats, unless turned off (`--worker-heartbeat=false`).
    pub(crate) heartbeats: Option<Arc<Board>>,
    /// Which services name which as their failover: backup → primaries, so a backup's change
    /// is pushed as its primaries' new answers too.
    pub(crate) primaries: RwLock<HashMap<String, BTreeSet<String>>>,
}

/// One service's answer, encoded once and served many times.
pub struct Answer {
    resource_version: Option<String>,
    confirmed_ms: i64,
    stale: bool,
    heartbeat_generation: u64,
    /// The failover service's object version: its changes change this answer.
    backup_version: Option<String>,
    /// Part of the body, so the answer is re-encoded when it ticks (at most once a second).
    pub(crate) retry_after: Option<u64>,
    pub(crate) status: axum::http::StatusCode,
    pub(crate) etag: axum::http::HeaderValue,
    pub(crate) body: axum::body::Bytes,
}

impl AppState {
    fn store_for(&self, namespace: &str) -> Option<&Store<TelephonyService>> {
        self.scopes.iter().find(|(ns, _)| ns.as_deref().is_none_or(|n| n == namespace)).map(|(_, s)| s)
    }

    pub fn in_scope(&self, namespace: &str) -> bool {
        self.store_for(namespace).is_some()
    }

    /// The encoded answer for one service, or None when it doesn't exist.
    pub fn answer(&self, namespace: &str, name: &str) -> Option<Arc<Answer>> {
        let store = self.store_for(namespace)?;
        let obj = store.get(&reflector::ObjectRef::new(name).within(namespace))?;
        let now = now_ms();
        let (confirmed_ms, stale) = (self.freshness.confirmed_ms(), self.freshness.is_stale(now));
        let generation = self.heartbeats.as_ref().map_or(0, |b| b.generation());
        let key = format!("{namespace}/{name}");
        let backup = self.backup_of(&obj);
        let backup_version = backup.as_ref().and_then(|b| b.metadata.resource_version.clone());
        // Same inputs, same health; only an unhealthy answer's Retry-After ticks with time.
        let fresh = |a: &Answer| {
            a.resource_version == obj.metadata.resource_version
                && a.confirmed_ms == confirmed_ms
                && a.stale == stale
                && a.heartbeat_generation == generation
                && a.backup_version == backup_version
                && (a.retry_after.is_none() || a.retry_after == view::retry_after(&obj, false, now))
        };
        if let Some(a) = self.answers.read().ok().and_then(|m| m.get(&key).filter(|a| fresh(a)).cloned()) {
            return Some(a);
        }
        let v = view::view(&obj, confirmed_ms, stale, now, self.heartbeats_of(&key).as_ref());
        let v = view::with_failover(v, &obj, backup.map(|b| self.own_view(&b)).as_ref());
        let body = serde_json::to_vec(&v).ok()?;
        let answer = Arc::new(Answer {
            resource_version: obj.metadata.resource_version.clone(),
            confirmed_ms,
            stale,
            heartbeat_generation: generation,
            backup_version,
            retry_after: v.retry_after,
            status: axum::http::StatusCode::from_u16(v.http_status())
                .unwrap_or(axum::http::StatusCode::SERVICE_UNAVAILABLE),
            etag: http::etag_of(&body),
            body: body.into(),
        });
        if let Ok(mut answers) = self.answers.write() {
            answers.insert(key, answer.clone());
        }
        Some(answer)
    }

    /// What the heartbeats say about `namespace/name`, when they are followed.
    fn heartbeats_of(&self, service: &str) -> Option<Heartbeats> {
        self.heartbeats.as_ref().map(|b| b.heartbeats(service))
    }

    /// The answer for one cached object, as the SSE stream sends it.
    fn view_of(&self, t: &TelephonyService) -> StatusView {
        let backup = self.backup_of(t).map(|b| self.own_view(&b));
        view::with_failover(self.own_view(t), t, backup.as_ref())
    }

    /// A service's answer from its own workers alone (no failover).
    fn own_view(&self, t: &TelephonyService) -> StatusView {
        let now = now_ms();
        let (confirmed, stale) = (self.freshness.confirmed_ms(), self.freshness.is_stale(now));
        let hb = self.heartbeats_of(&format!("{}/{}", t.namespace().unwrap_or_default(), t.name_any()));
        view::view(t, confirmed, stale, now, hb.as_ref())
    }

    /// The service `t` names in `spec.failover`, when this readiness service sees it.
    fn backup_of(&self, t: &TelephonyService) -> Option<Arc<TelephonyService>> {
        let (namespace, name) = backup_name(t)?;
        self.store_for(&namespace)?.get(&reflector::ObjectRef::new(&name).within(&namespace))
    }

    /// Sends `t`'s new answer on the SSE stream, and those of the services it is the backup of.
    fn push(&self, t: &TelephonyService) {
        let _ = self.changes.send(Change::status(&self.view_of(t)));
        self.push_primaries_of(t);
    }

    /// Sends the new answers of the services `t` is the backup of.
    fn push_primaries_of(&self, t: &TelephonyService) {
        let key = format!("{}/{}", t.namespace().unwrap_or_default(), t.name_any());
        let primaries = self.primaries.read().ok().and_then(|p| p.get(&key).cloned()).unwrap_or_default();
        for primary in primaries {
            let Some((namespace, name)) = primary.split_once('/') else { continue };
            if let Some(p) = self
                .store_for(namespace)
                .and_then(|s| s.get(&reflector::ObjectRef::new(name).within(namespace)))
            {
                let _ = self.changes.send(Change::status(&self.view_of(&p)));
            }
        }
    }

    /// Records whom `t` names as its backup (None: deleted, or no failover).
    fn index_failover(&self, t: &TelephonyService, backup: Option<String>) {
        let key = format!("{}/{}", t.namespace().unwrap_or_default(), t.name_any());
        let Ok(mut index) = self.primaries.write() else { return };
        index.retain(|_, primaries| {
            primaries.remove(&key);
            !primaries.is_empty()
        });
        if let Some(b) = backup {
            index.entry(b).or_default().insert(key);
        }
    }

    /// Every visible service, sorted by namespace and name.
    pub fn all(&self) -> Vec<StatusView> {
        let mut all: Vec<StatusView> =
            self.scopes.iter().flat_map(|(_, s)| s.state()).map(|t| self.view_of(&t)).collect();
        all.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
        all
    }
}

/// The (namespace, name) `t` names in `spec.failover` (its own namespace when it names none).
fn backup_name(t: &TelephonyService) -> Option<(String, String)> {
    let f = t.spec.failover.as_ref()?;
    Some((f.namespace.clone().unwrap_or_else(|| t.namespace().unwrap_or_default()), f.service.clone()))
}

/// What the cache keeps: only what answers need (name, namespace, status with its Ready condition): with a thousand
/// services cached, the rest of each object would be most of the service's memory.
fn keep_what_answers_need(t: &mut TelephonyService) {
    let meta = &mut t.metadata;
    *meta = kube::api::ObjectMeta {
        name: meta.name.take(),
        namespace: meta.namespace.take(),
        uid: meta.uid.take(),
        resource_version: meta.resource_version.take(),
        ..Default::default()
    };
    t.spec.image = String::new();
    t.spec.telnyx.connection_id = String::new();
    t.spec.telnyx.base_url = String::new();
    t.spec.resources = Default::default();
    t.spec.pod = Default::default();
    if let Some(s) = t.status.as_mut() {
        // The failures in the budget window stay (at most maxRestarts + 1), for the timeline.
        let failures = std::mem::take(&mut s.history.failures);
        s.history = Default::default();
        s.history.failures = failures;
        for f in &mut s.history.failures {
            (f.message, f.pod) = (String::new(), String::new());
        }
        s.conditions.retain(|c| c.type_ == crd::ConditionType::Ready.as_str());
        for c in &mut s.conditions {
            c.message = String::new();
        }
    }
}

/// Settings of `telephony-operator readiness`.
#[derive(Debug, Clone)]
pub struct Settings {
    pub addr: SocketAddr,
    pub namespaces: Vec<String>,
    pub stale_after: Duration,
    pub cors_origins: Vec<String>,
    /// Follow the workers' heartbeat streams (off: the answers follow Kubernetes alone).
    pub worker_heartbeat: bool,
}

/// Runs the readiness service until `shutdown` resolves.
pub async fn run(
    client: Client,
    settings: Settings,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let (changes, _) = broadcast::channel(1024);
    let scopes_wanted: Vec<Option<String>> = if settings.namespaces.is_empty() {
        vec![None]
    } else {
        settings.namespaces.iter().cloned().map(Some).collect()
    };
    let mut scopes = Vec::new();
    let mut streams = Vec::new();
    for ns in &scopes_wanted {
        let api: Api<TelephonyService> = scoped(&client, ns);
        let (store, writer) = reflector::store();
        let stream = reflector::reflector(
            writer,
            watcher(api.clone(), watcher::Config::default().page_size(100))
                .backoff(dialtone_api::watch::backoff())
                .modify(keep_what_answers_need),
        );
        streams.push((api, stream.boxed()));
        scopes.push((ns.clone(), store));
    }
    let mut metrics = http::Metrics::default();
    let heartbeats = settings.worker_heartbeat.then(|| {
        let (board, changed) = Board::new();
        board.register(metrics.registry_mut());
        (board, changed)
    });
    let state = Arc::new(AppState {
        scopes,
        freshness: Freshness::new(settings.stale_after),
        changes,
        metrics,
        cors_origins: settings.cors_origins.clone(),
        answers: Default::default(),
        heartbeats: heartbeats.as_ref().map(|(b, _)| b.clone()),
        primaries: Default::default(),
    });

    // Synced once every watch has listed: the services', and the worker pods' when followed.
    let watches = streams.len() * if heartbeats.is_some() { 2 } else { 1 };
    let synced = Arc::new(AtomicUsize::new(0));
    let on_synced = {
        let (state, synced) = (state.clone(), synced.clone());
        move || {
            if synced.fetch_add(1, Ordering::SeqCst) + 1 == watches {
                state.freshness.set_synced();
            }
        }
    };
    for (api, stream) in streams {
        tokio::spawn(follow_services(state.clone(), stream, on_synced.clone()));
        tokio::spawn(probe(state.clone(), api));
    }
    if let Some((board, changed)) = heartbeats {
        for ns in &scopes_wanted {
            tokio::spawn(heartbeat::follow(scoped::<Pod>(&client, ns), board.clone(), on_synced.clone()));
        }
        tokio::spawn(push_heartbeat_changes(state.clone(), changed));
    }
    tokio::spawn(push_staleness_flips(state.clone()));

    let listener = tokio::net::TcpListener::bind(settings.addr).await?;
    tracing::info!(addr = %settings.addr, namespaces = ?settings.namespaces, heartbeat = settings.worker_heartbeat, "readiness service listening");
    dialtone_serving::serve(listener, router(state), LIMITS, shutdown).await?;
    Ok(())
}

/// An Api over one namespace, or all of them.
fn scoped<K>(client: &Client, namespace: &Option<String>) -> Api<K>
where
    K: kube::Resource<Scope = kube::core::NamespaceResourceScope>,
    K::DynamicType: Default,
{
    match namespace {
        Some(n) => Api::namespaced(client.clone(), n),
        None => Api::all(client.clone()),
    }
}

type ServiceEvents =
    futures::stream::BoxStream<'static, Result<watcher::Event<TelephonyService>, watcher::Error>>;

/// Keeps the cache's answers and the SSE stream in step with the TelephonyService watch.
async fn follow_services(st: Arc<AppState>, mut stream: ServiceEvents, on_synced: impl FnOnce()) {
    let mut on_synced = Some(on_synced);
    while let Some(event) = stream.next().await {
        st.freshness.watch_event(event.is_ok(), now_ms());
        match event {
            Ok(watcher::Event::Apply(t)) | Ok(watcher::Event::InitApply(t)) => {
                st.index_failover(&t, backup_name(&t).map(|(ns, name)| format!("{ns}/{name}")));
                st.push(&t);
            }
            Ok(watcher::Event::Delete(t)) => {
                st.index_failover(&t, None);
                let (namespace, name) = (t.namespace().unwrap_or_default(), t.name_any());
                if let Ok(mut answers) = st.answers.write() {
                    answers.remove(&format!("{namespace}/{name}"));
                }
                let _ = st.changes.send(Change::Deleted { namespace, name });
                st.push_primaries_of(&t);
            }
            // The reflector has swapped the full list into the cache before this.
            Ok(watcher::Event::InitDone) => {
                if let Some(synced) = on_synced.take() {
                    synced();
                }
            }
            Ok(watcher::Event::Init) => {}
            Err(e) => tracing::warn!(error = %e, "TelephonyService watch failed; retrying"),
        }
    }
}

/// A cheap list that proves the API still answers for this scope.
async fn probe(st: Arc<AppState>, api: Api<TelephonyService>) {
    let mut tick = tokio::time::interval(st.freshness.probe_period());
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let one = ListParams::default().limit(1);
    loop {
        tick.tick().await;
        let started = now_ms();
        let probe = tokio::time::timeout(st.freshness.probe_period(), api.list_metadata(&one));
        if let Ok(Ok(_)) = probe.await {
            st.freshness.probe_ok(started);
        }
    }
}

/// A worker went up or down: tell SSE clients the service's new answer at once.
async fn push_heartbeat_changes(
    st: Arc<AppState>,
    mut changed: tokio::sync::mpsc::UnboundedReceiver<String>,
) {
    while let Some(service) = changed.recv().await {
        let Some((namespace, name)) = service.split_once('/') else { continue };
        let Some(store) = st.store_for(namespace) else { continue };
        if let Some(t) = store.get(&reflector::ObjectRef::new(name).within(namespace)) {
            st.push(&t);
        }
    }
}

/// Staleness flips change every answer: tell SSE clients.
async fn push_staleness_flips(st: Arc<AppState>) {
    let mut was_stale = true;
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    loop {
        tick.tick().await;
        let stale = st.freshness.is_stale(now_ms());
        if stale != was_stale {
            tracing::info!(stale, "readiness data {}", if stale { "went stale" } else { "is fresh" });
            for v in st.all() {
                let _ = st.changes.send(Change::status(&v));
            }
            was_stale = stale;
        }
    }
}
