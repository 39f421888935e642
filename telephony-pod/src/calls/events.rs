//! The call events the worker streams to the main app (`GET /v1/events`, Server-Sent Events).
//! Each event has an id `<boot>-<seq>`; a client that reconnects with `Last-Event-ID` gets what
//! it missed from the last [`BACKLOG`] events. When that can't be done (the worker restarted, or
//! the events were dropped), the stream says `event: reset` first, so the client refetches
//! `GET /v1/calls` instead of silently missing a hangup. A subscriber too slow to keep up with
//! [`LIVE_BUFFER`] events is closed with `event: lagged`, never buffered without bound.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use serde::Serialize;
use tokio::sync::broadcast;

use super::store::{Call, Change};

/// Events kept for resuming.
pub const BACKLOG: usize = 1024;
/// Events queued for one live subscriber before it counts as too slow.
pub const LIVE_BUFFER: usize = 256;

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CallEvent {
    #[serde(skip)]
    pub seq: u64,
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub call: Call,
}

pub struct EventLog {
    /// Distinguishes this process's ids from a previous one's.
    boot: String,
    inner: Mutex<Ring>,
    live: broadcast::Sender<Arc<CallEvent>>,
}

#[derive(Default)]
struct Ring {
    next: u64,
    events: VecDeque<Arc<CallEvent>>,
}

/// Where a subscriber starts.
#[derive(Debug, PartialEq)]
pub enum Resume {
    /// Everything after this sequence number is still here.
    After(u64),
    /// Start fresh: what was missed is gone (or was never this process's).
    Reset,
}

impl Default for EventLog {
    fn default() -> Self {
        EventLog {
            boot: format!("{:08x}", rand::random::<u32>()),
            inner: Mutex::new(Ring { next: 1, events: VecDeque::new() }),
            live: broadcast::channel(LIVE_BUFFER).0,
        }
    }
}

impl EventLog {
    pub fn publish(&self, change: Change, call: Call) {
        let Ok(mut ring) = self.inner.lock() else { return };
        let event = Arc::new(CallEvent { seq: ring.next, kind: change.name(), call });
        ring.next += 1;
        if ring.events.len() >= BACKLOG {
            ring.events.pop_front();
        }
        ring.events.push_back(event.clone());
        // No subscriber is fine: the backlog keeps it for the next one.
        let _ = self.live.send(event);
    }

    pub fn id(&self, seq: u64) -> String {
        format!("{}-{seq}", self.boot)
    }

    /// Reads a `Last-Event-ID` against what this process still holds.
    pub fn resume(&self, last_event_id: Option<&str>) -> Resume {
        let Some(last) = last_event_id else { return Resume::After(self.last_seq()) };
        let Some(seq) = last
            .strip_prefix(&self.boot)
            .and_then(|s| s.strip_prefix('-'))
            .and_then(|s| s.parse::<u64>().ok())
        else {
            return Resume::Reset;
        };
        let Ok(ring) = self.inner.lock() else { return Resume::Reset };
        let oldest = ring.events.front().map_or(ring.next, |e| e.seq);
        if seq + 1 < oldest || seq >= ring.next {
            Resume::Reset
        } else {
            Resume::After(seq)
        }
    }

    /// The live feed plus what is held after `seq`, taken together so nothing falls between.
    pub fn subscribe(&self, after: u64) -> (Vec<Arc<CallEvent>>, broadcast::Receiver<Arc<CallEvent>>) {
        let Ok(ring) = self.inner.lock() else { return (Vec::new(), self.live.subscribe()) };
        let rx = self.live.subscribe();
        (ring.events.iter().filter(|e| e.seq > after).cloned().collect(), rx)
    }

    fn last_seq(&self) -> u64 {
        self.inner.lock().map_or(0, |r| r.next - 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::calls::store::Store;

    fn call(id: &str) -> Call {
        let mut s = Store::new(4);
        s.dialed(id, None, None, "a", "b", jiff::Timestamp::UNIX_EPOCH).1
    }

    #[test]
    fn a_client_resumes_after_the_last_id_it_saw() {
        let log = EventLog::default();
        for i in 0..5 {
            log.publish(Change::Dialed, call(&format!("c{i}")));
        }
        assert_eq!(log.resume(None), Resume::After(5), "a new subscriber gets only what comes next");
        let after = match log.resume(Some(&log.id(3))) {
            Resume::After(n) => n,
            Resume::Reset => panic!("3 is held"),
        };
        let (missed, _) = log.subscribe(after);
        assert_eq!(missed.iter().map(|e| e.seq).collect::<Vec<_>>(), [4, 5]);
    }

    #[test]
    fn ids_it_cannot_resume_from_reset_the_client() {
        let log = EventLog::default();
        for i in 0..BACKLOG + 10 {
            log.publish(Change::Dialed, call(&format!("c{i}")));
        }
        assert_eq!(log.resume(Some(&log.id(5))), Resume::Reset, "dropped from the backlog");
        assert_eq!(log.resume(Some(&log.id(10))), Resume::After(10), "the oldest held is 11");
        assert_eq!(log.resume(Some("0badb007-3")), Resume::Reset, "another process's id");
        assert_eq!(log.resume(Some(&log.id(99_999))), Resume::Reset, "from the future");
        assert_eq!(log.resume(Some("garbage")), Resume::Reset);
    }
}
