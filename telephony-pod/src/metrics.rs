//! The worker's Prometheus metrics (`GET /metrics`).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub route: String,
    pub status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OperationLabel {
    pub operation: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabel {
    pub kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EventLabel {
    pub event: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EndLabels {
    /// `answered` or `unanswered`.
    pub outcome: String,
    /// Telnyx's hangup cause (or `drain_timeout`, `other`).
    pub cause: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WebhookLabels {
    /// The event type (`call.hangup`, ...), `other` for types the worker doesn't act on.
    pub event: String,
    /// `applied`, `unchanged` (late or unknown), or `duplicate` (an id seen before).
    pub result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    pub reason: String,
}

#[derive(Clone)]
pub struct Metrics {
    pub requests: Family<RequestLabels, Counter>,
    pub upstream_latency: Family<OperationLabel, Histogram>,
    pub upstream_errors: Family<KindLabel, Counter>,
    pub credentials: Family<EventLabel, Counter>,
    pub live_credentials: Gauge,
    pub active_calls: Gauge,
    pub calls_ended: Family<EndLabels, Counter>,
    pub call_duration: Histogram,
    pub webhooks: Family<WebhookLabels, Counter>,
    pub webhooks_rejected: Family<ReasonLabel, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            requests: Family::default(),
            // 1 ms .. ~16 s
            upstream_latency: Family::new_with_constructor(|| {
                Histogram::new(exponential_buckets(0.001, 2.0, 15))
            }),
            upstream_errors: Family::default(),
            credentials: Family::default(),
            live_credentials: Gauge::default(),
            active_calls: Gauge::default(),
            calls_ended: Family::default(),
            // 1 s .. ~4.5 h
            call_duration: Histogram::new(exponential_buckets(1.0, 2.0, 15)),
            webhooks: Family::default(),
            webhooks_rejected: Family::default(),
        }
    }
}

impl Metrics {
    pub fn registry(&self) -> Registry {
        let mut registry = Registry::default();
        let r = registry.sub_registry_with_prefix("telephony");
        r.register("http_requests", "HTTP requests served, by route and status", self.requests.clone());
        r.register(
            "upstream_latency_seconds",
            "Telnyx call latency by operation",
            self.upstream_latency.clone(),
        );
        r.register("upstream_errors", "Telnyx call failures by kind", self.upstream_errors.clone());
        r.register("credentials", "Credentials created, reused and deleted", self.credentials.clone());
        r.register("live_credentials", "Credentials this worker holds", self.live_credentials.clone());
        r.register("active_calls", "Calls placed or heard of that have not ended", self.active_calls.clone());
        r.register("calls_ended", "Calls ended, by outcome and hangup cause", self.calls_ended.clone());
        r.register("call_duration_seconds", "Answered calls, answer to hangup", self.call_duration.clone());
        r.register("webhooks", "Verified Telnyx webhooks, by event type and result", self.webhooks.clone());
        r.register(
            "webhooks_rejected",
            "Telnyx webhooks refused (bad signature, stale, malformed), by reason",
            self.webhooks_rejected.clone(),
        );
        registry
    }

    pub fn credential(&self, event: &str) {
        self.credentials.get_or_create(&EventLabel { event: event.into() }).inc();
    }
}
