//! The `TelephonyService` custom resource (`telephonyservices.dialtone.dev/v1alpha1`).
//!
//! Defaults and bounds live in the OpenAPI schema, so the apiserver fills in omitted fields and
//! rejects nonsense with a clear message before the operator ever sees it (Kubernetes 1.20 has no
//! CEL, so cross-field rules are checked by `validate`).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Affinity, EnvVar, ResourceRequirements, Toleration};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The telephony worker you want: image, pool size, Telnyx settings and how it is supervised.
#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "dialtone.dev",
    version = "v1alpha1",
    kind = "TelephonyService",
    plural = "telephonyservices",
    shortname = "tsvc",
    namespaced,
    status = "TelephonyServiceStatus",
    printcolumn = r#"{"name":"Phase","type":"string","jsonPath":".status.phase"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.ready","description":"ready/desired worker pods"}"#,
    printcolumn = r#"{"name":"Restarts","type":"string","jsonPath":".status.restarts","description":"failures in the window / restart budget"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#,
    printcolumn = r#"{"name":"Message","type":"string","jsonPath":".status.message"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct TelephonyServiceSpec {
    /// Worker image, e.g. `registry.example.com/dialtone/telephony-pod:0.1.0`.
    #[schemars(length(min = 1, max = 512))]
    pub image: String,
    /// Worker pool size.
    #[serde(default = "defaults::replicas")]
    #[schemars(range(min = 0, max = 20))]
    pub replicas: i32,
    /// Port the worker listens on (HTTP API, probes, metrics).
    #[serde(default = "defaults::port")]
    #[schemars(range(min = 1, max = 65535))]
    pub port: i32,
    /// How the worker reaches Telnyx.
    pub telnyx: TelnyxSpec,
    /// Liveness and readiness probes of the worker, and how long it may take to become ready.
    #[serde(default)]
    pub health: HealthSpec,
    /// At most `maxRestarts` failures in any `windowSeconds`; one more opens the circuit (Failed).
    #[serde(default)]
    pub restart_budget: RestartBudgetSpec,
    /// Spacing of operator-initiated restarts: `initialSeconds × multiplier^(n-1)`, capped.
    #[serde(default)]
    pub backoff: BackoffSpec,
    /// How a worker shuts down (rollout, scale-in, node drain): it takes no new calls at once, and
    /// its live calls may go on this long before it ends them.
    #[serde(default)]
    pub drain: DrainSpec,
    /// A backup TelephonyService (another Telnyx connection, another namespace): while this one is
    /// Failed or has no worker up, the readiness answer sends the app's calls there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failover: Option<FailoverSpec>,
    /// Who may use the worker's API. Without it, anything that reaches the worker Service can
    /// place calls on the account (the chart's NetworkPolicy can narrow that down).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<AuthSpec>,
    /// Leave the worker Deployment and Service exactly as they are.
    #[serde(default)]
    pub paused: bool,
    /// Worker container resources.
    #[serde(default = "defaults::resources")]
    pub resources: ResourceRequirements,
    /// Pod-level settings passed through to the worker pods.
    #[serde(default)]
    pub pod: PodSettings,
}

#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TelnyxSpec {
    /// The Secret holding the Telnyx API key. The operator never reads it: the worker gets it
    /// through `secretKeyRef`.
    pub api_key_secret_ref: SecretKeyRef,
    /// Telnyx credential connection the worker's WebRTC credentials belong to.
    #[schemars(length(min = 1, max = 256))]
    pub connection_id: String,
    /// Telnyx API base URL.
    #[serde(default = "defaults::base_url")]
    #[schemars(length(min = 1, max = 2048))]
    pub base_url: String,
    /// The Secret holding the account's public key for webhook signatures (base64, as the Mission
    /// Control Portal shows it). Without it the worker's `POST /v1/webhooks/telnyx` is off, and the
    /// worker can't know when a call ends, so a drain doesn't wait for live calls.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook_public_key_secret_ref: Option<SecretKeyRef>,
}

#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretKeyRef {
    /// Name of the Secret, in the TelephonyService's namespace.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// Key within the Secret.
    #[serde(default = "defaults::secret_key")]
    #[schemars(length(min = 1, max = 253))]
    pub key: String,
}

