//! Contract tests: the worker against Prism serving Telnyx's own OpenAPI spec (the project's
//! copy, `tests/telnyx/telnyx.openapi.yml`, extracted from `../shared/telnyx/` with its provenance). Prism answers 422 to any request that violates the spec, so every flow
//! succeeding means every request the worker sends is valid. The webhooks the worker receives
//! are the spec's own examples of each call event, signed as Telnyx signs them.
//! `scripts/setup.sh` installs Prism.

mod support;

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use support::*;
use telephony_pod::credentials::Credentials;
use telephony_pod::metrics::Metrics;
use telephony_pod::telnyx::{Dial, NewCredential, Telnyx};
use testing::telnyx::Signer as TelnyxSigner;
use tokio::process::{Child, Command};

struct Prism {
    _child: Child,
    base_url: String,
}

fn prism_bin() -> PathBuf {
    testing::cache_dir().join("prism-5.16.0/node_modules/.bin/prism")
}

/// Credentials, calls, call actions, recording and the webhook payloads.
fn spec_path() -> PathBuf {
    testing::telnyx::contract_spec()
}

async fn prism() -> Prism {
    let spec = spec_path();
    assert!(
        spec.exists(),
        "Telnyx contract missing at {} (scripts/telnyx-contract.py writes it)",
        spec.display()
    );
    let bin = prism_bin();
    assert!(bin.exists(), "Prism missing at {}: run scripts/setup.sh", bin.display());
    let port = testing::free_port();
    let child = Command::new(bin)
        .args(["mock", "-h", "127.0.0.1", "-p", &port.to_string()])
        .arg(&spec)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("start Prism");
    let base_url = format!("http://127.0.0.1:{port}/v2");
    let probe = format!("{base_url}/telephony_credentials?page%5Bsize%5D=1");
    testing::wait_until(Duration::from_secs(60), "Prism up", || async {
        let res = testing::http().get(&probe).bearer_auth("k").send().await.ok()?;
        (res.status().as_u16() == 200).then_some(())
    })
    .await;
    Prism { _child: child, base_url }
}

