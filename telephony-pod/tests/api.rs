//! The worker's HTTP API against an in-process fake Telnyx: the happy paths and every failure mode.

mod support;

use std::time::Duration;

use serde_json::json;
use support::*;

fn token_of(v: &serde_json::Value) -> &str {
    v["token"].as_str().unwrap_or_default()
}

async fn worker(fake: &Fake, extra: &[(&str, &str)]) -> Worker {
    Worker::start(config(&fake.base_url(), extra)).await
}

#[tokio::test]
async fn a_credential_and_token_are_issued_with_tag_ttl_and_auth() {
    let fake = Fake::start().await;
    let w = worker(&fake, &[("CREDENTIAL_TTL_SECONDS", "3600")]).await;
    let (status, _, body) = w.post("/v1/credentials", json!({ "username": "agent-42" })).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(token_of(&body).split('.').count(), 3, "a JWT");
    assert!(body["credentialId"].as_str().is_some_and(|s| s.starts_with("cred-")));
    assert!(body["sipUsername"].as_str().is_some_and(|s| !s.is_empty()));
    assert!(body["expiresAt"].as_str().is_some());

    let created = fake.seen("POST", "/v2/telephony_credentials");
    let create = created.iter().find(|r| r.path == "/v2/telephony_credentials").expect("create request");
    let sent: serde_json::Value = serde_json::from_str(&create.body).expect("json");
    assert_eq!(sent["connection_id"], "conn-test");
    assert_eq!(sent["name"], "agent-42");
    assert_eq!(sent["tag"], "dialtone:shop/calls");
    let expires: jiff::Timestamp =
        sent["expires_at"].as_str().expect("expires_at").parse().expect("RFC 3339");
    let ttl = expires.duration_since(jiff::Timestamp::now()).as_secs();
    assert!((3500..=3600).contains(&ttl), "ttl {ttl}");
    assert_eq!(create.auth.as_deref(), Some(format!("Bearer {KEY}").as_str()));
}

#[tokio::test]
async fn the_same_username_reuses_its_credential() {
    let fake = Fake::start().await;
    let w = worker(&fake, &[]).await;
    let (_, _, a) = w.post("/v1/credentials", json!({ "username": "agent-1" })).await;
    let (_, _, b) = w.post("/v1/credentials", json!({ "username": "agent-1" })).await;
    assert_eq!(a["credentialId"], b["credentialId"]);
    assert_eq!(fake.credentials().len(), 1);
    assert_eq!(fake.seen("POST", "/v2/telephony_credentials/").len(), 2, "two tokens minted");
}

#[tokio::test]
async fn concurrent_requests_for_one_username_create_one_credential() {
    let fake = Fake::start().await;
    fake.slow("create", Duration::from_millis(200));
    let w = worker(&fake, &[]).await;
    let calls = (0..10).map(|_| w.post("/v1/credentials", json!({ "username": "agent-7" })));
    let results = futures::future::join_all(calls).await;
    assert!(results.iter().all(|(s, _, _)| *s == 201));
    assert_eq!(fake.credentials().len(), 1);
}

#[tokio::test]
async fn an_existing_credential_is_adopted_after_a_restart() {
    let fake = Fake::start().await;
    let id = fake.add_credential("agent-9", "dialtone:shop/calls", "2099-01-01T00:00:00", false);
    let w = worker(&fake, &[]).await;
    let (status, _, body) = w.post("/v1/credentials", json!({ "username": "agent-9" })).await;
    assert_eq!(status, 201);
    assert_eq!(body["credentialId"], id.as_str());
    assert_eq!(fake.credentials().len(), 1, "nothing new created");
}

