//! The two looks that touch nothing: an invalid spec (report it; existing workers stay as they
//! are) and a paused service (observe and report).

use super::{Announcement, Decision, Observed, Severity};
use crate::conditions::{ConditionType, Conditions};
use crate::crd::{Phase, TelephonyServiceStatus};

pub fn invalid_spec(
    prev: &TelephonyServiceStatus,
    conditions: &Conditions,
    generation: i64,
    problems: &[String],
) -> Decision {
    let message = format!("invalid spec: {}", problems.join("; "));
    let mut status = prev.clone();
    status.phase = Phase::Failed;
    status.observed_generation = Some(generation);
    status.message = Some(format!("{message} (existing workers, if any, are left as they are)"));
    status.conditions = vec![
        conditions.set(ConditionType::Ready, false, "InvalidSpec", message.clone()),
        conditions.set(ConditionType::Progressing, false, "InvalidSpec", "the spec can't be applied"),
        conditions.set(ConditionType::Degraded, false, "InvalidSpec", ""),
        conditions.set(ConditionType::RestartBudgetExhausted, false, "InvalidSpec", ""),
    ];
    // Once per distinct problem, not once per look.
    let already =
        crate::conditions::find(&prev.conditions, ConditionType::Ready).is_some_and(|c| c.message == message);
    let events = if already {
        vec![]
    } else {
        vec![Announcement { severity: Severity::Warning, reason: "InvalidSpec", note: message }]
    };
    Decision::hands_off(status, events)
}

pub fn paused(
    obs: &Observed,
    prev: &TelephonyServiceStatus,
    conditions: &Conditions,
    generation: i64,
) -> Decision {
    let ready = super::assess::ready_workers(obs);
    let mut status = prev.clone();
    status.phase = Phase::Paused;
    status.observed_generation = Some(generation);
    status.ready_replicas = ready;
    status.ready = Some(format!("{ready}/{}", status.replicas));
    status.message = Some("paused: the worker Deployment and Service are left as they are".into());
    status.conditions = vec![
        conditions.set(ConditionType::Ready, false, "Paused", "spec.paused is true"),
        conditions.set(ConditionType::Progressing, false, "Paused", "spec.paused is true"),
        conditions.set(ConditionType::Degraded, false, "Paused", ""),
        conditions.set(ConditionType::RestartBudgetExhausted, prev.history.circuit_open, "Paused", ""),
    ];
    let events = if prev.phase == Phase::Paused {
        vec![]
    } else {
        vec![Announcement { severity: Severity::Normal, reason: "Paused", note: "supervision paused".into() }]
    };
    Decision::hands_off(status, events)
}