#[tokio::test]
async fn every_request_the_worker_sends_is_valid_against_telnyxs_spec() {
    let prism = prism().await;

    // Prism really validates: a create without the required connection_id is refused.
    let bad = testing::http()
        .post(format!("{}/telephony_credentials", prism.base_url))
        .bearer_auth("k")
        .json(&serde_json::json!({ "name": "x" }))
        .send()
        .await
        .expect("request");
    assert_eq!(
        bad.status().as_u16(),
        422,
        "Prism must reject invalid requests for this test to mean anything"
    );

    // Each Telnyx operation the worker uses, directly.
    // With its pod IP, the worker's dials carry its address in client_state (webhook::owner).
    let cfg = config(
        &prism.base_url,
        &[("TELNYX_TIMEOUT_MS", "5000"), ("TELNYX_MAX_ATTEMPTS", "1"), ("POD_IP", "10.244.0.7")],
    );
    let telnyx = Arc::new(Telnyx::new(&cfg, Metrics::default()).expect("client"));
    let tag = cfg.tag();
    let created = telnyx
        .create_credential(&NewCredential {
            connection_id: &cfg.connection_id,
            name: "agent-42",
            tag: &tag,
            expires_at: "2030-01-01T00:00:00Z".into(),
        })
        .await
        .expect("CreateTelephonyCredential");
    let token = telnyx.mint_token(&created.id).await.expect("CreateTelephonyCredentialToken");
    assert_eq!(token.split('.').count(), 3);
    telnyx
        .list_credentials(&tag, Some("agent-42"), false, 1)
        .await
        .expect("FindTelephonyCredentials by name");
    telnyx.list_credentials(&tag, None, true, 2).await.expect("FindTelephonyCredentials expired, page 2");
    telnyx.check().await.expect("readiness check");
    telnyx.delete_credential(&created.id).await.expect("DeleteTelephonyCredential");
    let call = telnyx
        .dial(&Dial {
            connection_id: &cfg.connection_id,
            to: "+15551234567",
            from: "+15557654321",
            timeout_secs: Some(30),
            client_state: Some("b3JkZXItMQ==".into()),
            command_id: "dialtone-test-1".into(),
        })
        .await
        .expect("DialCall");
    telnyx.hangup(&call.call_control_id, "dialtone-test-2").await.expect("HangupCall");
    let creds =
        Credentials::new(telnyx, cfg.connection_id.clone(), tag, cfg.credential_ttl, 5, Metrics::default());
    creds.sweep().await.expect("the sweep's listing and deletes");

    // And the worker's own API end to end over Prism.
    let w = Worker::start(cfg).await;
    let (status, _, body) = w.post("/v1/credentials", serde_json::json!({ "username": "agent-42" })).await;
    assert_eq!(status, 201, "{body}");
    let (status, _, body) = w
        .post(
            "/v1/calls",
            serde_json::json!({ "to": "+15551234567", "from": "sip:agent@example.com", "clientState": "x" }),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let id = body["callControlId"].as_str().expect("callControlId").to_string();
    let (status, _, body) = w.post(&format!("/v1/calls/{id}/hangup"), serde_json::json!({})).await;
    assert_eq!(status, 200, "{body}");
    testing::wait_until(Duration::from_secs(10), "ready against Prism", || async {
        (testing::get(&format!("{}/readyz", w.url)).await?.0 == 200).then_some(())
    })
    .await;
}

/// Each `webhooks:` entry of the spec: its name, the header names it declares, and the example of
/// its `data` schema wrapped as Telnyx sends it (`{"data": ...}`).
fn spec_webhooks() -> Vec<(String, Vec<String>, serde_json::Value)> {
    let text = std::fs::read_to_string(spec_path()).expect("read the spec");
    let spec: serde_json::Value = serde_yaml::from_str(&text).expect("the spec is YAML");
    let schema = |r: &serde_json::Value| {
        let name = r.as_str().and_then(|r| r.rsplit('/').next()).unwrap_or_default().to_string();
        spec["components"]["schemas"][&name].clone()
    };
    let hooks = spec["webhooks"].as_object().expect("webhooks:").clone();
    hooks
        .into_iter()
        .map(|(name, hook)| {
            let post = &hook["post"];
            let headers = post["parameters"].as_array().into_iter().flatten();
            let headers = headers.filter_map(|p| p["name"].as_str().map(String::from)).collect();
            let event = schema(&post["requestBody"]["content"]["application/json"]["schema"]["$ref"]);
            let example = schema(&event["properties"]["data"]["$ref"])["example"].clone();
            assert!(example.is_object(), "{name}: the spec gives an example of its data");
            (name, headers, serde_json::json!({ "data": example }))
        })
        .collect()
}

#[tokio::test]
async fn recording_is_valid_and_the_specs_own_webhook_examples_are_verified_and_applied() {
    let prism = prism().await;
    let signer = TelnyxSigner::default();
    let key = signer.public_key();
    let cfg = config(
        &prism.base_url,
        &[("TELNYX_TIMEOUT_MS", "5000"), ("TELNYX_MAX_ATTEMPTS", "1"), ("TELNYX_PUBLIC_KEY", key.as_str())],
    );
    let w = Worker::start(cfg).await;
    let (status, _, body) =
        w.post("/v1/calls", serde_json::json!({ "to": "+15551234567", "from": "+15557654321" })).await;
    assert_eq!(status, 201, "{body}");
    let id = body["callControlId"].as_str().expect("callControlId").to_string();
    // Prism refuses a record_start without its required format and channels: these pass.
    for (path, body) in [
        ("recording/start", serde_json::json!({})),
        ("recording/start", serde_json::json!({ "format": "wav", "channels": "dual" })),
        ("recording/stop", serde_json::json!({})),
    ] {
        let (status, _, answer) = w.post(&format!("/v1/calls/{id}/{path}"), body).await;
        assert_eq!(status, 200, "{path}: {answer}");
    }

    let hooks = spec_webhooks();
    assert_eq!(hooks.len(), 5, "call.initiated, answered, hangup, recording.saved, machine detection");
    let now = jiff::Timestamp::now().as_second();
    let mut applied = Vec::new();
    for (name, declared, mut body) in hooks {
        let ours: Vec<&str> = signer.headers(now, "").iter().map(|(k, _)| *k).collect();
        assert!(ours.iter().all(|h| declared.iter().any(|d| d == h)), "{name} declares {declared:?}");
        // Ours: this worker's call (control id, or leg for the events that carry only that).
        let payload = &mut body["data"]["payload"];
        if payload.get("call_control_id").is_some() {
            payload["call_control_id"] = id.clone().into();
        } else {
            payload["call_leg_id"] = w.get(&format!("/v1/calls/{id}")).await.2["callLegId"].clone();
        }
        body["data"]["id"] = format!("spec-{name}").into();
        let raw = body.to_string();
        let (status, _, answer) = w.webhook(&signer.headers(now, &raw), &raw).await;
        assert_eq!(status, 200, "{name}: {answer}");
        applied.push((name, answer["result"].as_str().unwrap_or_default().to_string()));
    }
    let call = w.get(&format!("/v1/calls/{id}")).await.2;
    assert_eq!(call["state"], "ended", "{call}");
    assert_eq!(call["hangupCause"], "call_rejected", "the spec's example cause");
    assert!(call["recordings"].as_array().is_some_and(|r| !r.is_empty()), "{call}");
    let result = |n: &str| applied.iter().find(|(name, _)| name == n).map(|(_, r)| r.as_str());
    assert_eq!(result("callMachineDetectionEnded"), Some("unchanged"), "accepted, not acted on: {applied:?}");
    assert_eq!(result("callHangup"), Some("applied"), "{applied:?}");
}
