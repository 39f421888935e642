//! The events one look publishes: each failure, each phase transition, the circuit's moves.

use super::assess::Assessment;
use super::status::failure_text;
use super::{Announcement, Observed, Severity};
use crate::conditions::{self, ConditionType::Ready};
use crate::crd::TelephonyService;
use crate::crd::{Phase, TelephonyServiceStatus};
use crate::desired;
use crate::failover::Switch;
use crate::liveness::UNSCHEDULABLE;
use crate::names::RESET_RESTART_BUDGET;
use crate::restart_budget::Transition;

pub fn choose(
    obs: &Observed,
    prev: &TelephonyServiceStatus,
    a: &Assessment,
    status: &TelephonyServiceStatus,
) -> Vec<Announcement> {
    let mut events = Vec::new();
    let mut say = |severity, reason, note| events.push(Announcement { severity, reason, note });
    let message = || status.message.clone().unwrap_or_default();
    for f in &a.recorded {
        say(Severity::Warning, "PodRestarted", failure_text(f));
    }
    for (pod, words) in &a.drain_cuts {
        say(Severity::Warning, "DrainTimeout", format!("worker pod {pod}: {words}"));
    }
    if let (Some(_), Some(r)) = (&a.roll_back_now, &a.rolled_back) {
        say(Severity::Warning, "RolledBack", r.message.clone());
    }
    for t in &a.transitions {
        match t {
            Transition::BudgetExhausted => say(Severity::Warning, "RestartBudgetExhausted", message()),
            Transition::HalfOpen => {
                let note =
                    format!("the failure window slid; starting {} worker(s) again", obs.tsvc.spec.replicas);
                say(Severity::Normal, "Resumed", note)
            }
            Transition::Reset { by_annotation } if a.was_open => {
                let note = if *by_annotation {
                    format!("restart budget reset by the {RESET_RESTART_BUDGET} annotation")
                } else {
                    "restart budget reset by a new spec generation".into()
                };
                say(Severity::Normal, "Resumed", note)
            }
            Transition::Reset { .. } => {}
        }
    }
    // Once per spell: the scheduler repeats its own FailedScheduling on the pod.
    let said = conditions::find(&prev.conditions, Ready).is_some_and(|c| c.reason == UNSCHEDULABLE);
    if a.unschedulable.is_some() && !said {
        let note = conditions::find(&status.conditions, Ready).map(|c| c.message.clone()).unwrap_or_default();
        say(Severity::Warning, UNSCHEDULABLE, note);
    }
    match a.phase {
        _ if a.phase == prev.phase => {}
        // `RolledBack` above says it, with why.
        Phase::Degraded if a.roll_back_now.is_some() => {}
        Phase::Ready => say(Severity::Normal, "Ready", message()),
        Phase::Degraded => say(Severity::Warning, "Degraded", message()),
        _ => {}
    }
    events
}

/// What the API server created when the operator applied a service's children (it answered
/// 201, not 200). Said from the answer, not from the watch cache: the cache can lag the
/// operator's own writes (a pod's event can arrive before its Deployment's), and deciding from
/// it announced one Deployment twice in the chaos runs.
pub fn created(tsvc: &TelephonyService, deployment: bool, service: bool) -> Option<Announcement> {
    let what = match (deployment, service) {
        (true, true) => "Deployment and Service",
        (true, false) => "Deployment",
        (false, true) => "Service",
        (false, false) => return None,
    };
    let note = format!("created {what} {}", desired::child_name(tsvc));
    Some(Announcement { severity: Severity::Normal, reason: "Created", note })
}

/// `Created` and `Ready` in one look (most often a new service's first status, see
/// `status::first_held`) are one Event, `Created`, whose note says both: at N = 1000 on the
/// simulated node, 1 of the 6 writes per service.
pub fn fold_created(created: Option<Announcement>, mut events: Vec<Announcement>) -> Vec<Announcement> {
    let Some(mut created) = created else { return events };
    if let Some(i) = events.iter().position(|e| e.reason == "Ready") {
        let ready = events.remove(i);
        created.note = format!("{}; {}", created.note, ready.note);
    }
    events.insert(0, created);
    events
}

/// A switch of where the primary's calls go.
pub fn failover(tsvc: &TelephonyService, switch: Switch, status: &TelephonyServiceStatus) -> Announcement {
    let backup = tsvc.spec.failover.as_ref().map_or_else(String::new, |f| {
        let ns = f.namespace.clone().or_else(|| tsvc.metadata.namespace.clone()).unwrap_or_default();
        format!("{ns}/{}", f.service)
    });
    match switch {
        Switch::Over => Announcement {
            severity: Severity::Warning,
            reason: "FailedOver",
            note: format!("calls go to the backup {backup}: {}", status.message.clone().unwrap_or_default()),
        },
        Switch::Back { backup_down } => {
            let why = if backup_down {
                format!("the backup {backup} is down")
            } else {
                let hold = tsvc.spec.failover.as_ref().map_or(0, |f| f.hold_down_seconds);
                format!("Ready for {hold}s (spec.failover.holdDownSeconds)")
            };
            Announcement {
                severity: Severity::Normal,
                reason: "FailedBack",
                note: format!("calls come back: {why}"),
            }
        }
    }
}
