//! What the operator decides for one TelephonyService, as a pure function of what it observed:
//! the children to apply, the pods to restart, the status to write and the events to publish.

use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;

use crate::conditions::{self, condition};
use crate::crd::{
    BackoffStatus, Failure, Phase, RestartBudgetStatus, TelephonyService, TelephonyServiceStatus,
};
use crate::desired;
use crate::liveness::{self, PodObservation};
use crate::names::RESET_RESTART_BUDGET;
use crate::restart_budget::{self, Policy, Transition};
use crate::validate::validate;

/// The annotation a human sets (to any new value) to clear the failure history: "reset-failed".
/// Look again at least this often, even when nothing happens.
const RESYNC: Duration = Duration::from_secs(300);

/// Everything observed about one service.
pub struct Observed<'a> {
    pub tsvc: &'a TelephonyService,
    pub deployment: Option<&'a Deployment>,
    pub service: Option<&'a Service>,
    pub pods: Vec<PodObservation>,
    pub now: Timestamp,
    /// A random number in [0, 1) for backoff jitter.
    pub jitter: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    Normal,
    Warning,
}

/// An event to publish on the TelephonyService.
#[derive(Debug, Clone, PartialEq)]
pub struct Announcement {
    pub severity: Severity,
    pub reason: &'static str,
    pub note: String,
}

#[derive(Debug, Clone)]
pub struct Decision {
    /// Apply these (only what differs from what is there).
    pub deployment: Option<Deployment>,
    pub service: Option<Service>,
    /// Pods the operator restarts (deletes).
    pub restart_pods: Vec<String>,
    pub status: TelephonyServiceStatus,
    pub events: Vec<Announcement>,
    /// Failures detected in this look (for metrics).
    pub failures: Vec<Failure>,
    pub budget_exhausted: bool,
    pub requeue: Duration,
}

impl Decision {
    /// Report `status`, touch nothing (invalid spec, paused).
    fn hands_off(status: TelephonyServiceStatus, events: Vec<Announcement>) -> Decision {
        Decision {
            deployment: None,
            service: None,
            restart_pods: vec![],
            status,
            events,
            failures: vec![],
            budget_exhausted: false,
            requeue: RESYNC,
        }
    }
}

