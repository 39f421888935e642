//! What the main app is told about one TelephonyService: a superset of the old in-process
//! `/api/webrtc/status` contract (`{"status", "healthy", "timestamp"}`), so existing clients keep working.
//!
//! The JSON Schema of this answer is committed at `packages/client/src/status.schema.json`, and the
//! TypeScript client's types are generated from it: a change here that the client doesn't know
//! about fails `committed_schema_matches` (regenerate with `scripts/gen-client-types.sh`).

use kube::ResourceExt;
use schemars::JsonSchema;
use serde::Serialize;
use utoipa::ToSchema;

use crate::crd::{ConditionType, Phase, TelephonyService};

/// A 503 tells the app to come back after this many seconds when nothing better is known
/// (the readiness probe period is 2 s: a worker restart usually takes about that long).
pub const DEFAULT_RETRY_AFTER_SECS: u64 = 5;
/// No answer asks the app to wait longer than an hour.
const MAX_RETRY_AFTER_SECS: u64 = 3600;

/// The one word the app branches on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, JsonSchema, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Word {
    Ready,
    Degraded,
    Failed,
    Paused,
    Pending,
    Unknown,
}

#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Restarts {
    pub used: u32,
    pub max: u32,
    pub window_seconds: u32,
    pub resets_at: Option<String>,
}

/// One failure of a worker pod, as the operator recorded it.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct FailureView {
    /// `Error`, `OOMKilled`, `ErrImagePull`, `ReadinessTimeout`, ...
    pub reason: String,
    pub message: String,
    pub pod: String,
    /// RFC 3339.
    pub at: String,
}

/// A failure inside the restart budget's window: when, and why.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct FailureMark {
    pub reason: String,
    /// RFC 3339.
    pub at: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct StatusView {
    pub namespace: String,
    pub name: String,
    pub status: Word,
    /// True exactly when the answer is 200: the app may send calls.
    pub healthy: bool,
    /// When this was last confirmed against the Kubernetes API (ms since the epoch).
    pub timestamp: i64,
    pub phase: Option<Phase>,
    pub ready_replicas: i32,
    pub replicas: i32,
    pub restarts: Option<Restarts>,
    pub message: Option<String>,
    pub endpoint: Option<String>,
    pub last_transition_time: Option<String>,
    /// When the operator next restarts or scales up the workers (RFC 3339), while backing off.
    pub next_attempt_at: Option<String>,
    /// Seconds the app should wait before trying again; set exactly when `healthy` is false, and
    /// sent as the 503's `Retry-After` header too.
    pub retry_after: Option<u64>,
    pub last_failure: Option<FailureView>,
    /// Failures inside the restart budget's window, oldest first.
    pub recent_failures: Vec<FailureMark>,
    /// Workers shutting down: they take no new calls while their live calls finish (absent when
    /// none, or when the readiness service doesn't follow the workers' heartbeats).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub draining: Vec<DrainingWorker>,
    /// Where the app's calls go: this service's workers (`primary`) or its `failover` service's
    /// (`backup`, whose address is then `endpoint`). Absent without `spec.failover`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub via: Option<Via>,
    /// The backup service named by `spec.failover`, as its own answer has it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failover: Option<FailoverView>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, JsonSchema, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Via {
    Primary,
    Backup,
}

#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct FailoverView {
    pub namespace: String,
    pub name: String,
    /// The backup's own word (`unknown` when the readiness service doesn't see it).
    pub status: Word,
    pub healthy: bool,
    pub endpoint: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DrainingWorker {
    pub pod: String,
    pub active_calls: u32,
}

impl StatusView {
    /// The HTTP status the app gets: 200 when it may send calls, 503 otherwise.
    pub fn http_status(&self) -> u16 {
        if self.healthy {
            200
        } else {
            503
        }
    }
}

