//! The real `telephony-pod` binary: configuration errors, secrets kept out of every output, and
//! graceful shutdown on SIGTERM.

mod support;

use std::process::Stdio;
use std::time::{Duration, Instant};

use support::*;
use tokio::process::Command;

fn worker_cmd(base_url: &str, port: u16) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_telephony-pod"));
    cmd.env_clear()
        .env("TELNYX_API_KEY", KEY)
        .env("TELNYX_CONNECTION_ID", "conn-test")
        .env("TELNYX_BASE_URL", base_url)
        .env("PORT", port.to_string())
        .env("HEALTH_PERIOD_SECONDS", "1")
        .env("RUST_LOG", "debug")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    cmd
}

async fn wait_ready(port: u16) {
    testing::wait_until(Duration::from_secs(10), "worker ready", || async {
        (testing::get(&format!("http://127.0.0.1:{port}/readyz")).await?.0 == 200).then_some(())
    })
    .await;
}

#[tokio::test]
async fn missing_configuration_is_one_line_naming_the_variable() {
    let out = Command::new(env!("CARGO_BIN_EXE_telephony-pod"))
        .env_clear()
        .env("TELNYX_CONNECTION_ID", "c")
        .output()
        .await
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("TELNYX_API_KEY"), "{stderr}");

    let out = Command::new(env!("CARGO_BIN_EXE_telephony-pod"))
        .env_clear()
        .env("TELNYX_API_KEY", KEY)
        .env("TELNYX_CONNECTION_ID", "c")
        .env("MAX_CREDENTIALS", "lots")
        .output()
        .await
        .expect("run");
    assert_ne!(out.status.code(), Some(0));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("MAX_CREDENTIALS") && !stderr.contains(KEY), "{stderr}");
}

#[tokio::test]
async fn the_api_key_never_appears_in_logs_errors_or_metrics() {
    let fake = Fake::start().await;
    // A hostile upstream that echoes the key back in errors.
    let echo = format!(
        r#"{{"errors":[{{"code":"10015","title":"Bad request","detail":"you sent Bearer {KEY}"}}]}}"#
    );
    fake.script("dial", Canned::new(422, &echo));
    fake.script("create", Canned::new(500, &echo));
    fake.script("token", Canned::new(201, KEY));
    let port = testing::free_port();
    let mut child = worker_cmd(&fake.base_url(), port).spawn().expect("start worker");
    wait_ready(port).await;
    let w = Worker::at(format!("http://127.0.0.1:{port}"));
    let mut outputs = Vec::new();
    for (path, body) in [
        ("/v1/calls", serde_json::json!({ "to": "+15551234567", "from": "+15557654321" })),
        ("/v1/credentials", serde_json::json!({ "username": "a" })),
        ("/v1/credentials", serde_json::json!({ "username": "b" })),
        ("/v1/credentials", serde_json::json!({ "username": "b" })),
    ] {
        let (status, headers, v) = w.post(path, body).await;
        assert!(status >= 400 || status == 201, "{status}");
        outputs.push(format!("{status} {headers:?} {v}"));
    }
    assert!(outputs[0].contains("<redacted>"), "the echoed detail is kept, the key is not: {}", outputs[0]);
    outputs.push(testing::get(&format!("{}/metrics", w.url)).await.map(|r| r.1).unwrap_or_default());
    outputs.push(testing::get(&format!("{}/readyz", w.url)).await.map(|r| r.1).unwrap_or_default());
    let _ = child.start_kill();
    let out = child.wait_with_output().await.expect("output");
    outputs.push(String::from_utf8_lossy(&out.stdout).into_owned());
    outputs.push(String::from_utf8_lossy(&out.stderr).into_owned());
    assert!(outputs[outputs.len() - 2].contains("Telnyx call failed"), "debug logs were captured");
    for text in outputs {
        assert!(!text.contains(KEY), "the API key leaked into: {text}");
    }
}

#[tokio::test]
async fn sigterm_turns_readiness_off_first_finishes_in_flight_work_and_exits_0() {
    let fake = Fake::start().await;
    fake.slow("dial", Duration::from_millis(1500));
    let port = testing::free_port();
    let mut cmd = worker_cmd(&fake.base_url(), port);
    cmd.env("SHUTDOWN_DELAY_MS", "700").env("TELNYX_TIMEOUT_MS", "5000");
    let mut child = cmd.spawn().expect("start worker");
    wait_ready(port).await;
    let url = format!("http://127.0.0.1:{port}");
    let in_flight = tokio::spawn({
        let url = url.clone();
        async move {
            let body = serde_json::json!({ "to": "+15551234567", "from": "+15557654321" });
            testing::http()
                .post(format!("{url}/v1/calls"))
                .json(&body)
                .send()
                .await
                .map(|r| r.status().as_u16())
        }
    });
    // The readiness service's heartbeat stream: a hello with the period, then beats.
    let mut heartbeat =
        testing::http().get(format!("{url}/v1/heartbeat")).send().await.expect("heartbeat stream");
    assert_eq!(heartbeat.status().as_u16(), 200);
    let mut seen = String::new();
    while seen.matches("data: beat").count() < 3 {
        let chunk = tokio::time::timeout(Duration::from_secs(2), heartbeat.chunk()).await;
        seen.push_str(&String::from_utf8_lossy(
            &chunk.expect("a beat within 2 s").expect("read").expect("open"),
        ));
    }
    assert!(seen.starts_with("event: hello\ndata: {\"periodMs\":100}\n\n"), "{seen}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let pid = child.id().expect("pid").to_string();
    let sent = Instant::now();
    assert!(std::process::Command::new("kill").args(["-TERM", &pid]).status().expect("kill").success());
    // ... says `draining` at once on SIGTERM, while in-flight work goes on: the worker is down
    // for new calls. The stream ends once the drain is over.
    let draining = tokio::time::timeout(Duration::from_millis(600), async {
        let mut seen = String::new();
        while let Ok(Some(chunk)) = heartbeat.chunk().await {
            seen.push_str(&String::from_utf8_lossy(&chunk));
            if seen.contains("event: draining\ndata: {\"activeCalls\":") {
                return;
            }
        }
    });
    assert!(draining.await.is_ok(), "the heartbeat says draining on SIGTERM");

    // Readiness turns false at once, while the server still answers.
    let (status, body) = testing::wait_until(Duration::from_secs(2), "readiness false", || async {
        testing::get(&format!("{url}/readyz")).await.filter(|(s, _)| *s == 503)
    })
    .await;
    // Draining, with its live calls counted for the operator's status (`drainingCalls`).
    let body: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(
        (body["error"]["code"].as_str(), body["activeCalls"].as_u64()),
        (Some("draining"), Some(0)),
        "{body}"
    );
    assert!(sent.elapsed() < Duration::from_millis(700), "before new connections stop");

    assert_eq!(in_flight.await.expect("join").ok(), Some(201), "the in-flight dial finished");
    let ended = tokio::time::timeout(Duration::from_secs(3), async {
        while let Ok(Some(_)) = heartbeat.chunk().await {}
    });
    assert!(ended.await.is_ok(), "the heartbeat stream ends once drained");

    let status_code =
        tokio::time::timeout(Duration::from_secs(10), child.wait()).await.expect("exits").expect("wait");
    assert_eq!(status_code.code(), Some(0));
    let _ = status;
}
