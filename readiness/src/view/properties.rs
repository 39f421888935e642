//! The answer's promises, over every combination of status, staleness and heartbeats.

use proptest::prelude::*;

use super::*;
use crate::crd::TelephonyServiceStatus;

const NOW: i64 = 1_800_000_000_000;

fn phase() -> impl Strategy<Value = Phase> {
    prop::sample::select(vec![
        Phase::Pending,
        Phase::Progressing,
        Phase::Ready,
        Phase::Degraded,
        Phase::Failed,
        Phase::Paused,
    ])
}

fn service() -> impl Strategy<Value = TelephonyService> {
    (phase(), 0..4i32, 0..4i32, any::<bool>()).prop_map(|(phase, ready, replicas, observed)| {
        let mut t = dialtone_api::fixtures::sample();
        t.status = Some(TelephonyServiceStatus {
            phase,
            observed_generation: observed.then_some(1),
            ready_replicas: ready,
            replicas,
            ..Default::default()
        });
        t
    })
}

fn heartbeats() -> impl Strategy<Value = Option<Heartbeats>> {
    prop::option::of((0..4i32).prop_map(|up| Heartbeats { up, ..Default::default() }))
}

proptest! {
    /// 200 exactly when healthy; never healthy while stale (never a stale "ready"), nor while the
    /// heartbeats say no worker is up; an unhealthy answer always says when to come back.
    #[test]
    fn the_answer_keeps_its_promises(t in service(), stale in any::<bool>(), hb in heartbeats()) {
        let v = view(&t, NOW - 500, stale, NOW, hb.as_ref());
        prop_assert_eq!(v.http_status() == 200, v.healthy);
        if stale {
            prop_assert!(!v.healthy && v.status == Word::Unknown);
        }
        if hb.as_ref().is_some_and(|h| h.up == 0) {
            prop_assert!(!v.healthy);
        }
        if v.healthy {
            prop_assert!(matches!(v.status, Word::Ready | Word::Degraded));
            prop_assert_eq!(v.retry_after, None);
        } else {
            prop_assert!(v.retry_after.is_some_and(|s| (1..=MAX_RETRY_AFTER_SECS).contains(&s)));
        }
        prop_assert!(v.ready_replicas <= t.status.as_ref().map_or(0, |s| s.ready_replicas));
    }
}
