//! What the worker knows of each call: placed here or heard of through a webhook, then answered,
//! ended (with Telnyx's hangup cause) and recorded. Pure: times are passed in. Bounded: the
//! oldest ended calls make room first.

use std::collections::{HashMap, VecDeque};

use jiff::Timestamp;
use serde::Serialize;

use crate::webhook::{Envelope, Kind, Payload};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub enum State {
    /// Placed by this worker; Telnyx has not yet said it started.
    Dialed,
    Initiated,
    Answered,
    Ended,
}

#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Recording {
    pub format: String,
    pub url: String,
}

/// What the worker knows of one call.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Call {
    pub call_control_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub call_leg_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub call_session_id: Option<String>,
    /// `outgoing` or `incoming`, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub direction: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
    pub state: State,
    pub started_at: Timestamp,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub answered_at: Option<Timestamp>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ended_at: Option<Timestamp>,
    /// Telnyx's cause (`normal_clearing`, `user_busy`, ...), or `drain_timeout` when this worker
    /// ended the call because it outlived the drain.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hangup_cause: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hangup_source: Option<String>,
    /// Answered to ended, in seconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duration_secs: Option<f64>,
    pub recording: bool,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub recordings: Vec<Recording>,
}

impl Call {
    pub fn is_active(&self) -> bool {
        self.state != State::Ended
    }

    fn new(call_control_id: String, at: Timestamp) -> Call {
        Call {
            call_control_id,
            call_leg_id: None,
            call_session_id: None,
            direction: None,
            from: None,
            to: None,
            state: State::Dialed,
            started_at: at,
            answered_at: None,
            ended_at: None,
            hangup_cause: None,
            hangup_source: None,
            duration_secs: None,
            recording: false,
            recordings: Vec::new(),
        }
    }

    fn fill(&mut self, p: &Payload) {
        let keep = |mine: &mut Option<String>, theirs: &Option<String>| {
            if mine.is_none() {
                mine.clone_from(theirs);
            }
        };
        keep(&mut self.call_leg_id, &p.call_leg_id);
        keep(&mut self.call_session_id, &p.call_session_id);
        keep(&mut self.direction, &p.direction);
        keep(&mut self.from, &p.from);
        keep(&mut self.to, &p.to);
    }

    /// Moves to `state` if that is forward (webhooks arrive out of order: an `answered` after
    /// the `hangup` changes nothing). Returns whether it moved.
    fn advance(&mut self, state: State, at: Timestamp) -> bool {
        if state <= self.state {
            return false;
        }
        match state {
            State::Answered => self.answered_at = Some(at),
            State::Ended => {
                self.ended_at = Some(at);
                self.recording = false;
                self.duration_secs = self
                    .answered_at
                    .map(|a| (at.as_millisecond() - a.as_millisecond()).max(0) as f64 / 1000.0);
            }
            State::Dialed | State::Initiated => {}
        }
        self.state = state;
        true
    }
}

/// What changed, for the event stream and the metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    Dialed,
    Initiated,
    Answered,
    Ended,
    RecordingStarted,
    RecordingStopped,
    RecordingSaved,
}

impl Change {
    /// The event's name on `GET /v1/events`.
    pub fn name(self) -> &'static str {
        match self {
            Change::Dialed => "call.dialed",
            Change::Initiated => "call.initiated",
            Change::Answered => "call.answered",
            Change::Ended => "call.ended",
            Change::RecordingStarted => "call.recording.started",
            Change::RecordingStopped => "call.recording.stopped",
            Change::RecordingSaved => "call.recording.saved",
        }
    }
}

pub struct Store {
    calls: HashMap<String, Call>,
    /// Call ids, oldest first.
    order: VecDeque<String>,
    capacity: usize,
}

impl Store {
    pub fn new(capacity: usize) -> Store {
        Store { calls: HashMap::new(), order: VecDeque::new(), capacity: capacity.max(1) }
    }

    pub fn get(&self, id: &str) -> Option<&Call> {
        self.calls.get(id)
    }

    /// Newest first.
    pub fn list(&self) -> Vec<&Call> {
        self.order.iter().rev().filter_map(|id| self.calls.get(id)).collect()
    }

    pub fn active(&self) -> impl Iterator<Item = &Call> {
        self.calls.values().filter(|c| c.is_active())
    }

