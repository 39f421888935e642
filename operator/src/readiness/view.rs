//! What the main app is told about one TelephonyService: a superset of the old in-process
//! `/api/webrtc/status` contract (`{"status", "healthy", "timestamp"}`), so existing clients keep working.

use kube::ResourceExt;
use serde::Serialize;

use crate::crd::{Phase, TelephonyService};

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Restarts {
    pub used: u32,
    pub max: u32,
    pub resets_at: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StatusView {
    pub namespace: String,
    pub name: String,
    /// `ready`, `degraded`, `failed`, `paused`, `pending` or `unknown`.
    pub status: &'static str,
    /// True exactly when the answer is 200: the app may send calls.
    pub healthy: bool,
    /// When this was last confirmed against the Kubernetes API (ms since the epoch).
    pub timestamp: i64,
    pub phase: Option<&'static str>,
    pub ready_replicas: i32,
    pub replicas: i32,
    pub restarts: Option<Restarts>,
    pub message: Option<String>,
    pub endpoint: Option<String>,
    pub last_transition_time: Option<String>,
    /// Seconds until the next operator-initiated restart or scale-up, for dashboards.
    pub next_attempt_at: Option<String>,
    pub last_failure: Option<serde_json::Value>,
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

/// The answer for `tsvc`, confirmed at `confirmed_ms`; `stale` when the watch can't be trusted.
pub fn view(tsvc: &TelephonyService, confirmed_ms: i64, stale: bool) -> StatusView {
    let status = tsvc.status.clone().unwrap_or_default();
    let has_status = tsvc.status.is_some() && status.observed_generation.is_some();
    let (word, healthy) = if stale || !has_status {
        ("unknown", false)
    } else {
        match status.phase {
            Phase::Ready => ("ready", true),
            Phase::Degraded => ("degraded", status.ready_replicas > 0),
            Phase::Failed => ("failed", false),
            Phase::Paused => ("paused", false),
            Phase::Pending | Phase::Progressing => ("pending", false),
        }
    };
    let ready_since =
        status.conditions.iter().find(|c| c.type_ == "Ready").map(|c| c.last_transition_time.0.to_string());
    StatusView {
        namespace: tsvc.namespace().unwrap_or_default(),
        name: tsvc.name_any(),
        status: word,
        healthy,
        timestamp: confirmed_ms,
        phase: has_status.then_some(status.phase.as_str()),
        ready_replicas: status.ready_replicas,
        replicas: status.replicas,
        restarts: status.restart_budget.as_ref().map(|b| Restarts {
            used: b.used,
            max: b.max,
            resets_at: b.resets_at.as_ref().map(|t| t.0.to_string()),
        }),
        message: if stale {
            Some("the readiness service has lost its watch of the Kubernetes API; state unknown".into())
        } else {
            status.message.clone()
        },
        endpoint: status.endpoint.clone(),
        last_transition_time: ready_since,
        next_attempt_at: status
            .backoff
            .as_ref()
            .and_then(|b| b.next_attempt_at.as_ref())
            .map(|t| t.0.to_string()),
        last_failure: status.last_failure.as_ref().and_then(|f| serde_json::to_value(f).ok()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::TelephonyServiceStatus;

    fn tsvc(phase: Phase, ready: i32) -> TelephonyService {
        let mut t = crate::desired::tests::sample();
        t.status = Some(TelephonyServiceStatus {
            phase,
            observed_generation: Some(1),
            ready_replicas: ready,
            replicas: 2,
            ..Default::default()
        });
        t
    }

    #[test]
    fn phases_map_to_the_contract() {
        let cases = [
            (Phase::Ready, 2, "ready", 200),
            (Phase::Degraded, 1, "degraded", 200),
            (Phase::Degraded, 0, "degraded", 503),
            (Phase::Failed, 0, "failed", 503),
            (Phase::Paused, 2, "paused", 503),
            (Phase::Pending, 0, "pending", 503),
            (Phase::Progressing, 0, "pending", 503),
        ];
        for (phase, ready, word, code) in cases {
            let v = view(&tsvc(phase, ready), 42, false);
            assert_eq!((v.status, v.http_status()), (word, code), "{phase:?} with {ready} ready");
            assert_eq!(v.healthy, code == 200);
            assert_eq!(v.timestamp, 42);
        }
    }

    #[test]
    fn never_a_stale_ready() {
        let v = view(&tsvc(Phase::Ready, 2), 42, true);
        assert_eq!((v.status, v.http_status()), ("unknown", 503));
        assert!(v.message.unwrap().contains("unknown"));
    }

    #[test]
    fn no_status_yet_is_unknown() {
        let mut t = tsvc(Phase::Ready, 2);
        t.status = None;
        assert_eq!(view(&t, 0, false).status, "unknown");
    }

    #[test]
    fn old_clients_find_their_three_fields() {
        let json = serde_json::to_value(view(&tsvc(Phase::Ready, 2), 1703001234567, false)).unwrap();
        assert_eq!(json["status"], "ready");
        assert_eq!(json["healthy"], true);
        assert_eq!(json["timestamp"], 1703001234567i64);
    }
}
