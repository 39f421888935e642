//! Prometheus metrics of the operator (served on the admin port's `/metrics`).

use std::time::Instant;

use kube::runtime::reflector::Store;
use kube::ResourceExt;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use crate::crd::{Phase, TelephonyService};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    pub reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabel {
    pub error: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WriteLabel {
    /// `deployment`, `service`, `status`, `pod` (a restart), `event`.
    pub kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PhaseLabels {
    namespace: String,
    name: String,
    phase: String,
}

#[derive(Clone)]
pub struct Metrics {
    pub reconciliations: Counter,
    pub reconcile_errors: Family<ErrorLabel, Counter>,
    pub reconcile_duration: Histogram,
    pub failures: Family<ReasonLabel, Counter>,
    pub budget_exhaustions: Counter,
    pub writes: Family<WriteLabel, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            reconciliations: Counter::default(),
            reconcile_errors: Family::default(),
            // 1 ms .. ~16 s
            reconcile_duration: Histogram::new(exponential_buckets(0.001, 2.0, 15)),
            failures: Family::default(),
            budget_exhaustions: Counter::default(),
            writes: Family::default(),
        }
    }
}

impl Metrics {
    /// Registers everything, with the phase of each service read from `store` at scrape time
    /// (so a deleted service's series disappears with it).
    pub fn register(&self, registry: &mut Registry, store: Store<TelephonyService>) {
        let r = registry.sub_registry_with_prefix("dialtone");
        r.register("reconciliations", "Reconciliations of TelephonyServices", self.reconciliations.clone());
        r.register("reconcile_errors", "Failed reconciliations by error kind", self.reconcile_errors.clone());
        r.register(
            "reconcile_duration_seconds",
            "Time to reconcile one TelephonyService",
            self.reconcile_duration.clone(),
        );
        r.register("worker_failures", "Worker pod failures detected, by reason", self.failures.clone());
        r.register(
            "restart_budget_exhaustions",
            "Times a restart budget was exhausted (circuit opened)",
            self.budget_exhaustions.clone(),
        );
        r.register("api_writes", "Writes to the Kubernetes API, by kind", self.writes.clone());
        registry.register_collector(Box::new(PhaseCollector { store }));
    }

    pub fn wrote(&self, kind: &'static str) {
        self.writes.get_or_create(&WriteLabel { kind }).inc();
    }

    /// Counts and times one reconcile when dropped, so errors and early returns are measured too
    /// (like controller-rs's `ReconcileMeasurer`).
    pub fn reconcile_timer(&self) -> ReconcileTimer<'_> {
        ReconcileTimer { metrics: self, started: Instant::now() }
    }
}

#[derive(Debug)]
struct PhaseCollector {
    store: Store<TelephonyService>,
}

const PHASES: [Phase; 6] =
    [Phase::Pending, Phase::Progressing, Phase::Ready, Phase::Degraded, Phase::Failed, Phase::Paused];

impl Collector for PhaseCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let family = Family::<PhaseLabels, Gauge>::default();
        for tsvc in self.store.state() {
            let current = tsvc.status.as_ref().map(|s| s.phase).unwrap_or_default();
            for phase in PHASES {
                let labels = PhaseLabels {
                    namespace: tsvc.namespace().unwrap_or_default(),
                    name: tsvc.name_any(),
                    phase: phase.as_str().to_string(),
                };
                family.get_or_create(&labels).set(i64::from(phase == current));
            }
        }
        let metric = encoder.encode_descriptor(
            "dialtone_service_phase",
            "1 for the current phase of each TelephonyService",
            None,
            family.metric_type(),
        )?;
        family.encode(metric)
    }
}

pub struct ReconcileTimer<'a> {
    metrics: &'a Metrics,
    started: Instant,
}

impl Drop for ReconcileTimer<'_> {
    fn drop(&mut self) {
        self.metrics.reconciliations.inc();
        self.metrics.reconcile_duration.observe(self.started.elapsed().as_secs_f64());
    }
}