    /// A call this worker placed.
    pub fn dialed(
        &mut self,
        id: &str,
        leg: Option<String>,
        session: Option<String>,
        from: &str,
        to: &str,
        at: Timestamp,
    ) -> (Change, Call) {
        let call = self.entry(id, at);
        call.call_leg_id = call.call_leg_id.take().or(leg);
        call.call_session_id = call.call_session_id.take().or(session);
        call.direction.get_or_insert_with(|| "outgoing".into());
        call.from.get_or_insert_with(|| from.into());
        call.to.get_or_insert_with(|| to.into());
        (Change::Dialed, call.clone())
    }

    /// Applies a verified webhook. None when it changes nothing (an unknown type, a late event,
    /// a recording for a call we don't know).
    pub fn apply(&mut self, e: &Envelope, now: Timestamp) -> Option<(Change, Call)> {
        let at = e.occurred_at.as_deref().and_then(|t| t.parse::<Timestamp>().ok()).unwrap_or(now);
        let (state, change) = match e.kind {
            Kind::Initiated => (State::Initiated, Change::Initiated),
            Kind::Answered => (State::Answered, Change::Answered),
            Kind::Hangup => (State::Ended, Change::Ended),
            Kind::RecordingSaved => return self.recording_saved(&e.payload),
            Kind::Other(_) => return None,
        };
        let id = e.payload.call_control_id.as_deref()?;
        let call = self.entry(id, at);
        call.fill(&e.payload);
        if state == State::Ended && call.state != State::Ended {
            call.hangup_cause = e.payload.hangup_cause.clone().or(Some("unspecified".into()));
            call.hangup_source.clone_from(&e.payload.hangup_source);
        }
        call.advance(state, at).then(|| (change, call.clone()))
    }

    /// Ended here, not learnt from Telnyx: the drain outlived it (source `worker`), or the app
    /// hung up while webhooks are off (source `app`).
    pub fn ended_here(
        &mut self,
        id: &str,
        cause: &str,
        source: &str,
        at: Timestamp,
    ) -> Option<(Change, Call)> {
        let call = self.calls.get_mut(id)?;
        if call.is_active() {
            call.hangup_cause = Some(cause.into());
            call.hangup_source = Some(source.into());
        }
        call.advance(State::Ended, at).then(|| (Change::Ended, call.clone()))
    }

    pub fn set_recording(&mut self, id: &str, on: bool, at: Timestamp) -> (Change, Call) {
        let call = self.entry(id, at);
        call.recording = on && call.is_active();
        let change = if on { Change::RecordingStarted } else { Change::RecordingStopped };
        (change, call.clone())
    }

    /// `call.recording.saved` names the call by control id, leg or session (the spec's payload
    /// has only the last two).
    fn recording_saved(&mut self, p: &Payload) -> Option<(Change, Call)> {
        let matches = |c: &Call| {
            let same = |a: &Option<String>, b: &Option<String>| a.is_some() && a == b;
            p.call_control_id.as_deref() == Some(c.call_control_id.as_str())
                || same(&c.call_leg_id, &p.call_leg_id)
                || same(&c.call_session_id, &p.call_session_id)
        };
        let call = self.calls.values_mut().find(|c| matches(c))?;
        for (format, url) in &p.recording_urls {
            if !call.recordings.iter().any(|r| &r.url == url) {
                call.recordings.push(Recording { format: format.clone(), url: url.clone() });
            }
        }
        Some((Change::RecordingSaved, call.clone()))
    }

    fn entry(&mut self, id: &str, at: Timestamp) -> &mut Call {
        if !self.calls.contains_key(id) {
            self.make_room();
            self.order.push_back(id.to_string());
        }
        self.calls.entry(id.to_string()).or_insert_with(|| Call::new(id.to_string(), at))
    }

    /// Drops the oldest ended call, or (every call live) the oldest one.
    fn make_room(&mut self) {
        if self.calls.len() < self.capacity {
            return;
        }
        let victim =
            self.order.iter().position(|id| self.calls.get(id).is_none_or(|c| !c.is_active())).unwrap_or(0);
        if let Some(id) = self.order.remove(victim) {
            if self.calls.remove(&id).is_some_and(|c| c.is_active()) {
                tracing::warn!(call = %id, capacity = self.capacity, "call store full of live calls: forgot the oldest");
            }
        }
    }
}

#[cfg(test)]
mod tests;