/// Liveness and readiness probes of the worker, and how long it may take to become ready.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HealthSpec {
    /// Liveness probe period (the readiness probe runs every min(periodSeconds, 2) s).
    #[serde(default = "defaults::period_seconds")]
    #[schemars(range(min = 1, max = 3600))]
    pub period_seconds: i32,
    /// Probe timeout.
    #[serde(default = "defaults::timeout_seconds")]
    #[schemars(range(min = 1, max = 600))]
    pub timeout_seconds: i32,
    /// Consecutive probe failures before the kubelet restarts (liveness) or unreadies (readiness).
    #[serde(default = "defaults::failure_threshold")]
    #[schemars(range(min = 1, max = 100))]
    pub failure_threshold: i32,
    /// A worker pod not Ready this long after it started is restarted by the operator.
    #[serde(default = "defaults::startup_timeout_seconds")]
    #[schemars(range(min = 1, max = 86400))]
    pub startup_timeout_seconds: i32,
    /// How often each worker beats on its heartbeat stream to the readiness service. A beat
    /// missing for 3 periods (or a stream that breaks) marks the worker down at once, long
    /// before its probes fail.
    #[serde(default = "defaults::heartbeat_millis")]
    #[schemars(range(min = 50, max = 5000))]
    pub heartbeat_millis: u32,
}

/// The bearer token the app must send to the worker.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AuthSpec {
    /// The Secret key holding the token (at least 16 visible ASCII characters), e.g. the one the
    /// chart creates with `workerToken.create`: `{name: dialtone-worker-token, key: token}`. The
    /// app's routes (credentials, calls, recording, call events) then need
    /// `Authorization: Bearer <token>`; probes, metrics, the heartbeat and Telnyx's webhooks don't.
    pub token_secret_ref: SecretKeyRef,
}

/// The backup TelephonyService.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FailoverSpec {
    /// Its name.
    #[schemars(length(min = 1, max = 63))]
    pub service: String,
    /// Its namespace; this TelephonyService's own when omitted. The readiness service must watch it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 63))]
    pub namespace: Option<String>,
    /// Once calls went to the backup, how long the primary must stay Ready before they come back
    /// (so a flapping primary doesn't pull them back and forth). Never while the backup is down.
    #[serde(default = "default_hold_down")]
    #[schemars(range(min = 0, max = 3600))]
    pub hold_down_seconds: u32,
}

fn default_hold_down() -> u32 {
    30
}

/// Where the primary's calls go, as the operator records it (with `spec.failover`).
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FailoverStatus {
    /// Calls go to the backup (`FailedOver`), until the primary has been Ready for the hold-down
    /// (`FailedBack`).
    pub active: bool,
    /// The last switch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<Time>,
    /// While active: since when the primary is Ready again (the hold-down runs from here).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub primary_up_since: Option<Time>,
}

/// How a worker shuts down.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DrainSpec {
    /// How long live calls may go on after the worker is told to stop; the ones still live then
    /// are ended (hangup cause `drain_timeout`). The pod's termination grace period is this plus
    /// the worker's own shutdown steps.
    #[serde(default = "defaults::drain_timeout_seconds")]
    #[schemars(range(min = 0, max = 3600))]
    pub timeout_seconds: u32,
}

/// At most `maxRestarts` failures in any `windowSeconds`; one more opens the circuit (Failed).
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RestartBudgetSpec {
    /// Failures allowed within the window; one more and the service is Failed, workers at 0.
    #[serde(default = "defaults::max_restarts")]
    #[schemars(range(min = 0, max = 1000))]
    pub max_restarts: u32,
    /// Length of the sliding window failures are counted in.
    #[serde(default = "defaults::window_seconds")]
    #[schemars(range(min = 1, max = 604800))]
    pub window_seconds: u32,
}

/// Spacing of operator-initiated restarts: `initialSeconds × multiplier^(n-1)`, capped.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BackoffSpec {
    /// Delay before the first operator-initiated restart.
    #[serde(default = "defaults::initial_seconds")]
    #[schemars(range(min = 0, max = 86400))]
    pub initial_seconds: u32,
    /// Upper bound of the delay (must be ≥ initialSeconds).
    #[serde(default = "defaults::max_seconds")]
    #[schemars(range(min = 0, max = 86400))]
    pub max_seconds: u32,
    /// Growth factor of the delay per restart.
    #[serde(default = "defaults::multiplier")]
    #[schemars(range(min = 1.0, max = 10.0))]
    pub multiplier: f64,
}

