//! The readiness service: tells the main app, cheaply and instantly and without Kubernetes
//! credentials, whether telephony is available. Every answer comes from memory (a watch of
//! TelephonyServices); when the watch can't be trusted, every answer is `unknown` (503).

mod freshness;
mod http;
pub mod view;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use futures::StreamExt;
use kube::api::{Api, ListParams};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Client, ResourceExt};
use tokio::sync::broadcast;

pub use freshness::{now_ms, Freshness};
pub use http::router;

use crate::crd::TelephonyService;
use view::StatusView;

/// What changed, for the SSE stream.
#[derive(Debug, Clone)]
pub enum Change {
    Status(Arc<StatusView>),
    Deleted { namespace: String, name: String },
}

/// Everything the HTTP layer reads.
pub struct Readiness {
    /// One cache per watched scope: `None` watches all namespaces.
    pub(crate) scopes: Vec<(Option<String>, Store<TelephonyService>)>,
    pub(crate) freshness: Freshness,
    pub(crate) changes: broadcast::Sender<Change>,
    pub(crate) metrics: http::Metrics,
    pub(crate) cors_origins: Vec<String>,
    /// The encoded answer per service, reused until the object or the confirmation time changes.
    pub(crate) answers: RwLock<HashMap<String, Arc<Answer>>>,
}

/// One service's answer, encoded once and served many times.
pub struct Answer {
    resource_version: Option<String>,
    confirmed_ms: i64,
    stale: bool,
    /// Part of the body, so the answer is re-encoded when it ticks (at most once a second).
    pub(crate) retry_after: Option<u64>,
    pub(crate) status: axum::http::StatusCode,
    pub(crate) etag: axum::http::HeaderValue,
    pub(crate) body: axum::body::Bytes,
}

impl Readiness {
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
        let retry_after = view::retry_after(&obj, view::word(&obj, stale).1, now);
        let key = format!("{namespace}/{name}");
        let fresh = |a: &Answer| {
            a.resource_version == obj.metadata.resource_version
                && a.confirmed_ms == confirmed_ms
                && a.stale == stale
                && a.retry_after == retry_after
        };
        if let Some(a) = self.answers.read().ok().and_then(|m| m.get(&key).filter(|a| fresh(a)).cloned()) {
            return Some(a);
        }
        let v = view::view(&obj, confirmed_ms, stale, now);
        let body = serde_json::to_vec(&v).ok()?;
        let answer = Arc::new(Answer {
            resource_version: obj.metadata.resource_version.clone(),
            confirmed_ms,
            stale,
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

    /// Every visible service, sorted by namespace and name.
    pub fn all(&self) -> Vec<StatusView> {
        let now = now_ms();
        let stale = self.freshness.is_stale(now);
        let confirmed = self.freshness.confirmed_ms();
        let mut all: Vec<StatusView> = self
            .scopes
            .iter()
            .flat_map(|(_, s)| s.state())
            .map(|t| view::view(&t, confirmed, stale, now))
            .collect();
        all.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
        all
    }
}

/// Keeps only what answers need (name, namespace, status with its Ready condition): with a thousand
/// services cached, the rest of each object would be most of the service's memory.
fn slim(t: &mut TelephonyService) {
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
        s.conditions.retain(|c| c.type_ == "Ready");
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
    for ns in scopes_wanted {
        let api: Api<TelephonyService> = match &ns {
            Some(n) => Api::namespaced(client.clone(), n),
            None => Api::all(client.clone()),
        };
        let (store, writer) = reflector::store();
        let stream = reflector::reflector(
            writer,
            watcher(api.clone(), watcher::Config::default().page_size(100)).default_backoff().modify(slim),
        );
        streams.push((api, stream.boxed()));
        scopes.push((ns, store));
    }
    let state = Arc::new(Readiness {
        scopes,
        freshness: Freshness::new(settings.stale_after),
        changes,
        metrics: http::Metrics::default(),
        cors_origins: settings.cors_origins.clone(),
        answers: Default::default(),
    });

    let synced_scopes = Arc::new(AtomicUsize::new(0));
    for (api, mut stream) in streams {
        let st = state.clone();
        let synced_scopes = synced_scopes.clone();
        tokio::spawn(async move {
            let mut listed = false;
            while let Some(event) = stream.next().await {
                let now = now_ms();
                st.freshness.watch_event(event.is_ok(), now);
                match event {
                    Ok(watcher::Event::Apply(t)) | Ok(watcher::Event::InitApply(t)) => {
                        let v = view::view(&t, st.freshness.confirmed_ms(), st.freshness.is_stale(now), now);
                        let _ = st.changes.send(Change::Status(Arc::new(v)));
                    }
                    Ok(watcher::Event::Delete(t)) => {
                        if let Ok(mut answers) = st.answers.write() {
                            answers.remove(&format!(
                                "{}/{}",
                                t.namespace().unwrap_or_default(),
                                t.name_any()
                            ));
                        }
                        let _ = st.changes.send(Change::Deleted {
                            namespace: t.namespace().unwrap_or_default(),
                            name: t.name_any(),
                        });
                    }
                    Ok(watcher::Event::InitDone) => {
                        // The reflector has swapped the full list into the cache before this.
                        if !listed {
                            listed = true;
                            if synced_scopes.fetch_add(1, Ordering::SeqCst) + 1 == st.scopes.len() {
                                st.freshness.set_synced();
                            }
                        }
                    }
                    Ok(watcher::Event::Init) => {}
                    Err(e) => tracing::warn!(error = %e, "TelephonyService watch failed; retrying"),
                }
            }
        });
        // The probe: a cheap list that proves the API still answers for this scope.
        let st = state.clone();
        tokio::spawn(async move {
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
        });
    }

    // Staleness flips change every answer: tell SSE clients.
    let st = state.clone();
    tokio::spawn(async move {
        let mut was_stale = true;
        let mut tick = tokio::time::interval(Duration::from_millis(250));
        loop {
            tick.tick().await;
            let stale = st.freshness.is_stale(now_ms());
            if stale != was_stale {
                tracing::info!(stale, "readiness data {}", if stale { "went stale" } else { "is fresh" });
                for v in st.all() {
                    let _ = st.changes.send(Change::Status(Arc::new(v)));
                }
                was_stale = stale;
            }
        }
    });

    let listener = tokio::net::TcpListener::bind(settings.addr).await?;
    tracing::info!(addr = %settings.addr, namespaces = ?settings.namespaces, "readiness service listening");
    axum::serve(listener, router(state)).with_graceful_shutdown(shutdown).await?;
    Ok(())
}
