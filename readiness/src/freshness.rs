//! Whether what the readiness service holds can be trusted: never a stale "ready".
//!
//! Confirmed means: the watch's last word was not an error, and the Kubernetes API answered a
//! probe (or delivered an event) recently. Past `stale_after` without confirmation, every answer is
//! `unknown`.

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::Duration;

pub struct Freshness {
    stale_after: Duration,
    /// Last confirmation, ms since the epoch (0: never).
    confirmed_ms: AtomicI64,
    watch_failing: AtomicBool,
    synced: AtomicBool,
}

pub fn now_ms() -> i64 {
    jiff::Timestamp::now().as_millisecond()
}

impl Freshness {
    pub fn new(stale_after: Duration) -> Freshness {
        Freshness {
            stale_after,
            confirmed_ms: AtomicI64::new(0),
            watch_failing: AtomicBool::new(false),
            synced: AtomicBool::new(false),
        }
    }

    /// A watch event: Ok confirms, an error withholds confirmation until the watch recovers.
    pub fn watch_event(&self, ok: bool, at_ms: i64) {
        self.watch_failing.store(!ok, Ordering::SeqCst);
        if ok {
            self.confirmed_ms.fetch_max(at_ms, Ordering::SeqCst);
        }
    }

    /// The initial list is in: from now on the cache holds every service.
    pub fn set_synced(&self) {
        self.synced.store(true, Ordering::SeqCst);
    }

    /// The API answered a probe: confirms, unless the watch itself is broken.
    pub fn probe_ok(&self, at_ms: i64) {
        if !self.watch_failing.load(Ordering::SeqCst) {
            self.confirmed_ms.fetch_max(at_ms, Ordering::SeqCst);
        }
    }

    pub fn confirmed_ms(&self) -> i64 {
        self.confirmed_ms.load(Ordering::SeqCst)
    }

    pub fn is_stale(&self, now_ms: i64) -> bool {
        let limit = i64::try_from(self.stale_after.as_millis()).unwrap_or(i64::MAX);
        !self.synced.load(Ordering::SeqCst) || now_ms.saturating_sub(self.confirmed_ms()) > limit
    }

    /// How often to probe so that a healthy API is confirmed well within `stale_after`.
    pub fn probe_period(&self) -> Duration {
        (self.stale_after / 5).clamp(Duration::from_millis(200), Duration::from_secs(5))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stale_until_synced_then_fresh_while_confirmed() {
        let f = Freshness::new(Duration::from_secs(10));
        f.watch_event(true, 1_000);
        assert!(f.is_stale(1_000), "not synced yet");
        f.set_synced();
        assert!(!f.is_stale(5_000));
        assert!(!f.is_stale(11_000));
        assert!(f.is_stale(11_001));
        f.probe_ok(11_000);
        assert!(!f.is_stale(20_000));
    }

    #[test]
    fn a_broken_watch_is_not_rescued_by_probes() {
        let f = Freshness::new(Duration::from_secs(10));
        f.set_synced();
        f.watch_event(true, 0);
        f.watch_event(false, 1_000);
        f.probe_ok(9_000);
        assert_eq!(f.confirmed_ms(), 0);
        assert!(f.is_stale(10_001));
        f.watch_event(true, 12_000);
        assert!(!f.is_stale(12_000));
    }

    #[test]
    fn probe_period_is_a_fifth_of_the_limit_within_bounds() {
        assert_eq!(Freshness::new(Duration::from_secs(10)).probe_period(), Duration::from_secs(2));
        assert_eq!(Freshness::new(Duration::from_millis(100)).probe_period(), Duration::from_millis(200));
    }
}
