//! The TelephonyService's conditions (their types are part of the API: `crd::ConditionType`), and
//! a builder that moves a condition's transition time only when its status flips.

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

pub use crate::crd::ConditionType;

/// Builds this look's conditions against the previous ones.
pub struct Conditions<'a> {
    previous: &'a [Condition],
    generation: i64,
    now: Timestamp,
}

impl<'a> Conditions<'a> {
    pub fn new(previous: &'a [Condition], generation: i64, now: Timestamp) -> Conditions<'a> {
        Conditions { previous, generation, now }
    }

    /// Condition `type_`, keeping the previous transition time when its status is unchanged.
    pub fn set(
        &self,
        type_: ConditionType,
        status: bool,
        reason: &str,
        message: impl Into<String>,
    ) -> Condition {
        let (type_, status) = (type_.as_str(), if status { "True" } else { "False" });
        let transition = self
            .previous
            .iter()
            .find(|c| c.type_ == type_ && c.status == status)
            .map(|c| c.last_transition_time.clone())
            .unwrap_or(Time(crate::liveness::truncate(self.now)));
        // Kubernetes 1.20's server-side apply turns "" into null, which the schema refuses: never empty.
        let message = Some(message.into()).filter(|m| !m.is_empty()).unwrap_or_else(|| reason.to_string());
        Condition {
            type_: type_.to_string(),
            status: status.to_string(),
            reason: reason.to_string(),
            message,
            last_transition_time: transition,
            observed_generation: Some(self.generation),
        }
    }
}

/// Condition `type_` in `conditions`, if it is there.
pub fn find(conditions: &[Condition], type_: ConditionType) -> Option<&Condition> {
    conditions.iter().find(|c| c.type_ == type_.as_str())
}

/// Whether condition `type_` is True in `conditions` (for tests: decisions read the phase).
#[cfg(test)]
pub fn is_true(conditions: &[Condition], type_: ConditionType) -> bool {
    conditions.iter().any(|c| c.type_ == type_.as_str() && c.status == "True")
}

#[cfg(test)]
mod tests {
    use super::*;
    use ConditionType::Ready;

    fn t(s: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + s).unwrap()
    }

    #[test]
    fn transition_time_moves_only_on_flip() {
        let first = Conditions::new(&[], 1, t(0)).set(Ready, false, "Starting", "");
        assert_eq!(first.last_transition_time, Time(t(0)));
        assert_eq!(first.message, "Starting", "never an empty message");
        let same = Conditions::new(std::slice::from_ref(&first), 2, t(10)).set(Ready, false, "Other", "msg");
        assert_eq!(same.last_transition_time, Time(t(0)), "reason and message changes are not transitions");
        assert_eq!(same.observed_generation, Some(2));
        let flipped = Conditions::new(&[same], 2, t(20)).set(Ready, true, "AllReplicasReady", "");
        assert_eq!(flipped.last_transition_time, Time(t(20)));
        assert!(is_true(&[flipped], Ready));
    }
}
