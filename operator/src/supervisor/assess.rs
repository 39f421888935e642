//! What one look finds: the workers' failures (liveness), the restart budget's verdict on them,
//! the phase that follows, and when to look again.

use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;

use super::{Child, Observed, RESYNC};
use crate::crd::{Failure, History, Phase, RolledBack, TelephonyServiceStatus};
use crate::liveness::{self, PodObservation};
use crate::names::RESET_RESTART_BUDGET;
use crate::restart_budget::{self, Policy, Transition};
use crate::rollback;

pub struct Assessment {
    pub policy: Policy,
    /// Ready workers, at most the desired number (a rollout's surge pod is ready too).
    pub ready: i32,
    /// Workers being deleted: draining their calls.
    pub draining: i32,
    /// The live calls those workers hold, as they answered.
    pub draining_calls: i32,
    pub all_ready: bool,
    /// The circuit is open: too many failures, workers at 0.
    pub open: bool,
    pub was_open: bool,
    pub desired_replicas: i32,
    pub history: History,
    pub used: u32,
    pub resets_at: Option<Timestamp>,
    pub last_failure: Option<Failure>,
    /// The Deployment is rolling out, or workers are still starting.
    pub rolling: bool,
    /// A worker that can't start: its waiting reason and message.
    pub stuck: Option<(String, String)>,
    /// A worker no node takes: the scheduler's message.
    pub unschedulable: Option<String>,
    /// A worker running but not Ready past its startup timeout.
    pub hung: bool,
    /// A running worker's own word on why it is not Ready (e.g. Telnyx unreachable): pod, reason.
    pub not_ready: Option<(String, String)>,
    pub phase: Phase,
    /// Failures recorded in this look (detected ones and operator restarts).
    pub recorded: Vec<Failure>,
    pub transitions: Vec<Transition>,
    /// Pods the operator restarts.
    pub restart: Vec<String>,
    pub requeue: Duration,
    /// This generation's rollout was undone: the kept template, and why.
    pub rolled_back: Option<RolledBack>,
    /// Undone in this look: roll the Deployment back to this template.
    pub roll_back_now: Option<String>,
    /// Draining workers that ended live calls at the drain timeout, first seen in this look: pod,
    /// the worker's words.
    pub drain_cuts: Vec<(String, String)>,
}

/// Ready workers, at most the desired number.
pub fn ready_workers(obs: &Observed) -> i32 {
    let ready = obs.pods.iter().filter(|p| !p.deleting && p.ready).count();
    i32::try_from(ready).unwrap_or(i32::MAX).min(obs.tsvc.spec.replicas)
}

pub fn assess(obs: &Observed, prev: &TelephonyServiceStatus, generation: i64) -> Assessment {
    let spec = &obs.tsvc.spec;
    let policy = Policy::from_spec(spec);
    let live: Vec<&PodObservation> = obs.pods.iter().filter(|p| !p.deleting).collect();
    let ready = ready_workers(obs);
    let all_ready = spec.replicas > 0 && ready >= spec.replicas;

    // Observe failures, then let the budget decide.
    let detection = liveness::detect(&obs.pods, &prev.history.pods, policy.startup_timeout, obs.now);
    let reset_token = obs.tsvc.annotations().get(RESET_RESTART_BUDGET).map(String::as_str);
    let reset_by_annotation = reset_token.is_some_and(|t| prev.history.reset_token.as_deref() != Some(t));
    let kept = prev.rolled_back.clone().filter(|r| r.generation == generation && !reset_by_annotation);
    let mut failures = detection.failures;
    if let Some(k) = &kept {
        failures.retain(|f| rollback::counts(&obs.pods, &f.pod, &k.pod_template_hash));
    }
    let step = restart_budget::step(
        &policy,
        &prev.history,
        restart_budget::Input {
            generation,
            reset_token,
            failures,
            hung: detection.hung.clone(),
            all_ready,
            now: obs.now,
            jitter: obs.jitter,
        },
    );
    let mut history = step.history;
    history.pods = detection.records;
    let drain_cuts = announce_drains(&obs.pods, &mut history);
    let mut transitions = step.transitions;
    let (rolled_back, roll_back_now) = match kept {
        Some(k) => (Some(k), None),
        None => roll_back(obs, &policy, &mut history, &mut transitions, generation),
    };
    let open = history.circuit_open;
    let desired_replicas = if open { 0 } else { spec.replicas };
    let stuck = live.iter().find_map(|p| p.waiting.clone().filter(|(r, _)| is_stuck(r)));
    let hung = !detection.hung.is_empty();
    let used = u32::try_from(history.failures.len()).unwrap_or(u32::MAX);
    // Once serving in this generation, losing workers is degradation, not "still starting".
    let was_serving =
        matches!(prev.phase, Phase::Ready | Phase::Degraded) && prev.observed_generation == Some(generation);
    let phase = if open {
        Phase::Failed
    } else if spec.replicas == 0 {
        Phase::Pending
    } else if all_ready && rolled_back.is_none() {
        Phase::Ready
    } else if used > 0 || stuck.is_some() || hung || was_serving || rolled_back.is_some() {
        Phase::Degraded
    } else {
        // With or without a pod yet: one status from creation to Ready, not one more write
        // when the pod appears (at N = 1000, 1 of the 7 writes per service).
        Phase::Progressing
    };
    // Starting workers is progress until they are Ready, as for `kubectl rollout status`. (The
    // Deployment alone counts a created pod as rolled out, which would flip the condition, and
    // cost a status write, between the pod's creation and its readiness.)
    let rolling = rollout_in_progress(obs.deployment.as_ref(), desired_replicas, live.len())
        || phase == Phase::Progressing;
    Assessment {
        ready,
        draining: i32::try_from(obs.pods.len() - live.len()).unwrap_or(i32::MAX),
        draining_calls: draining_calls(&obs.pods),
        all_ready,
        open,
        was_open: prev.history.circuit_open,
        desired_replicas,
        used,
        resets_at: restart_budget::resets_at(&policy, &history),
        last_failure: step.recorded.last().cloned().or(prev.last_failure.clone()),
        rolling,
        stuck,
        unschedulable: live.iter().find_map(|p| p.unschedulable.clone()),
        hung,
        not_ready: live.iter().find_map(|p| Some((p.name.clone(), p.not_ready_reason.clone()?))),
        phase,
        requeue: requeue(step.requeue, &obs.pods, &policy, open, obs.now),
        history,
        recorded: step.recorded,
        transitions,
        restart: step.restart,
        policy,
        rolled_back,
        roll_back_now,
        drain_cuts,
    }
}