#[tokio::test]
async fn beyond_max_credentials_the_least_recently_used_is_deleted() {
    let fake = Fake::start().await;
    let w = worker(&fake, &[("MAX_CREDENTIALS", "2")]).await;
    for user in ["u1", "u2", "u1", "u3"] {
        assert_eq!(w.post("/v1/credentials", json!({ "username": user })).await.0, 201);
    }
    let names: Vec<String> = fake.credentials().into_iter().map(|c| c.name).collect();
    assert_eq!(names.len(), 2, "{names:?}");
    assert!(
        names.contains(&"u1".to_string()) && names.contains(&"u3".to_string()),
        "u2 was least recently used"
    );
}

#[tokio::test]
async fn rate_limits_are_waited_out_briefly_or_passed_on_with_retry_after() {
    let fake = Fake::start().await;
    let limited = r#"{"errors":[{"code":"10011","title":"Too many requests"}]}"#;
    fake.script("token", Canned::new(429, limited).header("x-ratelimit-reset", "1"));
    let w = worker(&fake, &[]).await;
    let (status, _, body) = w.post("/v1/credentials", json!({ "username": "a" })).await;
    assert_eq!(status, 201, "a short limit is waited out: {body}");
    assert_eq!(fake.seen("POST", "/v2/telephony_credentials/").len(), 2);

    fake.script(
        "dial",
        Canned::new(429, r#"{"errors":[{"code":"90103","title":"Dial rate"}]}"#)
            .header("x-ratelimit-reset", "30"),
    );
    let (status, headers, body) =
        w.post("/v1/calls", json!({ "to": "+15551234567", "from": "+15557654321" })).await;
    assert_eq!(status, 429, "{body}");
    assert_eq!(headers.get("retry-after").and_then(|v| v.to_str().ok()), Some("30"));
    assert_eq!(body["error"]["upstreamCode"], "90103");
}

#[tokio::test]
async fn a_dial_is_retried_after_5xx_with_the_same_command_id() {
    let fake = Fake::start().await;
    fake.script("dial", Canned::new(503, "upstream busy"));
    let w = worker(&fake, &[]).await;
    let (status, _, body) = w
        .post("/v1/calls", json!({ "to": "+15551234567", "from": "sip:agent@example.com", "timeoutSecs": 30, "clientState": "order-1" }))
        .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["callControlId"], "v3:call-1");
    let dials = fake.seen("POST", "/v2/calls");
    assert_eq!(dials.len(), 2);
    let ids: Vec<serde_json::Value> = dials
        .iter()
        .map(|d| serde_json::from_str::<serde_json::Value>(&d.body).expect("json")["command_id"].clone())
        .collect();
    assert_eq!(ids[0], ids[1], "a retried dial can't place two calls");
    let sent: serde_json::Value = serde_json::from_str(&dials[0].body).expect("json");
    assert_eq!(sent["client_state"], "b3JkZXItMQ==", "base64, as Telnyx requires");
    assert_eq!(
        (sent["connection_id"].as_str(), sent["timeout_secs"].as_u64()),
        (Some("conn-test"), Some(30))
    );
}