/// Pod-level settings for the worker pods.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PodSettings {
    /// Extra labels on the worker pods (the operator's own labels can't be overridden).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Extra annotations on the worker pods.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    /// Node selector of the worker pods.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub node_selector: BTreeMap<String, String>,
    /// Tolerations of the worker pods.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tolerations: Vec<Toleration>,
    /// Affinity of the worker pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub affinity: Option<Affinity>,
    /// Priority class of the worker pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority_class_name: Option<String>,
    /// ServiceAccount the worker pods run as (default: the namespace's `default`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account_name: Option<String>,
    /// Extra environment variables for the worker container.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<EnvVar>,
}

/// Every condition the operator writes in `status.conditions`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConditionType {
    /// The app may send calls: every desired worker is Ready.
    Ready,
    /// The worker Deployment is rolling out (workers starting, or being replaced).
    Progressing,
    /// Workers are failing or missing after the service served.
    Degraded,
    /// Too many failures in the window: the circuit is open, workers at 0.
    RestartBudgetExhausted,
}

impl ConditionType {
    pub fn as_str(self) -> &'static str {
        match self {
            ConditionType::Ready => "Ready",
            ConditionType::Progressing => "Progressing",
            ConditionType::Degraded => "Degraded",
            ConditionType::RestartBudgetExhausted => "RestartBudgetExhausted",
        }
    }
}

#[derive(Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
pub enum Phase {
    #[default]
    Pending,
    Progressing,
    Ready,
    Degraded,
    Failed,
    Paused,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Pending => "Pending",
            Phase::Progressing => "Progressing",
            Phase::Ready => "Ready",
            Phase::Degraded => "Degraded",
            Phase::Failed => "Failed",
            Phase::Paused => "Paused",
        }
    }
}

/// What the operator observed and decided, written on `/status`.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TelephonyServiceStatus {
    #[serde(default)]
    pub phase: Phase,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Desired worker pods (0 while the circuit is open).
    #[serde(default)]
    pub replicas: i32,
    #[serde(default)]
    pub ready_replicas: i32,
    /// Workers told to stop (a rollout, a scale-in, an eviction) and draining their live calls;
    /// the readiness service's answer lists their calls.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub draining_replicas: i32,
    /// Live calls those workers still hold, as they last answered (the operator asks a draining
    /// worker every 2 s; 0 where it can't be asked).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub draining_calls: i32,
    /// `ready/desired`, for `kubectl get`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready: Option<String>,
    /// `failures in window/budget`, for `kubectl get`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restarts: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restart_budget: Option<RestartBudgetStatus>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backoff: Option<BackoffStatus>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_failure: Option<Failure>,
    /// Set when a rollout of this generation exhausted the restart budget while the previous
    /// workers still served: the Deployment went back to those workers instead of to 0. Cleared by
    /// a new spec generation or the reset annotation, each of which tries the spec again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rolled_back: Option<RolledBack>,
    /// With `spec.failover`: whether calls go to the backup, and since when.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failover: Option<FailoverStatus>,
    /// In-cluster URL of the worker Service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// The supervisor's memory, so an operator restart neither forgets nor double-counts.
    #[serde(default)]
    pub history: History,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RestartBudgetStatus {
    /// Failures inside the current window.
    pub used: u32,
    pub max: u32,
    pub window_seconds: u32,
    /// When the oldest counted failure leaves the window (when Failed: when the circuit half-opens).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resets_at: Option<Time>,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BackoffStatus {
    /// Operator-initiated restarts since the last clean run.
    pub attempt: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_attempt_at: Option<Time>,
}

/// A rollout undone by the restart budget.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RolledBack {
    /// The spec generation whose workers failed (its template is not applied again).
    pub generation: i64,
    /// The workers kept: their ReplicaSet's `pod-template-hash`.
    pub pod_template_hash: String,
    /// What failed, and what serves instead.
    pub message: String,
    pub at: Time,
}

/// One failure of a worker pod.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Failure {
    /// `Error`, `OOMKilled`, `ErrImagePull`, `CreateContainerConfigError`, `ReadinessTimeout`, ...
    pub reason: String,
    pub message: String,
    pub pod: String,
    pub at: Time,
}

/// Persisted supervisor state.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct History {
    /// Failures inside the window, oldest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failures: Vec<Failure>,
    /// What was already counted for each live pod.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pods: Vec<PodRecord>,
    /// Generation of the spec this history belongs to (a new one clears it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generation: Option<i64>,
    /// Last `dialtone.dev/reset-restart-budget` value acted on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reset_token: Option<String>,
    /// Operator-initiated restarts since the last clean run (drives the backoff).
    #[serde(default)]
    pub backoff_attempt: u32,
    /// No operator-initiated restart or scale-up before this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_attempt_at: Option<Time>,
    /// The circuit is open: workers scaled to 0.
    #[serde(default)]
    pub circuit_open: bool,
    /// Draining pods whose ended calls (`DrainTimeout`) were announced, while they are seen.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub drains_announced: Vec<String>,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PodRecord {
    pub pod: String,
    /// Sum of container restartCounts already counted.
    pub restarts: i32,
    /// Waiting reason already counted (image pull, config error), so it counts once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waiting: Option<String>,
}

