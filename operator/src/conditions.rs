//! Condition builder: the transition time moves only when a condition's status flips.

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

pub const READY: &str = "Ready";
pub const PROGRESSING: &str = "Progressing";
pub const DEGRADED: &str = "Degraded";
pub const BUDGET_EXHAUSTED: &str = "RestartBudgetExhausted";

/// Builds condition `type_`, keeping the previous transition time when its status is unchanged.
pub fn condition(
    previous: &[Condition],
    type_: &str,
    status: bool,
    reason: &str,
    message: impl Into<String>,
    generation: i64,
    now: Timestamp,
) -> Condition {
    let status = if status { "True" } else { "False" };
    let transition = previous
        .iter()
        .find(|c| c.type_ == type_ && c.status == status)
        .map(|c| c.last_transition_time.clone())
        .unwrap_or(Time(crate::liveness::truncate(now)));
    // Kubernetes 1.20's server-side apply turns "" into null, which the schema refuses: never empty.
    let message = Some(message.into()).filter(|m| !m.is_empty()).unwrap_or_else(|| reason.to_string());
    Condition {
        type_: type_.to_string(),
        status: status.to_string(),
        reason: reason.to_string(),
        message,
        last_transition_time: transition,
        observed_generation: Some(generation),
    }
}

/// Whether condition `type_` is True in `conditions` (for tests: decisions read the phase).
#[cfg(test)]
pub fn is_true(conditions: &[Condition], type_: &str) -> bool {
    conditions.iter().any(|c| c.type_ == type_ && c.status == "True")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + s).unwrap()
    }

    #[test]
    fn transition_time_moves_only_on_flip() {
        let first = condition(&[], READY, false, "Starting", "", 1, t(0));
        assert_eq!(first.last_transition_time, Time(t(0)));
        let same = condition(std::slice::from_ref(&first), READY, false, "Other", "msg", 2, t(10));
        assert_eq!(same.last_transition_time, Time(t(0)), "reason and message changes are not transitions");
        assert_eq!(same.observed_generation, Some(2));
        let flipped = condition(&[same], READY, true, "AllReplicasReady", "", 2, t(20));
        assert_eq!(flipped.last_transition_time, Time(t(20)));
        assert!(is_true(&[flipped], READY));
    }
}
