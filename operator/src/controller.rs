//! The thin layer around [`supervisor::decide`]: watches, observes, acts.
//!
//! One watch per kind (TelephonyServices, worker Deployments, Services and Pods) feeds both a cache
//! and the reconcile queue, so a pod status change reaches its TelephonyService's reconcile at once
//! (the liveness watch). The leader is the only writer of status, so it decides from the status it
//! last wrote (a write-through cache) rather than from a watch cache that may not have caught up
//! yet: a failure is never counted twice. After a restart or failover the first look comes from a
//! fresh list, which holds everything persisted.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use jiff::Timestamp;
use kube::api::{Api, ApiResource};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::Reporter;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{predicates, watcher, Predicate, WatchStreamExt};
use kube::{Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;

use crate::admin::Health;
use crate::by_uid::ByUid;
use crate::crd::TelephonyService;
use crate::desired;
use crate::liveness::PodObservation;
use crate::metrics::{ErrorLabel, Metrics};
use crate::names::{app, MANAGER, SERVICE_LABEL};
use crate::slim::{self, CachedDeployment, CachedPod, CachedService};
use crate::status_cache::StatusCache;
use crate::supervisor::{self, Announcement, Severity};
use crate::worker_readiness;

mod act;
mod error;
mod just_applied;
pub use error::Error;

/// What this operator instance watches.
#[derive(Debug, Clone, Default)]
pub struct Scope {
    /// Watch one namespace (None: all).
    pub namespace: Option<String>,
    /// Only TelephonyServices matching this label selector (to shard services across operators).
    pub selector: Option<String>,
}

pub struct Context {
    client: Client,
    /// Who publishes events. A Recorder is made per reconcile: kube's keeps every event it sent
    /// for minutes (to merge repeats into a series), about 9 MB with a thousand services, and
    /// this operator's events are transitions, which don't repeat in bursts.
    reporter: Reporter,
    metrics: Metrics,
    pods: Store<CachedPod>,
    deployments: Store<CachedDeployment>,
    services: Store<CachedService>,
    tsvcs: Store<TelephonyService>,
    /// All four caches have listed once: before that, a missing pod may just be unseen yet, and
    /// deciding on it would forget (then recount) what was already counted.
    synced: Arc<AtomicBool>,
    /// The status this process last wrote, by object uid, until the watch cache holds it.
    written: StatusCache,
    /// `Created` Events said with a new service's first status, which waits (`status::first_held`).
    held_events: ByUid<Announcement>,
    /// Children applied, until the watch cache shows them.
    applied: just_applied::Applied,
    /// Consecutive failed reconciles per object, for exponential requeue.
    retries: Mutex<HashMap<ObjectRef<TelephonyService>, u32>>,
    /// When each service last got a Warning Event for a reconcile error, by reason.
    warned: Mutex<HashMap<(ObjectRef<TelephonyService>, &'static str), Instant>>,
    /// Ask not-Ready workers why (`--ask-workers`).
    ask_workers: bool,
    /// Where the API server serves PodDisruptionBudgets.
    budget_api: ApiResource,
}

impl Context {
    /// The uids of the TelephonyServices in the cache.
    fn live_uids(&self) -> std::collections::HashSet<String> {
        self.tsvcs.state().iter().filter_map(|t| t.uid()).collect()
    }

    /// Drop what this process keeps for a service that is being deleted.
    fn forget(&self, uid: &str) {
        self.written.forget(uid);
        self.held_events.remove(uid);
        self.applied.forget(uid);
    }
}

/// Reconciles running at once.
const RECONCILE_CONCURRENCY: u16 = 16;
/// Objects per page of a watch's initial list: a smaller peak when listing thousands of pods.
const LIST_PAGE_SIZE: u32 = 100;

fn api<K>(client: &Client, scope: &Scope) -> Api<K>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope> + Clone + DeserializeOwned + std::fmt::Debug,
    K::DynamicType: Default,
{
    match &scope.namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

type WatchStream<K> = BoxStream<'static, Result<K, watcher::Error>>;

/// A cached, health-reporting watch of `K` (lazy: nothing is sent before the stream is polled).
/// `slim`, if given, drops what decisions never read before an object is cached (children need
/// none: they are decoded slim, see `slim::Cached`).
fn watch<K>(
    api: Api<K>,
    config: watcher::Config,
    health: &Health,
    slot: usize,
    slim: Option<fn(&mut K)>,
) -> (Store<K>, WatchStream<K>)
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug + Send + Sync + 'static,
{
    let (store, writer) = reflector::store();
    let health = health.clone();
    let stream = reflector::reflector(
        writer,
        watcher(api, fresh_lists(config))
            .backoff(dialtone_api::watch::backoff())
            .modify(slim.unwrap_or(|_| {})),
    )
    .inspect(move |event| health.watch_result(slot, event.is_ok()))
    .touched_objects()
    .boxed();
    (store, stream)
}

/// Lists read etcd, not the apiserver's watch cache (kube's default, `Any`), which can trail it:
/// in the chaos runs a new leader listed a Deployment its predecessor had just created as missing,
/// and announced `Created` a second time. A stale list could as well recount a failure the last
/// leader had recorded. One quorum list per (re)start, in pages, costs little.
fn fresh_lists(config: watcher::Config) -> watcher::Config {
    config.page_size(LIST_PAGE_SIZE).list_semantic(watcher::ListSemantic::MostRecent)
}

/// The operator's four watches and their caches.
pub struct Watches {
    pub tsvcs: Store<TelephonyService>,
    tsvc_stream: WatchStream<TelephonyService>,
    written: StatusCache,
    deployments: Store<CachedDeployment>,
    deploy_stream: WatchStream<CachedDeployment>,
    services: Store<CachedService>,
    svc_stream: WatchStream<CachedService>,
    pods: Store<CachedPod>,
    pod_stream: WatchStream<CachedPod>,
}

impl Watches {
    pub fn new(client: &Client, scope: &Scope, health: &Health) -> Watches {
        let mut tsvc_config = watcher::Config::default();
        if let Some(selector) = &scope.selector {
            tsvc_config = tsvc_config.labels(selector);
        }
        let managed = format!("{}={MANAGER}", app::MANAGED_BY);
        let (tsvcs, tsvc_stream) = watch(
            api::<TelephonyService>(client, scope),
            tsvc_config,
            health,
            0,
            Some(slim::telephony_service_for_reconcile),
        );
        // Only a new spec or reset annotation calls for a look: status changes are this operator's
        // own writes, which it already knows (see `Context::written`).
        let written = StatusCache::default();
        let seen = written.clone();
        let tsvc_stream = tsvc_stream
            .inspect_ok(move |t| seen.seen(t))
            .predicate_filter(predicates::generation.combine(predicates::annotations), Default::default())
            .boxed();
        let managed_children = watcher::Config::default().labels(&managed);
        let (deployments, deploy_stream) =
            watch(api::<CachedDeployment>(client, scope), managed_children.clone(), health, 1, None);
        let (services, svc_stream) =
            watch(api::<CachedService>(client, scope), managed_children, health, 2, None);
        let pods_config = watcher::Config::default().labels(SERVICE_LABEL);
        let (pods, pod_stream) = watch(api::<CachedPod>(client, scope), pods_config, health, 3, None);
        Watches {
            tsvcs,
            tsvc_stream,
            written,
            deployments,
            deploy_stream,
            services,
            svc_stream,
            pods,
            pod_stream,
        }
    }
}

/// Waits until `store` has listed once. kube-runtime's readiness signal wakes only one waiter and
/// the Controller waits on the TelephonyService store too, so look again every 100 ms rather than
/// rely on being woken.
async fn until_ready<K>(store: &Store<K>)
where
    K: Resource + Clone + 'static,
    K::DynamicType: Eq + std::hash::Hash + Clone,
{
    while tokio::time::timeout(Duration::from_millis(100), store.wait_until_ready()).await.is_err() {}
}

/// `policy/v1` PodDisruptionBudgets where served (Kubernetes ≥ 1.21), else `policy/v1beta1`.
async fn disruption_budget_api(client: &Client) -> ApiResource {
    let served = client
        .list_api_group_resources("policy/v1")
        .await
        .is_ok_and(|list| list.resources.iter().any(|r| r.name == "poddisruptionbudgets"));
    let version = if served { "v1" } else { "v1beta1" };
    tracing::info!(api_version = %format!("policy/{version}"), "PodDisruptionBudgets");
    ApiResource {
        group: "policy".into(),
        version: version.into(),
        api_version: format!("policy/{version}"),
        kind: "PodDisruptionBudget".into(),
        plural: "poddisruptionbudgets".into(),
    }
}

/// Runs the controller until `shutdown` resolves.
pub async fn run(
    client: Client,
    watches: Watches,
    metrics: Metrics,
    health: Health,
    ask_workers: bool,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) {
    let synced = Arc::new(AtomicBool::new(false));
    let (flag, probe) = (synced.clone(), health.clone());
    let stores =
        (watches.tsvcs.clone(), watches.deployments.clone(), watches.services.clone(), watches.pods.clone());
    tokio::spawn(async move {
        let (a, b, c, d) = stores;
        futures::join!(until_ready(&a), until_ready(&b), until_ready(&c), until_ready(&d));
        flag.store(true, Ordering::SeqCst);
        probe.set_synced();
        tracing::info!("caches synced");
    });

    let reporter = Reporter { controller: MANAGER.into(), instance: std::env::var("POD_NAME").ok() };
    let budget_api = disruption_budget_api(&client).await;
    let ctx = Arc::new(Context {
        reporter,
        client,
        metrics,
        pods: watches.pods,
        deployments: watches.deployments,
        services: watches.services,
        tsvcs: watches.tsvcs.clone(),
        synced,
        written: watches.written,
        held_events: ByUid::default(),
        applied: just_applied::Applied::default(),
        retries: Mutex::default(),
        warned: Mutex::default(),
        ask_workers,
        budget_api,
    });
    // Bounded: a thousand reconciles at once (at start-up) would each hold objects and API responses
    // in memory at the same time; the API server, not the operator, sets the pace anyway.
    let config = kube::runtime::controller::Config::default().concurrency(RECONCILE_CONCURRENCY);
    Controller::for_stream(watches.tsvc_stream, watches.tsvcs)
        .with_config(config)
        .watches_stream(watches.deploy_stream, owner)
        .watches_stream(watches.svc_stream, owner)
        .watches_stream(watches.pod_stream, owner)
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, ctx)
        .for_each(|res| async move {
            match res {
                Ok((obj, _)) => tracing::debug!(object = %obj, "reconciled"),
                Err(kube::runtime::controller::Error::ReconcilerFailed(e, obj)) => {
                    tracing::warn!(object = %obj, error = %e, "reconcile failed")
                }
                Err(e) => tracing::debug!(error = %e, "controller"),
            }
        })
        .await;
}

/// The TelephonyService a child belongs to.
fn owner<K, S>(child: slim::Cached<K, S>) -> Option<ObjectRef<TelephonyService>>
where
    slim::Cached<K, S>: Resource,
{
    Some(ObjectRef::new(child.owner.as_ref()?).within(child.meta().namespace.as_ref()?))
}

async fn reconcile(cached: Arc<TelephonyService>, ctx: Arc<Context>) -> Result<Action, Error> {
    let _measured = ctx.metrics.reconcile_timer(); // success or error, early return or not
    if !ctx.synced.load(Ordering::SeqCst) {
        return Ok(Action::requeue(Duration::from_millis(100)));
    }
    let ns = cached.namespace().ok_or(Error::NoNamespace)?;
    let uid = cached.uid().unwrap_or_default();
    if cached.metadata.deletion_timestamp.is_some() {
        ctx.forget(&uid);
        return Ok(Action::await_change()); // owner references let the garbage collector clean up
    }
    let name = cached.name_any();
    let mut tsvc = (*cached).clone();
    if let Some(status) = ctx.written.latest(&uid, cached.metadata.resource_version.as_deref()) {
        tsvc.status = Some(status);
    }

    // Observe (from the watch caches).
    let child = desired::child_name(&tsvc);
    let deployment = ctx.deployments.get(&ObjectRef::new(&child).within(&ns)).map(|d| d.child());
    let service = ctx.services.get(&ObjectRef::new(&child).within(&ns)).map(|s| s.child());
    let just_applied = ctx.applied.unseen(&uid, deployment.is_some(), service.is_some());
    // Filtered under the cache's lock: cloning every pod's handle (and its namespace) per reconcile
    // was most of a reconcile's CPU at 5,000 services (2.56 ms against 1.19 ms at 1,000).
    let pods: Vec<PodObservation> = ctx
        .pods
        .state_filter(|p| p.owner.as_ref() == Some(&name) && p.metadata.namespace.as_ref() == Some(&ns))
        .iter()
        .map(|p| p.status.clone())
        .collect();
    let mut pods = pods;
    if ctx.ask_workers {
        worker_readiness::explain(&mut pods, tsvc.spec.port).await;
    }

    // Decide.
    let decision = supervisor::decide(&supervisor::Observed {
        tsvc: &tsvc,
        deployment,
        service,
        just_applied,
        pods,
        now: Timestamp::now(),
        jitter: rand::random::<f64>(),
        backup_up: backup_up(&ctx, &tsvc, &ns),
    });

    act::act(&ctx, &tsvc, &ns, &decision).await?;

    if let Ok(mut retries) = ctx.retries.lock() {
        retries.remove(&ObjectRef::from_obj(cached.as_ref()));
    }
    Ok(Action::requeue(decision.requeue))
}

/// Whether `spec.failover`'s backup can take calls, as its status in the cache says (None: no
/// backup, or not in a namespace this operator watches).
fn backup_up(ctx: &Context, tsvc: &TelephonyService, ns: &str) -> Option<bool> {
    let f = tsvc.spec.failover.as_ref()?;
    let backup = ctx.tsvcs.get(&ObjectRef::new(&f.service).within(f.namespace.as_deref().unwrap_or(ns)))?;
    let s = backup.status.as_ref()?;
    Some(matches!(s.phase, crate::crd::Phase::Ready | crate::crd::Phase::Degraded) && s.ready_replicas > 0)
}

/// Exponential requeue with jitter: 0.5 s, 1 s, 2 s ... capped at 5 min.
fn error_policy(tsvc: Arc<TelephonyService>, error: &Error, ctx: Arc<Context>) -> Action {
    ctx.metrics.reconcile_errors.get_or_create(&ErrorLabel { error: error.kind().into() }).inc();
    let attempt = ctx
        .retries
        .lock()
        .map(|mut r| {
            let n = r.entry(ObjectRef::from_obj(tsvc.as_ref())).or_insert(0);
            *n = n.saturating_add(1);
            *n
        })
        .unwrap_or(1);
    let base = Duration::from_millis(500).saturating_mul(1u32 << attempt.min(10).saturating_sub(1));
    let delay = base.min(Duration::from_secs(300)).mul_f64(1.0 + rand::random::<f64>() * 0.2);
    tracing::warn!(name = %tsvc.name_any(), %error, retry_in = ?delay, "reconcile failed");
    warn_user(&tsvc, error, &ctx);
    Action::requeue(delay)
}

/// A reconcile error the user can act on becomes a Warning Event on the TelephonyService, at most
/// once per reason every `error::WARN_EVERY`.
fn warn_user(tsvc: &Arc<TelephonyService>, error: &Error, ctx: &Arc<Context>) {
    let Some((reason, note)) = error.warning() else { return };
    let key = (ObjectRef::from_obj(tsvc.as_ref()), reason);
    let now = Instant::now();
    let due = ctx.warned.lock().is_ok_and(|mut warned| {
        let due = error::due(warned.get(&key).copied(), now);
        if due {
            warned.insert(key, now);
        }
        due
    });
    if due {
        let (tsvc, ctx) = (tsvc.clone(), ctx.clone());
        let event = Announcement { severity: Severity::Warning, reason, note };
        tokio::spawn(async move { act::publish(&ctx, &tsvc, &[event]).await });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_leader_decides_from_lists_as_fresh_as_etcd() {
        let config = fresh_lists(watcher::Config::default().labels("a=b"));
        assert_eq!(config.list_semantic, watcher::ListSemantic::MostRecent);
        assert_eq!((config.page_size, config.label_selector.as_deref()), (Some(LIST_PAGE_SIZE), Some("a=b")));
    }
}
