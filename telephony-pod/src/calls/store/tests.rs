use super::*;
use crate::webhook::parse;

fn at(secs: i64) -> Timestamp {
    Timestamp::from_second(1_790_000_000 + secs).unwrap()
}

fn event(id: &str, kind: &str, call: &str, extra: &str, secs: i64) -> Envelope {
    let body = format!(
        r#"{{"data":{{"id":"{id}","event_type":"{kind}","occurred_at":"{}","payload":{{"call_control_id":"{call}","call_leg_id":"leg-{call}"{extra}}}}}}}"#,
        at(secs)
    );
    parse(body.as_bytes()).unwrap()
}

#[test]
fn a_call_placed_here_is_answered_and_ends_with_its_cause_and_duration() {
    let mut s = Store::new(10);
    let (change, call) = s.dialed("c1", Some("leg-c1".into()), None, "+15550001111", "+15550002222", at(0));
    assert_eq!((change, call.state), (Change::Dialed, State::Dialed));
    assert_eq!(
        s.apply(&event("e1", "call.initiated", "c1", "", 1), at(1)).map(|(c, _)| c),
        Some(Change::Initiated)
    );
    assert_eq!(
        s.apply(&event("e2", "call.answered", "c1", "", 3), at(3)).map(|(c, _)| c),
        Some(Change::Answered)
    );
    assert_eq!(s.active().count(), 1);
    let hangup =
        event("e3", "call.hangup", "c1", r#","hangup_cause":"normal_clearing","hangup_source":"callee""#, 65);
    let (change, call) = s.apply(&hangup, at(65)).unwrap();
    assert_eq!(change, Change::Ended);
    assert_eq!(call.hangup_cause.as_deref(), Some("normal_clearing"));
    assert_eq!(call.hangup_source.as_deref(), Some("callee"));
    assert_eq!(call.duration_secs, Some(62.0));
    assert_eq!(call.direction.as_deref(), Some("outgoing"));
    assert_eq!(s.active().count(), 0);
}

#[test]
fn out_of_order_and_repeated_events_never_move_a_call_back() {
    let mut s = Store::new(10);
    s.apply(&event("e1", "call.hangup", "c2", r#","hangup_cause":"user_busy""#, 5), at(5)).unwrap();
    assert_eq!(s.apply(&event("e2", "call.answered", "c2", "", 2), at(6)), None);
    assert_eq!(s.apply(&event("e3", "call.initiated", "c2", "", 1), at(6)), None);
    assert_eq!(s.apply(&event("e4", "call.hangup", "c2", r#","hangup_cause":"timeout""#, 7), at(7)), None);
    let call = s.get("c2").unwrap();
    assert_eq!(call.state, State::Ended);
    assert_eq!(call.hangup_cause.as_deref(), Some("user_busy"));
    assert_eq!(call.duration_secs, None, "never answered");
}

#[test]
fn a_recording_is_found_by_leg_when_the_control_id_is_absent() {
    let mut s = Store::new(10);
    s.dialed("c3", Some("leg-c3".into()), Some("sess-3".into()), "+15550001111", "+15550002222", at(0));
    s.set_recording("c3", true, at(1));
    assert!(s.get("c3").unwrap().recording);
    let saved = parse(
        br#"{"data":{"id":"r1","event_type":"call.recording.saved","payload":{"call_leg_id":"leg-c3",
        "recording_urls":{"mp3":"https://rec.example/c3.mp3"}}}}"#,
    )
    .unwrap();
    let (change, call) = s.apply(&saved, at(9)).unwrap();
    assert_eq!(change, Change::RecordingSaved);
    assert_eq!(
        call.recordings,
        vec![Recording { format: "mp3".into(), url: "https://rec.example/c3.mp3".into() }]
    );
    assert_eq!(s.apply(&saved, at(9)).unwrap().1.recordings.len(), 1, "the same URL once");
    let stranger = parse(
        br#"{"data":{"id":"r2","event_type":"call.recording.saved","payload":{"call_leg_id":"nobody"}}}"#,
    )
    .unwrap();
    assert_eq!(s.apply(&stranger, at(9)), None);
}

#[test]
fn unknown_events_change_nothing() {
    let mut s = Store::new(10);
    assert_eq!(s.apply(&event("e", "call.dtmf.received", "c4", "", 0), at(0)), None);
    assert!(s.get("c4").is_none());
}

#[test]
fn a_call_ended_here_says_why() {
    let mut s = Store::new(10);
    s.dialed("c5", None, None, "+15550001111", "+15550002222", at(0));
    let (_, call) = s.ended_here("c5", "drain_timeout", "worker", at(30)).unwrap();
    assert_eq!(call.hangup_cause.as_deref(), Some("drain_timeout"));
    assert_eq!(call.hangup_source.as_deref(), Some("worker"));
    assert_eq!(s.ended_here("c5", "drain_timeout", "worker", at(31)), None);
}

#[test]
fn a_full_store_forgets_ended_calls_before_live_ones() {
    let mut s = Store::new(3);
    s.dialed("live-1", None, None, "a", "b", at(0));
    s.apply(&event("h", "call.hangup", "ended-1", "", 1), at(1));
    s.dialed("live-2", None, None, "a", "b", at(2));
    s.dialed("live-3", None, None, "a", "b", at(3));
    assert!(s.get("ended-1").is_none());
    assert_eq!(
        s.list().iter().map(|c| c.call_control_id.as_str()).collect::<Vec<_>>(),
        ["live-3", "live-2", "live-1"]
    );
    s.dialed("live-4", None, None, "a", "b", at(4));
    assert!(s.get("live-1").is_none(), "all live: the oldest goes");
    assert_eq!(s.list().len(), 3);
}
