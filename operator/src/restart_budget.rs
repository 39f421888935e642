//! The restart budget and backoff as a pure state machine (no I/O).
//!
//! Input: the policy, the persisted [`History`], this look's observations and the clock. Output: the
//! new history, the pods to restart, the transitions to announce and when to look again.
//! Like systemd's start limit or OTP's restart intensity: at most `maxRestarts` failures inside any
//! `windowSeconds`; one more opens the circuit (workers scaled to 0, phase Failed). When enough of
//! the window has slid by for one more start, and the backoff allows, the circuit half-opens.

use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use crate::backoff;
use crate::crd::{BackoffSpec, Failure, History, RestartBudgetStatus, TelephonyServiceSpec};
use crate::liveness::truncate;

#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    pub max_restarts: u32,
    pub window: Duration,
    pub backoff: BackoffSpec,
    /// How long a running pod may stay not Ready (for the failure message).
    pub startup_timeout: Duration,
}

impl Policy {
    pub fn from_spec(spec: &TelephonyServiceSpec) -> Policy {
        Policy {
            max_restarts: spec.restart_budget.max_restarts,
            window: Duration::from_secs(u64::from(spec.restart_budget.window_seconds)),
            backoff: spec.backoff.clone(),
            startup_timeout: Duration::from_secs(
                u64::try_from(spec.health.startup_timeout_seconds).unwrap_or(0),
            ),
        }
    }
}

/// One look at the service.
#[derive(Debug, Clone)]
pub struct Input<'a> {
    /// `metadata.generation`: a new one clears the history.
    pub generation: i64,
    /// Value of the `dialtone.dev/reset-restart-budget` annotation: a new one clears the history.
    pub reset_token: Option<&'a str>,
    /// Failures detected since the last look.
    pub failures: Vec<Failure>,
    /// Pods that hang (running, not Ready past the startup timeout): restart candidates.
    pub hung: Vec<String>,
    /// Every desired worker is Ready: a clean run, which resets the backoff.
    pub all_ready: bool,
    pub now: Timestamp,
    /// A random number in [0, 1) for the backoff's jitter.
    pub jitter: f64,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Transition {
    /// The history was cleared: by a new spec generation, or by the reset annotation.
    Reset { by_annotation: bool },
    /// One failure too many: the circuit opened.
    BudgetExhausted,
    /// The window slid and the backoff elapsed: workers are started again.
    HalfOpen,
}

/// What one step of the budget decided.
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    pub history: History,
    /// Pods the operator restarts (deletes, so their ReplicaSet replaces them).
    pub restart: Vec<String>,
    /// Failures recorded in this step (detected ones and operator restarts).
    pub recorded: Vec<Failure>,
    pub transitions: Vec<Transition>,
    /// Look again after this long even if nothing happens.
    pub requeue: Option<Duration>,
}

pub fn step(policy: &Policy, prev: &History, input: Input) -> Step {
    let mut h = prev.clone();
    let now = input.now;
    let mut transitions = resets(&mut h, input.generation, input.reset_token);

    h.failures.retain(|f| in_window(policy, f, now));
    let mut recorded = Vec::new();
    if !h.circuit_open {
        recorded.extend(input.failures);
    }
    let (restart, deferred) = restart_hung(policy, &mut h, input.hung, &mut recorded, now, input.jitter);
    h.failures.extend(recorded.iter().cloned());
    h.failures.sort_by_key(|f| f.at.0);
    transitions.extend(move_circuit(policy, &mut h, now, input.jitter));

    // A clean run (every worker Ready, nothing pending) forgives the backoff, not the budget.
    if input.all_ready && !h.circuit_open && restart.is_empty() && !deferred {
        h.backoff_attempt = 0;
        h.next_attempt_at = None;
    }
    let requeue = wake(policy, &h, deferred, now);
    Step { history: h, restart, recorded, transitions, requeue }
}

/// A new spec generation, or a new value of the reset annotation, clears the history.
fn resets(h: &mut History, generation: i64, reset_token: Option<&str>) -> Vec<Transition> {
    let mut transitions = Vec::new();
    if h.generation != Some(generation) {
        if h.generation.is_some() {
            clear(h);
            transitions.push(Transition::Reset { by_annotation: false });
        }
        h.generation = Some(generation);
    }
    if let Some(token) = reset_token {
        if h.reset_token.as_deref() != Some(token) {
            clear(h);
            h.reset_token = Some(token.to_string());
            transitions.push(Transition::Reset { by_annotation: true });
        }
    }
    transitions
}

