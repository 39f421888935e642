//! Calls after they are placed: Telnyx's signed webhooks, the call store, the event stream, recording
//! and the drain on SIGTERM, against the in-process fake Telnyx, with ed25519 keys made per test.

mod support;

use std::time::Duration;

use serde_json::{json, Value};
use support::*;
use testing::sse::Frame;
use testing::telnyx::{call_event, Signer as TelnyxSigner};
use tokio::sync::mpsc::UnboundedReceiver;

const CALL: &str = "v3:call-1"; // what the fake's dial answers

fn now() -> i64 {
    jiff::Timestamp::now().as_second()
}

async fn worker_with_webhooks(fake: &Fake, signer: &TelnyxSigner, extra: &[(&str, &str)]) -> Worker {
    let key = signer.public_key();
    let mut env = vec![("TELNYX_PUBLIC_KEY", key.as_str())];
    env.extend_from_slice(extra);
    Worker::start(config(&fake.base_url(), &env)).await
}

async fn deliver(w: &Worker, signer: &TelnyxSigner, body: &str) -> (u16, Value) {
    let (status, _, answer) = w.webhook(&signer.headers(now(), body), body).await;
    (status, answer)
}

async fn dial(w: &Worker) -> (u16, axum::http::HeaderMap, Value) {
    w.post("/v1/calls", json!({ "to": "+15550002222", "from": "+15550001111" })).await
}

async fn subscribe(w: &Worker, last_event_id: Option<&str>) -> UnboundedReceiver<Frame> {
    testing::sse::follow(&format!("{}/v1/events", w.url), last_event_id).await
}

async fn next(rx: &mut UnboundedReceiver<Frame>) -> Frame {
    testing::sse::next(rx, Duration::from_secs(5), "a call event").await
}

async fn metric(w: &Worker, line_start: &str) -> f64 {
    let text = testing::http()
        .get(format!("{}/metrics", w.url))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .unwrap_or_default();
    text.lines()
        .find(|l| l.starts_with(line_start))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test]