#[tokio::test]
async fn creating_a_credential_is_not_retried_and_5xx_is_a_502() {
    let fake = Fake::start().await;
    fake.script("create", Canned::new(500, r#"{"errors":[{"code":"10007","title":"Unexpected error"}]}"#));
    let w = worker(&fake, &[]).await;
    let (status, headers, body) = w.post("/v1/credentials", json!({ "username": "a" })).await;
    assert_eq!(status, 502, "{body}");
    assert!(headers.contains_key("retry-after"));
    assert_eq!(fake.seen("POST", "/v2/telephony_credentials").len(), 1, "no second create");
}

#[tokio::test]
async fn timeouts_and_an_unreachable_telnyx_are_503() {
    let fake = Fake::start().await;
    fake.slow("dial", Duration::from_secs(3));
    let w = worker(&fake, &[("TELNYX_MAX_ATTEMPTS", "1")]).await;
    let (status, headers, body) =
        w.post("/v1/calls", json!({ "to": "+15551234567", "from": "+15557654321" })).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(headers.get("retry-after").and_then(|v| v.to_str().ok()), Some("5"));

    let nobody = Worker::start(config("http://127.0.0.1:9/v2", &[("TELNYX_MAX_ATTEMPTS", "1")])).await;
    let (status, _, body) =
        nobody.post("/v1/calls", json!({ "to": "+15551234567", "from": "+15557654321" })).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"]["code"], "upstream_unavailable");
}

#[tokio::test]
async fn malformed_upstream_bodies_are_502_not_crashes() {
    let fake = Fake::start().await;
    fake.script("dial", Canned::new(200, "<html>not json</html>"));
    fake.script("token", Canned::new(201, "not-a-jwt"));
    let w = worker(&fake, &[]).await;
    let (status, _, _) = w.post("/v1/calls", json!({ "to": "+15551234567", "from": "+15557654321" })).await;
    assert_eq!(status, 502);
    let (status, _, body) = w.post("/v1/credentials", json!({ "username": "a" })).await;
    assert_eq!(status, 502, "{body}");
    // Still alive and serving.
    assert_eq!(testing::get(&format!("{}/healthz", w.url)).await.map(|r| r.0), Some(200));
}

#[tokio::test]
async fn both_telnyx_error_shapes_become_clear_4xx() {
    let fake = Fake::start().await;
    fake.script("create", Canned::new(422, r#"{"errors":{"status":"Account Level Limit Reached"}}"#));
    fake.script(
        "dial",
        Canned::new(422, r#"{"errors":[{"code":"90015","title":"Invalid destination","detail":"The 'to' number is not dialable"}]}"#),
    );
    let w = worker(&fake, &[]).await;
    let (status, _, body) = w.post("/v1/credentials", json!({ "username": "a" })).await;
    assert_eq!(status, 422);
    assert!(
        body["error"]["message"].as_str().unwrap_or_default().contains("Account Level Limit Reached"),
        "{body}"
    );
    let (status, _, body) =
        w.post("/v1/calls", json!({ "to": "+15551234567", "from": "+15557654321" })).await;
    assert_eq!(status, 422);
    assert_eq!(body["error"]["upstreamCode"], "90015");
    assert!(body["error"]["message"].as_str().unwrap_or_default().contains("not dialable"));
}

#[tokio::test]
async fn hanging_up_an_ended_call_is_a_409() {
    let fake = Fake::start().await;
    fake.script(
        "hangup",
        Canned::new(422, r#"{"errors":[{"code":"90018","title":"Call has already ended"}]}"#),
    );
    let w = worker(&fake, &[]).await;
    let (status, _, body) = w.post("/v1/calls/v3:call-1/hangup", json!({})).await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["error"]["code"], "call_already_ended");
    let (status, _, body) = w.post("/v1/calls/v3:call-1/hangup", json!({})).await;
    assert_eq!((status, body["result"].as_str()), (200, Some("ok")));
    let sent: serde_json::Value =
        serde_json::from_str(&fake.seen("POST", "/v2/calls/v3").last().expect("hangup").body).expect("json");
    assert!(sent["command_id"].is_string());
}

#[tokio::test]
async fn the_sweep_pages_through_and_deletes_expired_and_duplicate_credentials() {
    let fake = Fake::start().await;
    let tag = "dialtone:shop/calls";
    for i in 0..300 {
        fake.add_credential(&format!("old-{i}"), tag, "2020-01-01T00:00:00Z", true);
    }
    for i in 0..300 {
        fake.add_credential(&format!("live-{i}"), tag, "2099-01-01T00:00:00Z", false);
    }
    fake.add_credential("live-0", tag, "2098-01-01T00:00:00Z", false); // a duplicate, shorter-lived
    fake.add_credential("other", "dialtone:other/svc", "2020-01-01T00:00:00Z", true); // not ours
    let metrics = telephony_pod::metrics::Metrics::default();
    let cfg = config(&fake.base_url(), &[]);
    let telnyx =
        std::sync::Arc::new(telephony_pod::telnyx::Telnyx::new(&cfg, metrics.clone()).expect("client"));
    let creds = telephony_pod::credentials::Credentials::new(
        telnyx,
        cfg.connection_id.clone(),
        cfg.tag(),
        cfg.credential_ttl,
        5,
        metrics,
    );
    let report = creds.sweep().await.expect("sweep");
    assert_eq!(report.deleted, 301);
    let left = fake.credentials();
    assert_eq!(left.len(), 301, "300 live + the other service's");
    assert!(left.iter().any(|c| c.tag == "dialtone:other/svc"), "other tags are never touched");
    assert!(left.iter().filter(|c| c.name == "live-0").all(|c| c.expires_at.starts_with("2099")));
    let pages: Vec<String> = fake
        .seen("GET", "/v2/telephony_credentials")
        .iter()
        .filter_map(|r| r.query.get("page[number]").cloned())
        .collect();
    assert_eq!(pages, vec!["1", "2", "3"], "all pages read before deleting");
}

#[tokio::test]
async fn readiness_follows_the_telnyx_check() {
    let fake = Fake::start().await;
    let w = worker(&fake, &[]).await;
    let ready = || async { testing::get(&format!("{}/readyz", w.url)).await };
    testing::wait_until(Duration::from_secs(5), "ready", || async {
        (ready().await?.0 == 200).then_some(())
    })
    .await;
    let bad = Worker::start(config(&fake.base_url(), &[("TELNYX_API_KEY", "wrong-key")])).await;
    let (status, body) = testing::wait_until(Duration::from_secs(5), "a verdict", || async {
        testing::get(&format!("{}/readyz", bad.url))
            .await
            .filter(|(s, b)| *s != 503 || !b.contains("waiting"))
    })
    .await;
    assert_eq!(status, 503);
    assert!(body.contains("Authentication failed"), "{body}");
    assert!(!body.contains("wrong-key"));
}

#[tokio::test]
async fn bad_input_gets_a_clear_4xx_json_error() {
    let fake = Fake::start().await;
    let w = worker(&fake, &[]).await;
    let client = testing::http();
    let send = |path: &str, ct: &str, body: String| {
        client.post(format!("{}{path}", w.url)).header("content-type", ct.to_string()).body(body).send()
    };
    let cases: Vec<(&str, &str, String, u16, &str)> = vec![
        ("/v1/calls", "application/json", "{not json".into(), 400, "malformed JSON"),
        (
            "/v1/calls",
            "application/json",
            r#"{"to":"+15551234567","from":"+15557654321","extra":1}"#.into(),
            400,
            "extra",
        ),
        ("/v1/calls", "application/json", r#"{"to":5,"from":"+15557654321"}"#.into(), 400, "to"),
        ("/v1/calls", "application/json", r#"{"from":"+15557654321"}"#.into(), 400, "to"),
        ("/v1/calls", "application/json", r#"{"to":"12345","from":"+15557654321"}"#.into(), 400, "to:"),
        ("/v1/credentials", "application/json", r#"{"username":"no spaces"}"#.into(), 400, "username"),
        ("/v1/credentials", "text/plain", r#"{"username":"a"}"#.into(), 415, "Content-Type"),
        (
            "/v1/credentials",
            "application/json",
            format!(r#"{{"username":"{}"}}"#, "a".repeat(70_000)),
            413,
            "larger",
        ),
        ("/v1/calls/bad%20id/hangup", "application/json", "{}".into(), 400, "callControlId"),
        ("/v1/nope", "application/json", "{}".into(), 404, "no such route"),
        ("/v1/calls/v3:c/recording/start", "application/json", "{nope".into(), 400, "key must be a string"),
        (
            "/v1/calls/v3:c/recording/start",
            "application/json",
            r#"{"channels":"quad"}"#.into(),
            400,
            "channels",
        ),
        ("/v1/calls/bad%20id/recording/stop", "application/json", "".into(), 400, "callControlId"),
    ];
    for (path, ct, body, want, mention) in cases {
        let res = send(path, ct, body).await.expect("request");
        let status = res.status().as_u16();
        let v: serde_json::Value = res.json().await.expect("a JSON error body");
        let msg = v["error"]["message"].as_str().unwrap_or_default().to_string();
        assert_eq!(status, want, "{path}: {msg}");
        assert!(msg.contains(mention), "{path}: {msg:?} should mention {mention:?}");
    }
    let res = client.delete(format!("{}/v1/calls", w.url)).send().await.expect("request");
    assert_eq!(res.status().as_u16(), 405);
    let res = client.get(format!("{}/v1/calls/bad%20id", w.url)).send().await.expect("request");
    assert_eq!(res.status().as_u16(), 400);
    assert!(fake.seen("POST", "/v2").is_empty(), "nothing invalid reached Telnyx");
}

/// `spec.auth`: with a token, the app's routes answer 401 (with `WWW-Authenticate`) to a request
/// without it or with another, and work with it; the probes, metrics, heartbeat and Telnyx's
/// webhooks stay open, and nothing reaches Telnyx for a refused request.
#[tokio::test]
async fn with_a_token_only_the_app_that_holds_it_can_place_calls() {
    let fake = Fake::start().await;
    let token = "app-token-5f0c1a9e2b7d4c63";
    let w = worker(&fake, &[("DIALTONE_API_TOKEN", token)]).await;
    let dial = json!({ "to": "+15551234567", "from": "+15557654321" });
    let send = |auth: Option<&str>, method: reqwest::Method, path: &str| {
        let mut req = testing::http().request(method, format!("{}{path}", w.url)).json(&dial);
        if let Some(a) = auth {
            req = req.header("authorization", a);
        }
        req.send()
    };
    for auth in [None, Some("Bearer wrong-token-0000000000"), Some(&*format!("Basic {token}"))] {
        for (method, path) in [
            (reqwest::Method::POST, "/v1/calls"),
            (reqwest::Method::POST, "/v1/credentials"),
            (reqwest::Method::GET, "/v1/calls"),
            (reqwest::Method::GET, "/v1/events"),
            (reqwest::Method::POST, "/v1/calls/v3:abc/hangup"),
        ] {
            let res = send(auth, method, path).await.expect("request");
            assert_eq!(res.status().as_u16(), 401, "{auth:?} {path}");
            assert_eq!(res.headers()["www-authenticate"], "Bearer realm=\"dialtone-worker\"");
            let body: serde_json::Value = res.json().await.expect("a JSON error");
            assert_eq!(body["error"]["code"], "unauthorized");
            assert!(!body.to_string().contains(token));
        }
    }
    assert!(fake.seen("POST", "/v2/calls").is_empty(), "a refused request never reaches Telnyx");
    let ok = send(Some(&format!("Bearer {token}")), reqwest::Method::POST, "/v1/calls").await.expect("dial");
    assert_eq!(ok.status().as_u16(), 201);
    assert_eq!(fake.seen("POST", "/v2/calls").len(), 1, "the admitted dial reached Telnyx");
    for open in ["/healthz", "/metrics", "/no/such/route"] {
        let (code, _, _) = w.get(open).await;
        assert_ne!(code, 401, "{open} stays open");
    }
    let (code, _, _) = w.webhook(&[], "{}").await;
    assert_eq!(code, 404, "webhooks answer for themselves (off here), never 401 for the token");
}

#[tokio::test]
async fn a_weak_token_is_a_configuration_error_that_never_echoes_it() {
    let fake = Fake::start().await;
    let e = telephony_pod::config::Config::from_lookup(|k| match k {
        "TELNYX_API_KEY" => Some("KEY".into()),
        "TELNYX_CONNECTION_ID" => Some("c".into()),
        "TELNYX_BASE_URL" => Some(fake.base_url()),
        "DIALTONE_API_TOKEN" => Some("tiny-SECRETISH".into()),
        _ => None,
    })
    .unwrap_err();
    assert_eq!(e.var, "DIALTONE_API_TOKEN");
    assert!(!e.to_string().contains("SECRETISH"), "{e}");
}

/// `GET /openapi.json` describes what the worker serves: every documented operation is routed (no
/// `not_found` or 405 from the fallbacks), the app's routes declare the bearer token, and the
/// shapes the handlers send are among its schemas.
#[tokio::test]
async fn the_openapi_document_matches_the_routes() {
    let fake = Fake::start().await;
    let w = worker(&fake, &[]).await;
    let (code, _, doc) = w.get("/openapi.json").await;
    assert_eq!(code, 200);
    assert_eq!(doc["openapi"].as_str().map(|v| &v[..2]), Some("3."), "{doc}");
    let paths = doc["paths"].as_object().expect("paths");
    let mut operations = vec![];
    for (path, item) in paths {
        for method in item.as_object().expect("path item").keys().filter(|m| *m != "parameters") {
            operations.push((method.to_uppercase(), path.replace("{call_control_id}", "v3:doc-check")));
            let op = &item[method];
            let app_route = path.starts_with("/v1/c");
            assert_eq!(op["security"].is_array(), app_route || path == "/v1/events", "{method} {path}");
        }
    }
    assert_eq!(operations.len(), 13, "{operations:?}");
    for (method, path) in &operations {
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let res = testing::http()
            .request(method.clone(), format!("{}{path}", w.url))
            .header("content-type", "application/json")
            .body("{}")
            .timeout(Duration::from_secs(2))
            .send()
            .await;
        let Ok(res) = res else { continue }; // an event stream that didn't end: routed
        let status = res.status().as_u16();
        let body: serde_json::Value = res.json().await.unwrap_or_default();
        assert_ne!(status, 405, "{method} {path}");
        assert_ne!(body["error"]["code"], "not_found", "{method} {path} is documented but not routed");
    }
    let schemas = doc["components"]["schemas"].as_object().expect("schemas");
    for name in
        ["CallRequest", "CallResponse", "CredentialRequest", "CredentialResponse", "Call", "ErrorBody"]
    {
        assert!(schemas.contains_key(name), "{name}: {:?}", schemas.keys().collect::<Vec<_>>());
    }
    assert_eq!(doc["components"]["securitySchemes"]["bearer"]["scheme"], "bearer");
}

/// Found by schemathesis: serde takes a struct from a JSON array, and JSON's `30.0` is a whole
/// number. A body is an object (else 400), and a whole number of seconds is one however written.
#[tokio::test]
async fn a_body_is_an_object_and_whole_numbers_are_whole() {
    let fake = Fake::start().await;
    let w = worker(&fake, &[]).await;
    let (code, _, body) = w.post("/v1/calls", json!(["+15551234567", "+15557654321"])).await;
    assert_eq!((code, body["error"]["message"].as_str()), (400, Some("the body must be a JSON object")));
    let (code, _, body) = w
        .post("/v1/calls", json!({ "to": "+15551234567", "from": "+15557654321", "timeoutSecs": 30.0 }))
        .await;
    assert_eq!(code, 201, "{body}");
    let (code, _, body) = w
        .post("/v1/calls", json!({ "to": "+15551234567", "from": "+15557654321", "timeoutSecs": 30.5 }))
        .await;
    assert_eq!(code, 400, "{body}");
    assert!(body["error"]["message"].as_str().is_some_and(|m| m.contains("timeoutSecs")), "{body}");
    let id = "v3:some-call";
    let (code, _, _) = w.post(&format!("/v1/calls/{id}/recording/start"), json!([null, null])).await;
    assert_eq!(code, 400);
    let (code, _, body) = w.post(&format!("/v1/calls/{id}/recording/start"), serde_json::Value::Null).await;
    assert_eq!(code, 200, "null is no body: the defaults ({body})");
    let tab = testing::http()
        .post(format!("{}/v1/calls/{id}/recording/start", w.url))
        .header("content-type", "application/json")
        .body("\t")
        .send()
        .await
        .expect("request");
    assert_eq!(tab.status().as_u16(), 400, "a lone tab is not JSON");
    let empty = testing::http()
        .post(format!("{}/v1/calls/{id}/recording/start", w.url))
        .send()
        .await
        .expect("request");
    assert_eq!(empty.status().as_u16(), 200, "no body: the defaults");
}

/// The worker's stated limits hold on its real listener: a 16 KiB request head, 100 headers
/// (431 beyond either), and a 64 KiB body (413), each answered, never a hang or a 5xx.
#[tokio::test]
async fn oversized_heads_and_bodies_are_refused_with_the_documented_status() {
    let fake = Fake::start().await;
    let w = worker(&fake, &[]).await;
    let http = testing::http();
    let big_header = "a".repeat(17 * 1024);
    let res =
        http.get(format!("{}/healthz", w.url)).header("x-big", &big_header).send().await.expect("answered");
    assert_eq!(res.status(), 431);
    let mut many = reqwest::header::HeaderMap::new();
    for i in 0..101 {
        many.insert(reqwest::header::HeaderName::try_from(format!("x-h{i}")).unwrap(), "1".parse().unwrap());
    }
    let res = http.get(format!("{}/healthz", w.url)).headers(many).send().await.expect("answered");
    assert_eq!(res.status(), 431);
    let huge =
        format!(r#"{{"to":"+15550002222","from":"+15550001111","clientState":"{}"}}"#, "a".repeat(70_000));
    let (status, body) = dial_raw(&w, huge.into_bytes()).await;
    assert_eq!(status, 413);
    assert!(body["error"]["message"].is_string(), "{body}");
    assert_eq!(w.get("/healthz").await.0, 200, "still serving");
}

/// Hand-made abuse the schema-based fuzzer doesn't send: JSON nested 30,000 deep (serde_json's
/// recursion limit, not the stack, ends it), bodies that are not UTF-8, and ids that try to
/// climb out of their path. Each gets a 4xx with a JSON error that names the problem.
#[tokio::test]
async fn deeply_nested_json_bad_utf8_and_path_traversal_get_4xx_with_a_message() {
    let fake = Fake::start().await;
    let w = worker(&fake, &[]).await;
    let nested = format!("{}{}", "[".repeat(30_000), "]".repeat(30_000)); // 60 KB: under the body limit
    let deep_object = format!(r#"{{"to":{}1{}}}"#, r#"{"a":"#.repeat(5_000), "}".repeat(5_000));
    let bad_utf8: &[u8] = b"{\"to\":\"+1555\xff\xfe\",\"from\":\"+15550001111\"}";
    for (what, body) in [
        ("nested arrays", nested.into_bytes()),
        ("a deep object", deep_object.into_bytes()),
        ("bad UTF-8", bad_utf8.to_vec()),
    ] {
        let (status, e) = dial_raw(&w, body).await;
        assert_eq!(status, 400, "{what}");
        assert!(e["error"]["message"].as_str().is_some_and(|m| !m.is_empty()), "{what}: {e}");
    }
    for path in ["/v1/calls/..%2F..%2Fetc%2Fpasswd", "/v1/calls/%2e%2e/metrics", "/v1/calls/a%00b"] {
        let (status, _, e) = w.get(path).await;
        assert!((400..500).contains(&status), "{path}: {status}");
        assert!(e["error"]["message"].is_string(), "{path}: {e}");
    }
    assert_eq!(w.get("/healthz").await.0, 200, "still serving");
}

/// `POST /v1/calls` with raw bytes as a JSON body: the status and the JSON error.
async fn dial_raw(w: &Worker, body: Vec<u8>) -> (u16, serde_json::Value) {
    let res = testing::http()
        .post(format!("{}/v1/calls", w.url))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .expect("answered");
    (res.status().as_u16(), res.json().await.expect("a JSON error"))
}