/// The drain cuts not announced yet; the history remembers them while their pods are seen.
fn announce_drains(pods: &[PodObservation], history: &mut History) -> Vec<(String, String)> {
    history.drains_announced.retain(|p| pods.iter().any(|o| &o.name == p));
    let new: Vec<(String, String)> = liveness::drain_cuts(pods)
        .into_iter()
        .filter(|(pod, _)| !history.drains_announced.contains(pod))
        .collect();
    history.drains_announced.extend(new.iter().map(|(pod, _)| pod.clone()));
    new
}

/// When this look exhausted the budget and other workers still serve: undo the rollout instead
/// of opening the circuit (see `rollback`). The budget starts afresh for the kept workers.
fn roll_back(
    obs: &Observed,
    policy: &Policy,
    history: &mut History,
    transitions: &mut Vec<Transition>,
    generation: i64,
) -> (Option<RolledBack>, Option<String>) {
    if !transitions.contains(&Transition::BudgetExhausted) {
        return (None, None);
    }
    let Some(hash) = rollback::target(&obs.pods, &history.failures) else { return (None, None) };
    let message = rollback::message(
        generation,
        history.failures.len(),
        policy.window.as_secs(),
        history.failures.last(),
    );
    restart_budget::forgive(history);
    transitions.retain(|t| *t != Transition::BudgetExhausted);
    let at = Time(liveness::truncate(obs.now));
    (Some(RolledBack { generation, pod_template_hash: hash.clone(), message, at }), Some(hash))
}

/// Live calls on the draining workers.
fn draining_calls(pods: &[PodObservation]) -> i32 {
    let calls: u32 = pods.iter().filter(|p| p.deleting).filter_map(|p| p.active_calls).sum();
    i32::try_from(calls).unwrap_or(i32::MAX)
}

/// How often draining workers are asked how their drain goes: no pod event marks a call's end,
/// nor the drain timeout ending calls (the worker waits up to 5 s for this ask before it exits).
const DRAIN_FOLLOW: Duration = Duration::from_secs(2);

/// When to look again without an event: the budget's clock, pods that may time out, and draining
/// workers still running.
fn requeue(
    budget: Option<Duration>,
    pods: &[PodObservation],
    policy: &Policy,
    open: bool,
    now: Timestamp,
) -> Duration {
    let mut requeue = budget.unwrap_or(RESYNC).min(RESYNC);
    if pods.iter().any(|p| p.deleting && p.running) {
        requeue = requeue.min(DRAIN_FOLLOW);
    }
    for p in pods.iter().filter(|p| !p.deleting && p.running && !p.ready && !open) {
        if let Some(since) = p.not_ready_since {
            let deadline = since + jiff::SignedDuration::try_from(policy.startup_timeout).unwrap_or_default();
            let wait = Duration::try_from(deadline.duration_since(now)).unwrap_or(Duration::ZERO);
            requeue = requeue.min(wait + Duration::from_millis(100));
        }
    }
    requeue
}

/// The Deployment hasn't converged on what was asked of it yet.
fn rollout_in_progress(d: Option<&Child>, desired: i32, live_pods: usize) -> bool {
    let Some(d) = d else { return true };
    let live = i32::try_from(live_pods).unwrap_or(i32::MAX);
    if d.generation == Some(1) {
        // A Deployment at its first generation has one ReplicaSet, so its pods are the rollout.
        // Its status' counts trail the pods under load: at N = 1000 a service whose workers were
        // all Ready said "rolling out" until they caught up, and flipping that cost one more
        // status write for one service in three.
        return live != desired;
    }
    let observed = d.rollout.observed_generation.unwrap_or(0) >= d.generation.unwrap_or(0);
    let updated = d.rollout.updated_replicas.unwrap_or(0) >= desired;
    !(observed && updated && live <= desired)
}

fn is_stuck(reason: &str) -> bool {
    liveness::STUCK_REASONS.contains(&reason)
}