/// When an unhealthy service is worth asking again: when the budget resets (Failed), when the
/// backoff allows the next restart, or soon. None when healthy.
pub fn retry_after(tsvc: &TelephonyService, healthy: bool, now_ms: i64) -> Option<u64> {
    if healthy {
        return None;
    }
    let status = tsvc.status.as_ref();
    let at = match status.map(|s| s.phase) {
        Some(Phase::Failed) => status.and_then(|s| s.restart_budget.as_ref()?.resets_at.clone()),
        _ => status.and_then(|s| s.backoff.as_ref()?.next_attempt_at.clone()),
    };
    let secs = match at {
        Some(t) => u64::try_from((t.0.as_millisecond() - now_ms + 999) / 1000).unwrap_or(1).max(1),
        None => DEFAULT_RETRY_AFTER_SECS,
    };
    Some(secs.min(MAX_RETRY_AFTER_SECS))
}

/// What the readiness service's own heartbeat streams say about one service's workers, ahead of
/// the kubelet and the operator (see `heartbeat`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Heartbeats {
    /// Workers that are up: the kubelet calls them Ready *and* their beats flow.
    pub up: i32,
    /// The last worker that went down, and why: `pod calls-7d9f-x2x: its stream closed`.
    pub last_down: Option<String>,
    /// Workers draining (pod, live calls), by pod name.
    pub draining: Vec<(String, u32)>,
}

/// Whether the app may send calls, and the word for it. With `heartbeats`, a service is healthy
/// only while at least one of its workers beats: the status alone lags a crash by seconds.
pub fn word(tsvc: &TelephonyService, stale: bool, heartbeats: Option<&Heartbeats>) -> (Word, bool) {
    let (word, healthy) = word_from_status(tsvc, stale);
    let ready = tsvc.status.as_ref().map_or(0, |s| s.ready_replicas);
    match heartbeats {
        Some(hb) if healthy && hb.up == 0 => (Word::Degraded, false),
        Some(hb) if word == Word::Ready && hb.up < ready => (Word::Degraded, true),
        _ => (word, healthy),
    }
}

fn word_from_status(tsvc: &TelephonyService, stale: bool) -> (Word, bool) {
    let Some(status) = tsvc.status.as_ref().filter(|s| s.observed_generation.is_some()) else {
        return (Word::Unknown, false);
    };
    if stale {
        return (Word::Unknown, false);
    }
    match status.phase {
        Phase::Ready => (Word::Ready, true),
        Phase::Degraded => (Word::Degraded, status.ready_replicas > 0),
        Phase::Failed => (Word::Failed, false),
        Phase::Paused => (Word::Paused, false),
        Phase::Pending | Phase::Progressing => (Word::Pending, false),
    }
}

pub const STALE_MESSAGE: &str =
    "the readiness service has lost its watch of the Kubernetes API; state unknown";

