//! How Dialtone's processes watch the API: the operator's caches and the readiness service's.

use std::time::Duration;

use kube::runtime::utils::{Backoff, ResetTimerBackoff};
use kube::runtime::watcher::ExponentialBackoff;

/// A watch's retries after an error: 0.8 s doubling to 3 s, each plus up to as much again of
/// jitter (so at most 6 s), back to 0.8 s after a success (or 2 min without an error). kube's
/// default, like client-go's, caps at 30 s: after a 10 s apiserver or etcd restart in the chaos
/// runs, the watches' next tries came 20 to 50 s after the apiserver was back, and the statuses
/// trailed the pods that long. A few watches retrying every few seconds cost the apiserver nothing.
pub fn backoff() -> impl Backoff {
    let schedule = backon::ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(800))
        .with_max_delay(Duration::from_secs(3))
        .with_factor(2.0)
        .with_jitter()
        .without_max_times();
    ResetTimerBackoff::new(ExponentialBackoff::from(schedule), Duration::from_secs(120))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_start_under_2_s_and_never_wait_past_6_s() {
        let mut b = backoff();
        let waits: Vec<Duration> = (0..20).map_while(|_| b.next()).collect();
        assert_eq!(waits.len(), 20, "a watch retries for as long as it runs");
        assert!(waits[0] < Duration::from_millis(1700), "first {:?}", waits[0]);
        assert!(waits.iter().all(|w| *w <= Duration::from_secs(6)), "{waits:?}");
        b.reset();
        assert!(b.next().is_some_and(|w| w < Duration::from_millis(1700)), "a success starts over");
    }
}