/// Operator-initiated restarts of hung pods: spaced by the backoff, each one a failure (added to
/// `recorded`). The pods to restart, and whether the backoff deferred one.
fn restart_hung(
    policy: &Policy,
    h: &mut History,
    hung: Vec<String>,
    recorded: &mut Vec<Failure>,
    now: Timestamp,
    jitter: f64,
) -> (Vec<String>, bool) {
    let mut restart = Vec::new();
    for pod in hung {
        if h.circuit_open || h.failures.len() + recorded.len() > policy.max_restarts as usize {
            break;
        }
        if h.next_attempt_at.as_ref().is_some_and(|t| now < t.0) {
            return (restart, true);
        }
        recorded.push(Failure {
            reason: "ReadinessTimeout".into(),
            message: format!(
                "running but not Ready for more than {}s (health.startupTimeoutSeconds); restarted by the operator",
                policy.startup_timeout.as_secs()
            ),
            pod: pod.clone(),
            at: Time(truncate(now)),
        });
        if h.failures.len() + recorded.len() > policy.max_restarts as usize {
            break; // this failure exhausts the budget: the circuit opens instead
        }
        restart.push(pod);
        h.backoff_attempt += 1;
        h.next_attempt_at = Some(after(now, backoff::jittered(&policy.backoff, h.backoff_attempt, jitter)));
    }
    (restart, false)
}

/// One failure too many opens the circuit; a slid window and an elapsed backoff half-open it.
fn move_circuit(policy: &Policy, h: &mut History, now: Timestamp, jitter: f64) -> Option<Transition> {
    let used = h.failures.len();
    if !h.circuit_open && used > policy.max_restarts as usize {
        h.circuit_open = true;
        h.backoff_attempt += 1;
        h.next_attempt_at = Some(after(now, backoff::jittered(&policy.backoff, h.backoff_attempt, jitter)));
        Some(Transition::BudgetExhausted)
    } else if h.circuit_open
        && used <= policy.max_restarts as usize
        && h.next_attempt_at.as_ref().is_none_or(|t| now >= t.0)
    {
        h.circuit_open = false;
        Some(Transition::HalfOpen)
    } else {
        None
    }
}

/// When to look again: when the oldest failure leaves the window, and while the circuit is open
/// or a restart is deferred, when it may go on.
fn wake(policy: &Policy, h: &History, deferred: bool, now: Timestamp) -> Option<Duration> {
    let mut wake = None;
    if let Some(oldest) = h.failures.first() {
        wake = earliest(wake, until(now, expiry(policy, oldest)));
    }
    if h.circuit_open || deferred {
        let next = h.next_attempt_at.as_ref().map(|t| t.0).unwrap_or(now);
        let resets = resets_at(policy, h).unwrap_or(now);
        wake = earliest(wake, until(now, next.max(if h.circuit_open { resets } else { next })));
    }
    wake
}

/// The budget as the status shows it.
pub fn status(policy: &Policy, h: &History) -> RestartBudgetStatus {
    RestartBudgetStatus {
        used: u32::try_from(h.failures.len()).unwrap_or(u32::MAX),
        max: policy.max_restarts,
        window_seconds: u32::try_from(policy.window.as_secs()).unwrap_or(u32::MAX),
        resets_at: resets_at(policy, h).map(Time),
    }
}

/// When the budget next changes: while the circuit is open, when it may half-open; otherwise when
/// the oldest failure leaves the window.
pub fn resets_at(policy: &Policy, h: &History) -> Option<Timestamp> {
    let max = policy.max_restarts as usize;
    if h.failures.len() > max {
        // Enough failures must expire for `max` to remain.
        let closes = h.failures.get(h.failures.len() - max - 1).map(|f| expiry(policy, f))?;
        let next = h.next_attempt_at.as_ref().map(|t| t.0).unwrap_or(closes);
        return Some(closes.max(next));
    }
    h.failures.first().map(|f| expiry(policy, f))
}

/// Forgets the failures, the backoff and the circuit, keeping the generation and reset token: a
/// rolled-back service's kept workers start with the whole budget.
pub fn forgive(h: &mut History) {
    clear(h);
}

fn clear(h: &mut History) {
    h.failures.clear();
    h.backoff_attempt = 0;
    h.next_attempt_at = None;
    h.circuit_open = false;
}

fn in_window(policy: &Policy, f: &Failure, now: Timestamp) -> bool {
    expiry(policy, f) > now
}

fn expiry(policy: &Policy, f: &Failure) -> Timestamp {
    f.at.0
        .saturating_add(SignedDuration::try_from(policy.window).unwrap_or(SignedDuration::MAX))
        .unwrap_or(f.at.0)
}

/// `now + d`, rounded up to a whole second (status times are whole seconds).
fn after(now: Timestamp, d: Duration) -> Time {
    let t = now.saturating_add(SignedDuration::try_from(d).unwrap_or(SignedDuration::MAX)).unwrap_or(now);
    let up = if t.subsec_nanosecond() > 0 { 1 } else { 0 };
    Time(Timestamp::from_second(t.as_second() + up).unwrap_or(t))
}

fn until(now: Timestamp, then: Timestamp) -> Duration {
    Duration::try_from(then.duration_since(now)).unwrap_or(Duration::ZERO)
}

fn earliest(a: Option<Duration>, b: Duration) -> Option<Duration> {
    Some(a.map_or(b, |a| a.min(b)))
}

#[cfg(test)]
mod tests;
