//! When the worker checks Telnyx next. A healthy worker checks every `HEALTH_PERIOD_SECONDS`; an
//! unhealthy one re-checks after 1 s, doubling up to 5 s (or the period, if shorter), so a Telnyx
//! that comes back (or is just slow at start-up) makes the worker ready again within about 5 s,
//! not a whole period (30 s by default). Doubling up to the period took 17 s on the real node
//! when the outage had lasted a period (the next re-check was 16 s away): one cheap call every
//! 5 s while Telnyx is down costs less than that.

use std::sync::Arc;
use std::time::Duration;

use crate::readiness::Readiness;
use crate::telnyx::Telnyx;

const FIRST_RETRY: Duration = Duration::from_secs(1);
const LONGEST_RETRY: Duration = Duration::from_secs(5);

/// The wait before the next check, after `failures` consecutive failed checks (0: healthy).
pub fn next_check(period: Duration, failures: u32) -> Duration {
    if failures == 0 {
        return period;
    }
    let factor = 1u32.checked_shl(failures.saturating_sub(1)).unwrap_or(u32::MAX);
    FIRST_RETRY.saturating_mul(factor).min(LONGEST_RETRY).min(period)
}

/// Readiness follows a cheap authenticated Telnyx call, on the schedule of [`next_check`].
pub async fn check_telnyx(telnyx: Arc<Telnyx>, readiness: Arc<Readiness>, period: Duration) {
    let mut failures = 0u32;
    loop {
        let result = telnyx.check().await.map_err(|e| format!("Telnyx check failed: {e}"));
        match &result {
            Ok(()) if failures > 0 => tracing::info!(failures, "Telnyx reachable again: ready"),
            Ok(()) => {}
            Err(why) => tracing::warn!(reason = %why, "not ready"),
        }
        failures = if result.is_ok() { 0 } else { failures.saturating_add(1) };
        readiness.record(result);
        tokio::time::sleep(next_check(period, failures)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn healthy_waits_a_period_and_failing_backs_off_from_one_second_to_five() {
        let period = Duration::from_secs(30);
        let waits: Vec<u64> = (0..8).map(|n| next_check(period, n).as_secs()).collect();
        assert_eq!(waits, [30, 1, 2, 4, 5, 5, 5, 5]);
        assert_eq!(next_check(period, u32::MAX), LONGEST_RETRY, "no overflow after many failures");
        let short = Duration::from_millis(500);
        assert_eq!(next_check(short, 1), short, "never longer than the period");
    }
}