/// The answer for `tsvc`, confirmed at `confirmed_ms`; `stale` when the watch can't be trusted;
/// `heartbeats` when the readiness service follows the workers' heartbeats.
pub fn view(
    tsvc: &TelephonyService,
    confirmed_ms: i64,
    stale: bool,
    now_ms: i64,
    heartbeats: Option<&Heartbeats>,
) -> StatusView {
    let (word, healthy) = word(tsvc, stale, heartbeats);
    let (_, healthy_by_status) = word_from_status(tsvc, stale);
    let has_status = tsvc.status.as_ref().is_some_and(|s| s.observed_generation.is_some());
    let status = tsvc.status.clone().unwrap_or_default();
    let time = |t: &k8s_openapi::apimachinery::pkg::apis::meta::v1::Time| t.0.to_string();
    StatusView {
        namespace: tsvc.namespace().unwrap_or_default(),
        name: tsvc.name_any(),
        status: word,
        healthy,
        timestamp: confirmed_ms,
        phase: has_status.then_some(status.phase),
        ready_replicas: heartbeats.map_or(status.ready_replicas, |hb| hb.up.min(status.ready_replicas)),
        replicas: status.replicas,
        restarts: status.restart_budget.as_ref().map(|b| Restarts {
            used: b.used,
            max: b.max,
            window_seconds: b.window_seconds,
            resets_at: b.resets_at.as_ref().map(time),
        }),
        message: if stale {
            Some(STALE_MESSAGE.into())
        } else if healthy_by_status && !healthy {
            let why = heartbeats.and_then(|hb| hb.last_down.as_deref()).unwrap_or("none has connected yet");
            Some(format!("no worker is available ({why})"))
        } else {
            status.message.clone()
        },
        endpoint: status.endpoint.clone(),
        last_transition_time: status
            .conditions
            .iter()
            .find(|c| c.type_ == ConditionType::Ready.as_str())
            .map(|c| time(&c.last_transition_time)),
        next_attempt_at: status.backoff.as_ref().and_then(|b| b.next_attempt_at.as_ref()).map(time),
        retry_after: retry_after(tsvc, healthy, now_ms),
        last_failure: status.last_failure.as_ref().map(|f| FailureView {
            reason: f.reason.clone(),
            message: f.message.clone(),
            pod: f.pod.clone(),
            at: time(&f.at),
        }),
        recent_failures: status
            .history
            .failures
            .iter()
            .map(|f| FailureMark { reason: f.reason.clone(), at: time(&f.at) })
            .collect(),
        draining: heartbeats
            .map(|hb| {
                hb.draining
                    .iter()
                    .map(|(pod, calls)| DrainingWorker { pod: pod.clone(), active_calls: *calls })
                    .collect()
            })
            .unwrap_or_default(),
        via: None,
        failover: None,
    }
}

/// Where `spec.failover` names a backup, `primary`'s answer with it: while the primary can't take
/// calls (Failed, or no worker up) and the backup can, the answer is available (200) via the
/// backup, at the backup's endpoint. That switch is immediate (this answer follows heartbeats);
/// the way back waits for the operator's hold-down (`status.failover.active`), but only while the
/// backup can take the calls. `backup` is the backup's own answer (None: not seen). Never while
/// the watch is stale: then nobody knows either's state.
pub fn with_failover(
    mut primary: StatusView,
    tsvc: &TelephonyService,
    backup: Option<&StatusView>,
) -> StatusView {
    let Some(spec) = &tsvc.spec.failover else { return primary };
    let namespace = spec.namespace.clone().unwrap_or_else(|| primary.namespace.clone());
    primary.failover = Some(match backup {
        Some(b) => FailoverView {
            namespace: b.namespace.clone(),
            name: b.name.clone(),
            status: b.status,
            healthy: b.healthy,
            endpoint: b.endpoint.clone(),
        },
        None => FailoverView {
            namespace,
            name: spec.service.clone(),
            status: Word::Unknown,
            healthy: false,
            endpoint: None,
        },
    });
    let held = tsvc.status.as_ref().and_then(|s| s.failover.as_ref()).is_some_and(|f| f.active);
    let takes_over = backup.filter(|b| (!primary.healthy || held) && b.healthy && b.endpoint.is_some());
    primary.via = Some(if takes_over.is_some() { Via::Backup } else { Via::Primary });
    if let Some(b) = takes_over {
        let why = if primary.healthy {
            format!("the primary is back; held down for {}s", spec.hold_down_seconds)
        } else {
            primary.message.take().unwrap_or_else(|| format!("{:?}", primary.status).to_lowercase())
        };
        primary.message = Some(format!("{why}; calls go to the backup {}/{}", b.namespace, b.name));
        primary.healthy = true;
        primary.retry_after = None;
        primary.endpoint.clone_from(&b.endpoint);
    }
    primary
}