pub fn decide(obs: &Observed) -> Decision {
    let tsvc = obs.tsvc;
    let spec = &tsvc.spec;
    let prev = tsvc.status.clone().unwrap_or_default();
    let generation = tsvc.metadata.generation.unwrap_or(0);
    let now = obs.now;
    let cond = |type_: &str, ok: bool, reason: &str, message: String| {
        condition(&prev.conditions, type_, ok, reason, message, generation, now)
    };

    let problems = validate(spec);
    if !problems.is_empty() {
        let message = format!("invalid spec: {}", problems.join("; "));
        let mut status = prev.clone();
        status.phase = Phase::Failed;
        status.observed_generation = Some(generation);
        status.message = Some(format!("{message} (existing workers, if any, are left as they are)"));
        status.conditions = vec![
            cond(conditions::READY, false, "InvalidSpec", message.clone()),
            cond(conditions::PROGRESSING, false, "InvalidSpec", "the spec can't be applied".into()),
            cond(conditions::DEGRADED, false, "InvalidSpec", String::new()),
            cond(conditions::BUDGET_EXHAUSTED, false, "InvalidSpec", String::new()),
        ];
        let already = prev.conditions.iter().any(|c| c.type_ == conditions::READY && c.message == message);
        let events = if already {
            vec![]
        } else {
            vec![Announcement { severity: Severity::Warning, reason: "InvalidSpec", note: message }]
        };
        return Decision::hands_off(status, events);
    }

    let policy = Policy::from_spec(spec);
    let live: Vec<&PodObservation> = obs.pods.iter().filter(|p| !p.deleting).collect();
    // During a rollout the surge pod is ready too: report at most what is desired.
    let ready = i32::try_from(live.iter().filter(|p| p.ready).count()).unwrap_or(i32::MAX).min(spec.replicas);
    let all_ready = spec.replicas > 0 && ready >= spec.replicas;

    // Paused: observe and report, change nothing.
    if spec.paused {
        let mut status = prev.clone();
        status.phase = Phase::Paused;
        status.observed_generation = Some(generation);
        status.ready_replicas = ready;
        status.ready = Some(format!("{ready}/{}", status.replicas));
        status.message = Some("paused: the worker Deployment and Service are left as they are".into());
        status.conditions = vec![
            cond(conditions::READY, false, "Paused", "spec.paused is true".into()),
            cond(conditions::PROGRESSING, false, "Paused", "spec.paused is true".into()),
            cond(conditions::DEGRADED, false, "Paused", String::new()),
            cond(conditions::BUDGET_EXHAUSTED, prev.history.circuit_open, "Paused", String::new()),
        ];
        let events = if prev.phase == Phase::Paused {
            vec![]
        } else {
            vec![Announcement {
                severity: Severity::Normal,
                reason: "Paused",
                note: "supervision paused".into(),
            }]
        };
        return Decision::hands_off(status, events);
    }

    // Observe failures, then let the budget decide.
    let detection = liveness::detect(&obs.pods, &prev.history.pods, policy.startup_timeout, now);
    let reset_token = tsvc.annotations().get(RESET_RESTART_BUDGET).map(String::as_str);
    let was_open = prev.history.circuit_open;
    let step = restart_budget::step(
        &policy,
        &prev.history,
        restart_budget::Input {
            generation,
            reset_token,
            failures: detection.failures,
            hung: detection.hung.clone(),
            all_ready,
            now,
            jitter: obs.jitter,
        },
    );
    let mut history = step.history;
    history.pods = detection.records;
    let open = history.circuit_open;
    let desired_replicas = if open { 0 } else { spec.replicas };

    // Children: apply only what differs from what is there.
    let want_deployment = desired::deployment(tsvc, desired_replicas);
    let want_service = desired::service(tsvc);
    let deployment = (obs.deployment.and_then(desired::applied_hash)
        != desired::applied_hash(&want_deployment))
    .then_some(want_deployment);
    let service = (obs.service.and_then(desired::applied_hash) != desired::applied_hash(&want_service))
        .then_some(want_service);

    // Status.
    let used = u32::try_from(history.failures.len()).unwrap_or(u32::MAX);
    let max = policy.max_restarts;
    let last_failure = step.recorded.last().cloned().or(prev.last_failure.clone());
    let rolling_out = rollout_in_progress(obs.deployment, desired_replicas, live.len());
    let stuck = live.iter().find_map(|p| p.waiting.clone().filter(|(r, _)| is_stuck(r)));
    let hung = !detection.hung.is_empty();
    // A running worker's own word on why it is not Ready (e.g. Telnyx unreachable).
    let not_ready = live.iter().find_map(|p| Some((p.name.clone(), p.not_ready_reason.clone()?)));
    // Once serving in this generation, losing workers is degradation, not "still starting".
    let was_serving =
        matches!(prev.phase, Phase::Ready | Phase::Degraded) && prev.observed_generation == Some(generation);
    let has_failures = used > 0 || stuck.is_some() || hung || was_serving;
    let phase = if open {
        Phase::Failed
    } else if spec.replicas == 0 {
        Phase::Pending
    } else if all_ready {
        Phase::Ready
    } else if has_failures {
        Phase::Degraded
    } else if live.is_empty() {
        Phase::Pending
    } else {
        Phase::Progressing
    };
    // Starting workers is progress until they are Ready, as for `kubectl rollout status`. (The
    // Deployment alone counts a created pod as rolled out, which would flip the condition, and
    // cost a status write, between the pod's creation and its readiness.)
    let rolling =
        rolling_out || phase == Phase::Progressing || (phase == Phase::Pending && spec.replicas > 0);
    let resets_at = restart_budget::resets_at(&policy, &history);
    let window = spec.restart_budget.window_seconds;
    let (ready_reason, ready_message) = if open {
        ("RestartBudgetExhausted".to_string(), "restart budget exhausted; workers scaled to 0".to_string())
    } else if all_ready {
        ("AllReplicasReady".to_string(), format!("{ready}/{} workers ready", spec.replicas))
    } else if spec.replicas == 0 {
        ("ScaledToZero".to_string(), "spec.replicas is 0".to_string())
    } else if let Some((reason, message)) = &stuck {
        (stuck_reason(reason, message), message.clone())
    } else if hung {
        (
            "ReadinessTimeout".to_string(),
            "a worker is running but not Ready past its startup timeout".to_string(),
        )
    } else if let Some((pod, why)) = &not_ready {
        ("ReplicasNotReady".to_string(), format!("{ready}/{} workers ready; {pod}: {why}", spec.replicas))
    } else {
        ("ReplicasNotReady".to_string(), format!("{ready}/{} workers ready", spec.replicas))
    };
    let failure_text = |f: &Failure| format!("{} in pod {}: {}", f.reason, f.pod, f.message);
    // What keeps a worker from being Ready now says more than the last failure, which may be old.
    let degraded_message = match (&not_ready, &last_failure) {
        (None, Some(f)) => failure_text(f),
        _ => ready_message.clone(),
    };
    let budget_message = if open {
        let when = resets_at.map(|t| t.to_string()).unwrap_or_else(|| "later".into());
        format!("{used} failures in {window}s exceed the budget of {max}; workers scaled to 0 until {when}")
    } else {
        format!("{used}/{max} failures in the last {window}s")
    };
    let message = match phase {
        Phase::Ready => format!("{ready}/{} workers ready", spec.replicas),
        Phase::Failed => budget_message.clone(),
        Phase::Degraded => degraded_message.clone(),
        Phase::Pending if spec.replicas == 0 => "scaled to 0 by spec.replicas".into(),
        Phase::Pending => "creating workers: no worker pod yet".into(),
        _ => format!("starting workers: {ready}/{} ready", spec.replicas),
    };
    let status = TelephonyServiceStatus {
        phase,
        observed_generation: Some(generation),
        replicas: desired_replicas,
        ready_replicas: ready,
        ready: Some(format!("{ready}/{desired_replicas}")),
        restarts: Some(format!("{used}/{max}")),
        message: Some(message),
        conditions: vec![
            cond(conditions::READY, all_ready && !open, &ready_reason, ready_message),
            cond(
                conditions::PROGRESSING,
                rolling,
                if rolling { "RollingOut" } else { "Complete" },
                if rolling {
                    "the worker Deployment is rolling out".into()
                } else {
                    "rollout complete".into()
                },
            ),
            cond(
                conditions::DEGRADED,
                phase == Phase::Degraded,
                if phase == Phase::Degraded {
                    last_failure.as_ref().map_or(ready_reason.as_str(), |f| f.reason.as_str())
                } else {
                    "AsExpected"
                },
                if phase == Phase::Degraded { degraded_message } else { "every worker is healthy".into() },
            ),
            cond(
                conditions::BUDGET_EXHAUSTED,
                open,
                if open { "TooManyFailures" } else { "WithinBudget" },
                budget_message,
            ),
        ],
        restart_budget: Some(RestartBudgetStatus {
            used,
            max,
            window_seconds: window,
            resets_at: resets_at.map(Time),
        }),
        backoff: Some(BackoffStatus {
            attempt: history.backoff_attempt,
            next_attempt_at: history.next_attempt_at.clone(),
        }),
        last_failure,
        endpoint: Some(desired::endpoint(tsvc)),
        history,
    };

    // Events: each failure, each phase transition, the circuit's moves.
    let mut events = Vec::new();
    if obs.deployment.is_none() && deployment.is_some() {
        let note = format!("created Deployment and Service {}", desired::child_name(tsvc));
        events.push(Announcement { severity: Severity::Normal, reason: "Created", note });
    }
    for f in &step.recorded {
        events.push(Announcement {
            severity: Severity::Warning,
            reason: "PodRestarted",
            note: failure_text(f),
        });
    }
    let budget_exhausted = step.transitions.contains(&Transition::BudgetExhausted);
    for t in &step.transitions {
        match t {
            Transition::BudgetExhausted => events.push(Announcement {
                severity: Severity::Warning,
                reason: "RestartBudgetExhausted",
                note: status.message.clone().unwrap_or_default(),
            }),
            Transition::HalfOpen => events.push(Announcement {
                severity: Severity::Normal,
                reason: "Resumed",
                note: format!("the failure window slid; starting {} worker(s) again", spec.replicas),
            }),
            Transition::Reset { by_annotation } if was_open => events.push(Announcement {
                severity: Severity::Normal,
                reason: "Resumed",
                note: if *by_annotation {
                    format!("restart budget reset by the {RESET_RESTART_BUDGET} annotation")
                } else {
                    "restart budget reset by a new spec generation".into()
                },
            }),
            Transition::Reset { .. } => {}
        }
    }
    if phase != prev.phase {
        match phase {
            Phase::Ready => events.push(Announcement {
                severity: Severity::Normal,
                reason: "Ready",
                note: status.message.clone().unwrap_or_default(),
            }),
            Phase::Degraded => events.push(Announcement {
                severity: Severity::Warning,
                reason: "Degraded",
                note: status.message.clone().unwrap_or_default(),
            }),
            _ => {}
        }
    }

    // When to look again without an event: the budget's clock, and pods that may time out.
    let mut requeue = step.requeue.unwrap_or(RESYNC).min(RESYNC);
    for p in live.iter().filter(|p| p.running && !p.ready && !open) {
        if let Some(since) = p.not_ready_since {
            let deadline = since + jiff::SignedDuration::try_from(policy.startup_timeout).unwrap_or_default();
            let wait = Duration::try_from(deadline.duration_since(now)).unwrap_or(Duration::ZERO);
            requeue = requeue.min(wait + Duration::from_millis(100));
        }
    }
    Decision {
        deployment,
        service,
        restart_pods: step.restart,
        status,
        events,
        failures: step.recorded,
        budget_exhausted,
        requeue,
    }
}

/// The Deployment hasn't converged on what was asked of it yet.
fn rollout_in_progress(d: Option<&Deployment>, desired: i32, live_pods: usize) -> bool {
    let Some(d) = d else { return true };
    let s = d.status.clone().unwrap_or_default();
    let observed = s.observed_generation.unwrap_or(0) >= d.metadata.generation.unwrap_or(0);
    let updated = s.updated_replicas.unwrap_or(0) >= desired;
    let no_extra = i32::try_from(live_pods).unwrap_or(i32::MAX) <= desired;
    !(observed && updated && no_extra)
}

fn is_stuck(reason: &str) -> bool {
    liveness::STUCK_REASONS.contains(&reason)
}

/// A precise Ready reason for a worker that can't start.
fn stuck_reason(reason: &str, message: &str) -> String {
    let m = message.to_ascii_lowercase();
    match reason {
        "CreateContainerConfigError" if m.contains("secret") && m.contains("not found") => {
            "SecretNotFound".into()
        }
        "CreateContainerConfigError" if m.contains("couldn't find key") => "SecretKeyNotFound".into(),
        "ErrImagePull" | "ImagePullBackOff" | "InvalidImageName" => "ImagePullFailed".into(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests;
