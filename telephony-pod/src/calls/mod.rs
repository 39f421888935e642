//! The worker's calls: the store of what it knows of each (`store`), the events it streams to the
//! app (`events`), and their HTTP routes (`routes`). `Calls` ties them to the metrics, so every
//! change is recorded, published and counted the same way.

pub mod events;
pub mod routes;
pub mod store;

use std::sync::Mutex;

use jiff::Timestamp;

pub use events::{CallEvent, EventLog};
pub use store::{Call, Change, State, Store};

use crate::metrics::{EndLabels, Metrics};
use crate::webhook::Envelope;

/// Calls kept (ended ones are dropped first).
pub const CAPACITY: usize = 1000;

/// Telnyx's documented hangup causes; anything else is counted as `other`, so the metric's
/// labels stay bounded.
const CAUSES: &[&str] = &[
    "call_rejected",
    "normal_clearing",
    "originator_cancel",
    "timeout",
    "time_limit",
    "user_busy",
    "not_found",
    "no_answer",
    "unspecified",
    "drain_timeout",
];

pub struct Calls {
    store: Mutex<Store>,
    pub events: EventLog,
    metrics: Metrics,
}

impl Calls {
    pub fn new(metrics: Metrics) -> Calls {
        Calls { store: Mutex::new(Store::new(CAPACITY)), events: EventLog::default(), metrics }
    }

    pub fn dialed(&self, id: &str, leg: Option<String>, session: Option<String>, from: &str, to: &str) {
        self.change(|s| Some(s.dialed(id, leg, session, from, to, Timestamp::now())));
    }

    /// Applies a verified webhook; false when it changed nothing.
    pub fn apply(&self, e: &Envelope) -> bool {
        self.change(|s| s.apply(e, Timestamp::now()))
    }

    pub fn ended_here(&self, id: &str, cause: &str, source: &str) -> bool {
        self.change(|s| s.ended_here(id, cause, source, Timestamp::now()))
    }

    pub fn set_recording(&self, id: &str, on: bool) {
        self.change(|s| Some(s.set_recording(id, on, Timestamp::now())));
    }

    pub fn get(&self, id: &str) -> Option<Call> {
        self.store.lock().ok()?.get(id).cloned()
    }

    /// Newest first.
    pub fn list(&self) -> Vec<Call> {
        self.store.lock().map(|s| s.list().into_iter().cloned().collect()).unwrap_or_default()
    }

    /// How many calls have not ended (no allocation: the heartbeat asks every period).
    pub fn active_calls(&self) -> usize {
        self.store.lock().map(|s| s.active().count()).unwrap_or(0)
    }

    /// Ids of the calls not yet ended.
    pub fn active(&self) -> Vec<String> {
        self.store.lock().map(|s| s.active().map(|c| c.call_control_id.clone()).collect()).unwrap_or_default()
    }

    fn change(&self, f: impl FnOnce(&mut Store) -> Option<(Change, Call)>) -> bool {
        let Ok(mut store) = self.store.lock() else { return false };
        let Some((change, call)) = f(&mut store) else { return false };
        let active = store.active().count();
        drop(store);
        self.metrics.active_calls.set(active as i64);
        if change == Change::Ended {
            self.count_end(&call);
        }
        self.events.publish(change, call);
        true
    }

    fn count_end(&self, call: &Call) {
        let cause = call.hangup_cause.as_deref().filter(|c| CAUSES.contains(c)).unwrap_or("other");
        let outcome = if call.answered_at.is_some() { "answered" } else { "unanswered" };
        self.metrics
            .calls_ended
            .get_or_create(&EndLabels { outcome: outcome.into(), cause: cause.into() })
            .inc();
        if let Some(secs) = call.duration_secs {
            self.metrics.call_duration.observe(secs);
        }
    }
}
