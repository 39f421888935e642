//! Exponential backoff for operator-initiated restarts: `initial × multiplier^(attempt-1)`, capped.

use std::time::Duration;

use crate::crd::BackoffSpec;

/// The delay before restart number `attempt` (1-based); attempt 0 waits for nothing.
pub fn delay(policy: &BackoffSpec, attempt: u32) -> Duration {
    if attempt == 0 {
        return Duration::ZERO;
    }
    let exp = i32::try_from(attempt - 1).unwrap_or(i32::MAX).min(1000);
    let secs = f64::from(policy.initial_seconds) * policy.multiplier.max(1.0).powi(exp);
    let capped = secs.min(f64::from(policy.max_seconds.max(policy.initial_seconds)));
    Duration::from_secs_f64(capped.max(0.0))
}

/// `delay` with up to 10 % added, so many services failing together don't restart in lockstep.
/// `unit` is a random number in [0, 1). The cap still holds.
pub fn jittered(policy: &BackoffSpec, attempt: u32, unit: f64) -> Duration {
    let base = delay(policy, attempt);
    let cap = Duration::from_secs(u64::from(policy.max_seconds.max(policy.initial_seconds)));
    base.mul_f64(1.0 + 0.1 * unit.clamp(0.0, 1.0)).min(cap.max(base))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn policy(initial: u32, max: u32, multiplier: f64) -> BackoffSpec {
        BackoffSpec { initial_seconds: initial, max_seconds: max, multiplier }
    }

    #[test]
    fn default_policy_doubles_from_5s_to_300s() {
        let p = BackoffSpec::default();
        let secs: Vec<u64> = (0..9).map(|a| delay(&p, a).as_secs()).collect();
        assert_eq!(secs, vec![0, 5, 10, 20, 40, 80, 160, 300, 300]);
    }

    proptest! {
        #[test]
        fn delays_are_monotonic_and_capped(initial in 0u32..600, max in 0u32..3600, mult in 1.0f64..10.0, a in 0u32..200) {
            let p = policy(initial, max, mult);
            let cap = Duration::from_secs(u64::from(max.max(initial)));
            prop_assert!(delay(&p, a) <= delay(&p, a + 1));
            prop_assert!(delay(&p, a + 1) <= cap);
        }

        #[test]
        fn jitter_adds_at_most_ten_percent_and_keeps_the_cap(initial in 1u32..600, max in 1u32..3600, a in 1u32..50, u in 0.0f64..1.0) {
            let p = policy(initial, max, 2.0);
            let (base, j) = (delay(&p, a), jittered(&p, a, u));
            prop_assert!(j >= base);
            prop_assert!(j <= base.mul_f64(1.1) + Duration::from_nanos(1));
            prop_assert!(j <= Duration::from_secs(u64::from(max.max(initial))));
        }
    }
}
