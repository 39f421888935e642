//! What the operator decides for one TelephonyService, as a pure function of what it observed:
//! the children to apply, the pods to restart, the status to write and the events to publish.
//!
//! [`decide`] runs named steps, each in its own module: validate (or hand off: invalid spec,
//! paused) → [`assess`] the workers and the budget → build the children → [`status`] → where
//! calls go (`failover`) → [`events`] → when to look again.

mod assess;
mod events;
pub use events::{created, fold_created};
mod hands_off;
mod status;

use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use serde::Deserialize;

use crate::conditions::Conditions;
use crate::crd::{Failure, Phase, TelephonyService, TelephonyServiceStatus};
use crate::desired;
use crate::failover;
use crate::liveness::PodObservation;
use crate::restart_budget::Transition;
use crate::validate::validate;

/// Look again at least this often, even when nothing happens.
const RESYNC: Duration = Duration::from_secs(300);

/// How far a Deployment's controller has got with its latest spec.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Rollout {
    pub observed_generation: Option<i64>,
    pub updated_replicas: Option<i32>,
}

/// A child (the worker Deployment or Service) as the watch cache holds it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Child {
    /// The hash of what was last applied (`names::APPLIED_HASH`).
    pub applied_hash: Option<String>,
    pub generation: Option<i64>,
    /// A Deployment's rollout (a Service has none).
    pub rollout: Rollout,
}

/// The applied hashes of children this process applied that the watch cache doesn't show yet.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct JustApplied {
    pub deployment: Option<String>,
    pub service: Option<String>,
}

/// Everything observed about one service.
pub struct Observed<'a> {
    pub tsvc: &'a TelephonyService,
    pub deployment: Option<Child>,
    pub service: Option<Child>,
    /// Children applied by this process and not in the cache yet: not applied again.
    pub just_applied: JustApplied,
    pub pods: Vec<PodObservation>,
    pub now: Timestamp,
    /// A random number in [0, 1) for backoff jitter.
    pub jitter: f64,
    /// With `spec.failover`: whether the backup can take calls (None: not seen).
    pub backup_up: Option<bool>,
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

#[derive(Debug, Clone, PartialEq)]
pub enum BudgetChange {
    Apply(Box<PodDisruptionBudget>),
    Delete,
}

#[derive(Debug, Clone)]
pub struct Decision {
    /// Apply these (only what differs from what is there).
    pub deployment: Option<Deployment>,
    pub service: Option<Service>,
    /// The workers' PodDisruptionBudget, looked at when the Deployment is applied: apply it, or
    /// (None) delete the one the last decision wanted.
    pub disruption_budget: Option<BudgetChange>,
    /// Pods the operator restarts (deletes).
    pub restart_pods: Vec<String>,
    /// Roll the Deployment back to the workers of this `pod-template-hash` (see `rollback`).
    pub roll_back_to: Option<String>,
    /// While rolled back, the Deployment's template is left alone: only its replicas change, when
    /// the circuit opens or half-opens.
    pub scale_workers: Option<i32>,
    pub status: TelephonyServiceStatus,
    /// A new service's first status waits for its workers' first outcome: not written (see
    /// [`status::first_held`]).
    pub status_held: bool,
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
            disruption_budget: None,
            restart_pods: vec![],
            roll_back_to: None,
            scale_workers: None,
            status,
            status_held: false,
            events,
            failures: vec![],
            budget_exhausted: false,
            requeue: RESYNC,
        }
    }
}