fn is_zero(n: &i32) -> bool {
    *n == 0
}

mod defaults {
    use super::*;

    pub fn replicas() -> i32 {
        1
    }
    pub fn port() -> i32 {
        8080
    }
    pub fn base_url() -> String {
        "https://api.telnyx.com/v2".into()
    }
    pub fn secret_key() -> String {
        "apiKey".into()
    }
    pub fn period_seconds() -> i32 {
        30
    }
    pub fn timeout_seconds() -> i32 {
        5
    }
    pub fn failure_threshold() -> i32 {
        3
    }
    pub fn startup_timeout_seconds() -> i32 {
        60
    }
    pub fn heartbeat_millis() -> u32 {
        100
    }
    pub fn drain_timeout_seconds() -> u32 {
        30
    }
    pub fn max_restarts() -> u32 {
        3
    }
    pub fn window_seconds() -> u32 {
        600
    }
    pub fn initial_seconds() -> u32 {
        5
    }
    pub fn max_seconds() -> u32 {
        300
    }
    pub fn multiplier() -> f64 {
        2.0
    }
    pub fn resources() -> ResourceRequirements {
        let q = |cpu: &str, mem: &str| {
            BTreeMap::from([
                ("cpu".to_string(), Quantity(cpu.into())),
                ("memory".to_string(), Quantity(mem.into())),
            ])
        };
        ResourceRequirements {
            requests: Some(q("50m", "64Mi")),
            limits: Some(q("500m", "256Mi")),
            ..Default::default()
        }
    }
}

impl Default for HealthSpec {
    fn default() -> Self {
        HealthSpec {
            period_seconds: defaults::period_seconds(),
            timeout_seconds: defaults::timeout_seconds(),
            failure_threshold: defaults::failure_threshold(),
            startup_timeout_seconds: defaults::startup_timeout_seconds(),
            heartbeat_millis: defaults::heartbeat_millis(),
        }
    }
}

impl Default for DrainSpec {
    fn default() -> Self {
        DrainSpec { timeout_seconds: defaults::drain_timeout_seconds() }
    }
}

impl Default for RestartBudgetSpec {
    fn default() -> Self {
        RestartBudgetSpec {
            max_restarts: defaults::max_restarts(),
            window_seconds: defaults::window_seconds(),
        }
    }
}

impl Default for BackoffSpec {
    fn default() -> Self {
        BackoffSpec {
            initial_seconds: defaults::initial_seconds(),
            max_seconds: defaults::max_seconds(),
            multiplier: defaults::multiplier(),
        }
    }
}

/// The CRD manifest, as applied everywhere (crds/, the chart, tests). `spec.versions` is an atomic
/// list to server-side apply: any value that differs between two appliers, or between what is
/// applied and what the apiserver stores, is a conflict. So whole numbers are written as integers
/// (kubectl turns YAML's `2.0` into `2`) and defaults the apiserver drops are left out.
pub fn crd_manifest() -> serde_json::Value {
    use kube::CustomResourceExt;
    fn whole_numbers(v: &mut serde_json::Value) {
        match v {
            serde_json::Value::Number(n) => {
                if let Some(f) = n.as_f64().filter(|f| n.is_f64() && f.fract() == 0.0 && f.abs() < 1e15) {
                    *v = serde_json::Value::from(f as i64);
                }
            }
            serde_json::Value::Array(items) => items.iter_mut().for_each(whole_numbers),
            serde_json::Value::Object(map) => map.values_mut().for_each(whole_numbers),
            _ => {}
        }
    }
    let mut v = serde_json::to_value(TelephonyService::crd()).unwrap_or_default();
    whole_numbers(&mut v);
    v
}

/// The CRD as YAML, as committed in `crds/telephonyservice.yaml`.
pub fn crd_yaml() -> Result<String, serde_yaml::Error> {
    let header = "# Generated by `telephony-operator crd`; do not edit (a test compares it).\n";
    Ok(format!("{header}{}", serde_yaml::to_string(&crd_manifest())?))
}