#[cfg(test)]
mod properties;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::{BackoffStatus, Failure, RestartBudgetStatus, TelephonyServiceStatus};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    const NOW: i64 = 1_800_000_000_000;

    fn tsvc(phase: Phase, ready: i32) -> TelephonyService {
        let mut t = dialtone_api::fixtures::sample();
        t.status = Some(TelephonyServiceStatus {
            phase,
            observed_generation: Some(1),
            ready_replicas: ready,
            replicas: 2,
            ..Default::default()
        });
        t
    }

    fn at(ms: i64) -> Time {
        Time(jiff::Timestamp::from_millisecond(ms).unwrap())
    }

    #[test]
    fn phases_map_to_the_contract() {
        let cases = [
            (Phase::Ready, 2, Word::Ready, 200),
            (Phase::Degraded, 1, Word::Degraded, 200),
            (Phase::Degraded, 0, Word::Degraded, 503),
            (Phase::Failed, 0, Word::Failed, 503),
            (Phase::Paused, 2, Word::Paused, 503),
            (Phase::Pending, 0, Word::Pending, 503),
            (Phase::Progressing, 0, Word::Pending, 503),
        ];
        for (phase, ready, word, code) in cases {
            let v = view(&tsvc(phase, ready), 42, false, NOW, None);
            assert_eq!((v.status, v.http_status()), (word, code), "{phase:?} with {ready} ready");
            assert_eq!(v.healthy, code == 200);
            assert_eq!(v.retry_after.is_some(), code == 503, "Retry-After exactly on a 503");
            assert_eq!(v.timestamp, 42);
        }
    }

    #[test]
    fn never_a_stale_ready() {
        let v = view(&tsvc(Phase::Ready, 2), 42, true, NOW, None);
        assert_eq!((v.status, v.http_status()), (Word::Unknown, 503));
        assert!(v.message.unwrap().contains("unknown"));
        assert_eq!(v.retry_after, Some(DEFAULT_RETRY_AFTER_SECS));
    }

    #[test]
    fn heartbeats_make_a_ready_status_unavailable_the_moment_no_worker_beats() {
        let hb = |up, last_down: Option<&str>| Heartbeats {
            up,
            last_down: last_down.map(String::from),
            draining: vec![],
        };
        let ready = tsvc(Phase::Ready, 2);
        let v = view(&ready, 42, false, NOW, Some(&hb(2, None)));
        assert_eq!((v.status, v.http_status(), v.ready_replicas), (Word::Ready, 200, 2));

        let one_down = hb(1, Some("pod calls-a: its stream closed"));
        let v = view(&ready, 42, false, NOW, Some(&one_down));
        assert_eq!((v.status, v.http_status(), v.ready_replicas), (Word::Degraded, 200, 1));

        let all_down = hb(0, Some("pod calls-b: no beat for 300 ms"));
        let v = view(&ready, 42, false, NOW, Some(&all_down));
        assert_eq!((v.status, v.http_status(), v.ready_replicas), (Word::Degraded, 503, 0));
        assert_eq!(v.retry_after, Some(DEFAULT_RETRY_AFTER_SECS));
        assert_eq!(v.message.as_deref(), Some("no worker is available (pod calls-b: no beat for 300 ms)"));
        let v = view(&ready, 42, false, NOW, Some(&hb(0, None)));
        assert!(v.message.unwrap().contains("none has connected yet"));

        // Beats never make a service healthy that the status calls unavailable (both must agree).
        for phase in [Phase::Failed, Phase::Paused, Phase::Pending] {
            let v = view(&tsvc(phase, 0), 42, false, NOW, Some(&hb(3, None)));
            assert_eq!(v.http_status(), 503, "{phase:?}");
        }
        assert_eq!(view(&ready, 42, true, NOW, Some(&hb(2, None))).status, Word::Unknown);
    }

    #[test]
    fn no_status_yet_is_unknown() {
        let mut t = tsvc(Phase::Ready, 2);
        t.status = None;
        assert_eq!(view(&t, 0, false, NOW, None).status, Word::Unknown);
    }

    #[test]
    fn retry_after_comes_from_what_the_operator_knows() {
        let mut failed = tsvc(Phase::Failed, 0);
        let s = failed.status.as_mut().unwrap();
        s.restart_budget = Some(RestartBudgetStatus {
            used: 4,
            max: 3,
            window_seconds: 600,
            resets_at: Some(at(NOW + 299_500)),
        });
        s.backoff = Some(BackoffStatus { attempt: 1, next_attempt_at: Some(at(NOW + 10_000)) });
        assert_eq!(
            view(&failed, 0, false, NOW, None).retry_after,
            Some(300),
            "Failed: until the budget resets"
        );

        let mut backing_off = tsvc(Phase::Degraded, 0);
        backing_off.status.as_mut().unwrap().backoff =
            Some(BackoffStatus { attempt: 2, next_attempt_at: Some(at(NOW + 8_000)) });
        assert_eq!(
            view(&backing_off, 0, false, NOW, None).retry_after,
            Some(8),
            "restarting: the next attempt"
        );

        let mut overdue = backing_off.clone();
        overdue.status.as_mut().unwrap().backoff.as_mut().unwrap().next_attempt_at = Some(at(NOW - 5_000));
        assert_eq!(
            view(&overdue, 0, false, NOW, None).retry_after,
            Some(1),
            "overdue: soon, never 0 or negative"
        );

        let mut far = failed.clone();
        far.status.as_mut().unwrap().restart_budget.as_mut().unwrap().resets_at = Some(at(NOW + 86_400_000));
        assert_eq!(view(&far, 0, false, NOW, None).retry_after, Some(MAX_RETRY_AFTER_SECS));
        assert_eq!(
            view(&tsvc(Phase::Pending, 0), 0, false, NOW, None).retry_after,
            Some(DEFAULT_RETRY_AFTER_SECS)
        );
    }

    #[test]
    fn failures_in_the_window_are_listed_without_their_messages() {
        let mut t = tsvc(Phase::Degraded, 1);
        let failure =
            |ms| Failure { reason: "Error".into(), message: "exit 2".into(), pod: "p".into(), at: at(ms) };
        t.status.as_mut().unwrap().history.failures = vec![failure(NOW - 2_000), failure(NOW - 1_000)];
        t.status.as_mut().unwrap().last_failure = Some(failure(NOW - 1_000));
        let v = view(&t, 0, false, NOW, None);
        assert_eq!(v.recent_failures.len(), 2);
        assert_eq!(v.recent_failures[1].at, at(NOW - 1_000).0.to_string());
        assert_eq!(v.last_failure.unwrap().message, "exit 2");
    }

    #[test]
    fn draining_workers_and_their_live_calls_are_shown() {
        let hb = Heartbeats { up: 1, last_down: None, draining: vec![("calls-old".into(), 2)] };
        let v = view(&tsvc(Phase::Ready, 2), NOW, false, NOW, Some(&hb));
        assert_eq!((v.status, v.healthy, v.ready_replicas), (Word::Degraded, true, 1));
        let json = serde_json::to_value(&v).unwrap();
        assert_eq!(json["draining"], serde_json::json!([{ "pod": "calls-old", "activeCalls": 2 }]));
        let none = serde_json::to_value(view(&tsvc(Phase::Ready, 2), NOW, false, NOW, None)).unwrap();
        assert!(none.get("draining").is_none(), "absent when no worker drains");
    }

    #[test]
    fn a_backup_takes_the_calls_while_the_primary_cannot() {
        let mut primary = tsvc(Phase::Failed, 0);
        primary.spec.failover = Some(crate::crd::FailoverSpec {
            service: "calls-b".into(),
            namespace: Some("dr".into()),
            hold_down_seconds: 30,
        });
        let mut backup = view(&tsvc(Phase::Ready, 1), NOW, false, NOW, None);
        (backup.namespace, backup.name, backup.endpoint) =
            ("dr".into(), "calls-b".into(), Some("http://calls-b-worker.dr.svc:8080".into()));
        let own = view(&primary, NOW, false, NOW, None);
        assert_eq!(own.http_status(), 503);

        let v = with_failover(own.clone(), &primary, Some(&backup));
        assert_eq!((v.http_status(), v.status, v.via), (200, Word::Failed, Some(Via::Backup)));
        assert_eq!(v.endpoint.as_deref(), Some("http://calls-b-worker.dr.svc:8080"));
        assert_eq!(v.retry_after, None);
        assert!(
            v.message.as_deref().is_some_and(|m| m.ends_with("; calls go to the backup dr/calls-b")),
            "{:?}",
            v.message
        );

        let mut down = backup.clone();
        down.healthy = false;
        let v = with_failover(own.clone(), &primary, Some(&down));
        assert_eq!((v.http_status(), v.via), (503, Some(Via::Primary)), "both down: 503");
        let v = with_failover(own.clone(), &primary, None);
        assert_eq!(
            v.failover.as_ref().map(|f| (f.status, f.name.as_str())),
            Some((Word::Unknown, "calls-b"))
        );
        assert_eq!(v.http_status(), 503, "a backup nobody sees takes nothing");

        let mut healthy_primary = tsvc(Phase::Ready, 2);
        healthy_primary.spec.failover = primary.spec.failover.clone();
        let mine = view(&healthy_primary, NOW, false, NOW, None);
        let v = with_failover(mine.clone(), &healthy_primary, Some(&backup));
        assert_eq!(
            (v.via, v.endpoint),
            (Some(Via::Primary), mine.endpoint.clone()),
            "a healthy primary keeps its calls"
        );
        let plain = with_failover(mine.clone(), &tsvc(Phase::Ready, 2), Some(&backup));
        assert_eq!((plain.via, plain.failover), (None, None), "no spec.failover: nothing changes");

        // Back, but held down by the operator: calls stay on the backup while it can take them.
        let mut held = healthy_primary.clone();
        held.status.as_mut().unwrap().failover =
            Some(crate::crd::FailoverStatus { active: true, since: None, primary_up_since: None });
        let mine = view(&held, NOW, false, NOW, None);
        let v = with_failover(mine.clone(), &held, Some(&backup));
        assert_eq!((v.http_status(), v.via), (200, Some(Via::Backup)));
        assert_eq!(
            v.message.as_deref(),
            Some("the primary is back; held down for 30s; calls go to the backup dr/calls-b")
        );
        let v = with_failover(mine.clone(), &held, Some(&down));
        assert_eq!((v.http_status(), v.via), (200, Some(Via::Primary)), "never held down with nowhere to go");
    }

    #[test]
    fn old_clients_find_their_three_fields() {
        let json =
            serde_json::to_value(view(&tsvc(Phase::Ready, 2), 1703001234567, false, NOW, None)).unwrap();
        assert_eq!(json["status"], "ready");
        assert_eq!(json["healthy"], true);
        assert_eq!(json["timestamp"], 1703001234567i64);
        assert_eq!(json["phase"], "Ready");
    }

    /// The TypeScript client's types are generated from this schema: a change to the answer must
    /// come with the regenerated schema and types (`scripts/gen-client-types.sh`).
    #[test]
    fn committed_schema_matches() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../packages/client/src/status.schema.json");
        let schema = schemars::schema_for!(StatusView);
        let want = serde_json::to_string_pretty(&schema).unwrap() + "\n";
        if std::env::var_os("DIALTONE_WRITE_SCHEMA").is_some() {
            std::fs::write(&path, &want).unwrap();
        }
        let have = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            have == want,
            "{} is out of date with readiness::view::StatusView: run scripts/gen-client-types.sh",
            path.display()
        );
    }
}