async fn a_signed_call_story_is_recorded_streamed_and_counted() {
    let fake = Fake::start().await;
    let signer = TelnyxSigner::default();
    let w = worker_with_webhooks(&fake, &signer, &[]).await;
    let mut events = subscribe(&w, None).await;
    assert_eq!(dial(&w).await.0, 201);
    for (id, kind, extra) in [
        ("ev-1", "call.initiated", json!({ "direction": "outgoing", "state": "bridging" })),
        ("ev-2", "call.answered", json!({ "state": "answered" })),
        (
            "ev-3",
            "call.hangup",
            json!({ "hangup_cause": "normal_clearing", "hangup_source": "callee", "state": "hangup" }),
        ),
    ] {
        let (status, answer) = deliver(&w, &signer, &call_event(id, kind, CALL, extra)).await;
        assert_eq!((status, answer["result"].as_str()), (200, Some("applied")), "{kind}: {answer}");
    }
    let mut seen = Vec::new();
    for _ in 0..4 {
        let (event, id, data) = next(&mut events).await;
        let data: Value = serde_json::from_str(&data).expect("JSON event");
        assert_eq!(data["type"], event.as_str());
        assert_eq!(data["call"]["callControlId"], CALL);
        assert!(id.is_some(), "every event has an id to resume from");
        seen.push(event);
    }
    assert_eq!(seen, ["call.dialed", "call.initiated", "call.answered", "call.ended"]);

    let (status, _, call) = w.get(&format!("/v1/calls/{CALL}")).await;
    assert_eq!(status, 200, "{call}");
    assert_eq!(call["state"], "ended");
    assert_eq!(call["hangupCause"], "normal_clearing");
    assert_eq!(call["hangupSource"], "callee");
    assert_eq!(call["direction"], "outgoing");
    assert!(call["durationSecs"].as_f64().is_some(), "{call}");
    let (_, _, list) = w.get("/v1/calls").await;
    assert_eq!(list["active"], 0);
    assert_eq!(metric(&w, "telephony_active_calls ").await, 0.0);
    assert_eq!(
        metric(&w, r#"telephony_calls_ended_total{outcome="answered",cause="normal_clearing"}"#).await,
        1.0
    );
    assert_eq!(metric(&w, "telephony_call_duration_seconds_count").await, 1.0);
    assert_eq!(metric(&w, r#"telephony_webhooks_total{event="call.hangup",result="applied"}"#).await, 1.0);
    assert_eq!(w.get("/v1/calls/v3:unknown").await.0, 404);
}

#[tokio::test]
async fn forged_stale_and_malformed_webhooks_are_refused_and_change_nothing() {
    let fake = Fake::start().await;
    let signer = TelnyxSigner::default();
    let w = worker_with_webhooks(&fake, &signer, &[]).await;
    let body = call_event("ev-1", "call.answered", "v3:x", json!({}));

    let forger = TelnyxSigner::default();
    let (status, _, e) = w.webhook(&forger.headers(now(), &body), &body).await;
    assert_eq!((status, e["error"]["code"].as_str()), (401, Some("bad_signature")), "{e}");
    assert_eq!(e["error"]["message"], "the signature does not match the body and timestamp");

    let tampered = body.replace("call.answered", "call.hangup");
    assert_eq!(w.webhook(&signer.headers(now(), &body), &tampered).await.0, 401);

    let (status, _, e) = w.webhook(&signer.headers(now() - 301, &body), &body).await;
    assert_eq!(status, 401);
    assert!(e["error"]["message"].as_str().is_some_and(|m| m.contains("tolerance 300 s")), "{e}");

    let (status, _, e) = w.webhook(&[], &body).await;
    assert_eq!(status, 401);
    assert_eq!(e["error"]["message"], "the telnyx-timestamp header is missing");

    for bad in ["not json", r#"{"data":{"event_type":"call.hangup"}}"#] {
        let (status, _, e) = w.webhook(&signer.headers(now(), bad), bad).await;
        assert_eq!((status, e["error"]["code"].as_str()), (400, Some("malformed_event")), "{bad}: {e}");
    }
    // Within the webhooks' 64 KiB (a hangup with quality stats is a few KiB).
    let big = call_event("ev-big", "call.answered", "v3:big", json!({ "pad": "a".repeat(20_000) }));
    assert_eq!(deliver(&w, &signer, &big).await.0, 200);
    let huge =
        format!(r#"{{"data":{{"id":"x","event_type":"call.hangup","pad":"{}"}}}}"#, "a".repeat(70_000));
    assert_eq!(w.webhook(&signer.headers(now(), &huge), &huge).await.0, 413);

    assert_eq!(w.get("/v1/calls/v3:x").await.0, 404, "nothing was applied");
    assert_eq!(metric(&w, r#"telephony_webhooks_rejected_total{reason="bad_signature"}"#).await, 2.0);
    assert_eq!(metric(&w, r#"telephony_webhooks_rejected_total{reason="stale"}"#).await, 1.0);
    assert_eq!(metric(&w, r#"telephony_webhooks_rejected_total{reason="malformed"}"#).await, 2.0);

    let off = Worker::start(config(&fake.base_url(), &[])).await;
    let (status, _, e) = off.webhook(&signer.headers(now(), &body), &body).await;
    assert_eq!((status, e["error"]["code"].as_str()), (404, Some("webhooks_off")));
}

#[tokio::test]
async fn a_repeated_event_is_acknowledged_but_applied_once_and_unknown_types_are_accepted() {
    let fake = Fake::start().await;
    let signer = TelnyxSigner::default();
    let w = worker_with_webhooks(&fake, &signer, &[]).await;
    let answered = call_event("ev-a", "call.answered", "v3:y", json!({}));
    assert_eq!(deliver(&w, &signer, &answered).await, (200, json!({ "result": "applied" })));
    // A replay, re-signed with a fresh timestamp as a Telnyx retry would be.
    assert_eq!(deliver(&w, &signer, &answered).await, (200, json!({ "result": "duplicate" })));
    let dtmf = call_event("ev-d", "call.dtmf.received", "v3:y", json!({ "digit": "5" }));
    assert_eq!(deliver(&w, &signer, &dtmf).await, (200, json!({ "result": "unchanged" })));
    let late = call_event("ev-i", "call.initiated", "v3:y", json!({}));
    assert_eq!(
        deliver(&w, &signer, &late).await,
        (200, json!({ "result": "unchanged" })),
        "answered stays answered"
    );
    assert_eq!(w.get("/v1/calls/v3:y").await.2["state"], "answered");
    assert_eq!(metric(&w, r#"telephony_webhooks_total{event="other",result="unchanged"}"#).await, 1.0);
    assert_eq!(
        metric(&w, r#"telephony_webhooks_total{event="call.answered",result="duplicate"}"#).await,
        1.0
    );
}

#[tokio::test]
async fn events_resume_after_last_event_id_or_say_reset() {
    let fake = Fake::start().await;
    let signer = TelnyxSigner::default();
    let w = worker_with_webhooks(&fake, &signer, &[]).await;
    let mut first = subscribe(&w, None).await;
    for (i, call) in ["v3:a", "v3:b", "v3:c"].iter().enumerate() {
        deliver(&w, &signer, &call_event(&format!("ev-{i}"), "call.initiated", call, json!({}))).await;
    }
    let (_, id_a, _) = next(&mut first).await;
    let mut resumed = subscribe(&w, id_a.as_deref()).await;
    let (_, _, data) = next(&mut resumed).await;
    assert!(data.contains("v3:b"), "resumes right after a: {data}");
    assert!(next(&mut resumed).await.2.contains("v3:c"));

    let mut stranger = subscribe(&w, Some("deadbeef-7")).await;
    let (event, _, data) = next(&mut stranger).await;
    assert_eq!(event, "reset", "{data}");
    assert_eq!(w.get("/v1/calls").await.2["active"], 3);
}

#[tokio::test]
async fn recording_goes_through_telnyx_and_the_saved_urls_land_on_the_call() {
    let fake = Fake::start().await;
    let signer = TelnyxSigner::default();
    let w = worker_with_webhooks(&fake, &signer, &[]).await;
    dial(&w).await;
    deliver(&w, &signer, &call_event("ev-1", "call.answered", CALL, json!({}))).await;

    let (status, _, body) =
        w.post(&format!("/v1/calls/{CALL}/recording/start"), json!({ "format": "wav" })).await;
    assert_eq!(status, 200, "{body}");
    let sent = fake.seen("POST", "/v2/calls/v3:call-1/actions/record_start");
    let sent: Value = serde_json::from_str(&sent.first().expect("record_start sent").body).expect("JSON");
    assert_eq!((sent["format"].as_str(), sent["channels"].as_str()), (Some("wav"), Some("single")));
    assert!(sent["command_id"].as_str().is_some_and(|c| c.starts_with("dialtone-")));
    assert_eq!(w.get(&format!("/v1/calls/{CALL}")).await.2["recording"], true);

    assert_eq!(w.post(&format!("/v1/calls/{CALL}/recording/stop"), json!({})).await.0, 200);
    assert_eq!(fake.seen("POST", "/v2/calls/v3:call-1/actions/record_stop").len(), 1);
    // The spec's call.recording.saved payload names the call by leg and session only.
    let saved = json!({ "data": { "record_type": "event", "event_type": "call.recording.saved", "id": "ev-r",
        "payload": { "call_leg_id": "leg-1", "channels": "single",
            "recording_urls": { "mp3": "https://recordings.example/r.mp3" } } } })
    .to_string();
    assert_eq!(deliver(&w, &signer, &saved).await.1["result"], "applied");
    let call = w.get(&format!("/v1/calls/{CALL}")).await.2;
    assert_eq!(call["recording"], false);
    assert_eq!(call["recordings"], json!([{ "format": "mp3", "url": "https://recordings.example/r.mp3" }]));

    let (status, _, e) =
        w.post(&format!("/v1/calls/{CALL}/recording/start"), json!({ "format": "ogg" })).await;
    assert_eq!((status, e["error"]["field"].as_str()), (400, Some("format")), "{e}");
    let ended = r#"{"errors":[{"code":"90018","title":"Call has already ended"}]}"#;
    fake.script("record_start", Canned::new(422, ended));
    let (status, _, e) = w.post(&format!("/v1/calls/{CALL}/recording/start"), json!({})).await;
    assert_eq!((status, e["error"]["code"].as_str()), (409, Some("call_already_ended")), "{e}");
}

#[tokio::test]
async fn a_draining_worker_refuses_new_calls_and_waits_for_its_live_one_to_end() {
    let fake = Fake::start().await;
    let signer = TelnyxSigner::default();
    let mut w = worker_with_webhooks(&fake, &signer, &[("DRAIN_TIMEOUT_SECONDS", "30")]).await;
    testing::wait_until(Duration::from_secs(5), "ready", || async {
        (w.get("/readyz").await.0 == 200).then_some(())
    })
    .await;
    dial(&w).await;
    deliver(&w, &signer, &call_event("ev-1", "call.answered", CALL, json!({}))).await;
    w.terminate();
    testing::wait_until(Duration::from_secs(5), "not ready", || async {
        (w.get("/readyz").await.0 == 503).then_some(())
    })
    .await;
    let (status, headers, e) = dial(&w).await;
    assert_eq!((status, e["error"]["code"].as_str()), (503, Some("draining")), "{e}");
    assert_eq!(headers.get("retry-after").and_then(|v| v.to_str().ok()), Some("1"));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(w.get(&format!("/v1/calls/{CALL}")).await.2["state"], "answered", "the live call is not cut");
    let hangup = call_event("ev-2", "call.hangup", CALL, json!({ "hangup_cause": "normal_clearing" }));
    assert_eq!(deliver(&w, &signer, &hangup).await.0, 200);
    testing::wait_until(Duration::from_secs(3), "the worker stops once its call ended", || async {
        testing::http().get(format!("{}/healthz", w.url)).send().await.is_err().then_some(())
    })
    .await;
    assert!(fake.seen("POST", "/v2/calls/v3:call-1/actions/hangup").is_empty(), "the worker never cut it");
}

#[tokio::test]
async fn a_call_that_outlives_the_drain_is_ended_with_drain_timeout() {
    let fake = Fake::start().await;
    let signer = TelnyxSigner::default();
    let mut w = worker_with_webhooks(&fake, &signer, &[("DRAIN_TIMEOUT_SECONDS", "1")]).await;
    dial(&w).await;
    let mut events = subscribe(&w, None).await;
    w.terminate();
    let (event, _, data) = next(&mut events).await;
    assert_eq!(event, "call.ended", "{data}");
    let data: Value = serde_json::from_str(&data).expect("JSON");
    assert_eq!(data["call"]["hangupCause"], "drain_timeout");
    assert_eq!(data["call"]["hangupSource"], "worker");
    assert_eq!(fake.seen("POST", "/v2/calls/v3:call-1/actions/hangup").len(), 1, "hung up through Telnyx");
    // The worker says what its drain ended, and stays until the operator has asked: the kubelet's
    // probe is not the operator.
    let (status, _, body) = w.get("/readyz").await;
    let said = "drain timeout: ended 1 live call at the end of the 1s drain (hangup cause drain_timeout)";
    assert_eq!(
        (status, body["error"]["message"].as_str(), body["activeCalls"].as_u64()),
        (503, Some(said), Some(0))
    );
    assert!(tokio::time::timeout(Duration::from_secs(1), events.recv()).await.is_err(), "still serving");
    let asked = testing::http()
        .get(format!("{}/readyz", w.url))
        .header("x-dialtone-asker", "telephony-operator")
        .send()
        .await
        .expect("the operator's ask");
    assert_eq!(asked.status(), 503);
    assert!(tokio::time::timeout(Duration::from_secs(2), events.recv())
        .await
        .expect("the stream ends once the operator has heard")
        .is_none());
}