pub fn decide(obs: &Observed) -> Decision {
    let prev = obs.tsvc.status.clone().unwrap_or_default();
    let generation = obs.tsvc.metadata.generation.unwrap_or(0);
    let conditions = Conditions::new(&prev.conditions, generation, obs.now);

    let problems = validate(&obs.tsvc.spec);
    if !problems.is_empty() {
        return hands_off::invalid_spec(&prev, &conditions, generation, &problems);
    }
    if obs.tsvc.spec.paused {
        return hands_off::paused(obs, &prev, &conditions, generation);
    }
    let a = assess::assess(obs, &prev, generation);
    let (deployment, service) = children(obs, a.desired_replicas);
    // Rolled back: applying this generation's template would bring back the workers that failed.
    let deployment = deployment.filter(|_| a.rolled_back.is_none());
    let circuit_moved =
        a.transitions.iter().any(|t| matches!(t, Transition::BudgetExhausted | Transition::HalfOpen));
    let scale_workers =
        (a.rolled_back.is_some() && a.roll_back_now.is_none() && circuit_moved).then_some(a.desired_replicas);
    let disruption_budget = deployment.as_ref().and_then(|_| budget_change(obs, &prev, a.desired_replicas));
    let mut status = status::build(obs.tsvc, &a, &conditions, generation);
    let failover = calls_go(obs, &prev, &a);
    status.failover = failover.as_ref().map(|v| v.status.clone());
    let mut events = events::choose(obs, &prev, &a, &status);
    let switch = failover.as_ref().and_then(|v| v.switch);
    events.extend(switch.map(|s| events::failover(obs.tsvc, s, &status)));
    let held = status::first_held(obs.tsvc, &prev, &a, obs.now);
    let requeue = failover.and_then(|v| v.requeue).map_or(a.requeue, |r| r.min(a.requeue));
    let requeue = held.map_or(requeue, |wait| requeue.min(wait + Duration::from_millis(100)));
    Decision {
        deployment,
        service,
        disruption_budget,
        restart_pods: a.restart,
        roll_back_to: a.roll_back_now,
        scale_workers,
        status,
        status_held: held.is_some(),
        events,
        budget_exhausted: a.transitions.contains(&Transition::BudgetExhausted),
        failures: a.recorded,
        requeue,
    }
}

/// With `spec.failover`: whether the primary's calls go to the backup (see `failover`).
fn calls_go(
    obs: &Observed,
    prev: &TelephonyServiceStatus,
    a: &assess::Assessment,
) -> Option<failover::Verdict> {
    let spec = obs.tsvc.spec.failover.as_ref()?;
    // A primary still starting is not a failure to fail over from (the readiness answer sends its
    // calls to the backup meanwhile, without an Event or a hold-down); one that served and lost
    // its workers, ran out of budget, or was scaled to 0 is.
    let served = matches!(prev.phase, Phase::Ready | Phase::Degraded);
    let primary_down = a.open || a.desired_replicas == 0 || (a.ready == 0 && served);
    let primary_up = !a.open && a.desired_replicas > 0 && a.ready > 0;
    let sight = failover::Sight { primary_down, primary_up, backup_up: obs.backup_up };
    let hold_down = Duration::from_secs(u64::from(spec.hold_down_seconds));
    Some(failover::decide(prev.failover.as_ref(), sight, hold_down, obs.now))
}

/// The Deployment and Service to apply: only those that differ from what is there.
fn children(obs: &Observed, replicas: i32) -> (Option<Deployment>, Option<Service>) {
    let want_deployment = desired::deployment(obs.tsvc, replicas);
    let want_service = desired::service(obs.tsvc);
    let applied = |child: &Option<Child>, just: &Option<String>| {
        child.as_ref().and_then(|c| c.applied_hash.clone()).or_else(|| just.clone())
    };
    let just = &obs.just_applied;
    let deployment = (applied(&obs.deployment, &just.deployment).as_deref()
        != desired::applied_hash(&want_deployment))
    .then_some(want_deployment);
    let service = (applied(&obs.service, &just.service).as_deref() != desired::applied_hash(&want_service))
        .then_some(want_service);
    (deployment, service)
}

/// A budget while there is more than one worker; the one a previous decision made (the status
/// recorded more than one) is deleted when they are fewer. Looking at the status, not the API,
/// keeps a new single-worker service at the writes it had.
fn budget_change(obs: &Observed, prev: &TelephonyServiceStatus, replicas: i32) -> Option<BudgetChange> {
    match desired::disruption_budget(obs.tsvc, replicas) {
        Some(pdb) => Some(BudgetChange::Apply(Box::new(pdb))),
        None => (prev.replicas > 1).then_some(BudgetChange::Delete),
    }
}

#[cfg(test)]
mod tests;
