//! A small in-process fake of the Telnyx API, scriptable per route, recording every request; and a
//! worker started against it.
#![allow(dead_code)] // each test binary uses a different subset

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, post};
use axum::Router;
use telephony_pod::config::Config;
use tokio::net::TcpListener;

pub const KEY: &str = "KEY-supersecret-0123456789";

#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub path: String,
    pub query: HashMap<String, String>,
    pub auth: Option<String>,
    pub body: String,
}

/// A canned answer: status, extra headers, body, and an optional delay.
#[derive(Debug, Clone)]
pub struct Canned {
    pub status: u16,
    pub headers: Vec<(&'static str, String)>,
    pub body: String,
    pub delay: Duration,
}

impl Canned {
    pub fn new(status: u16, body: &str) -> Canned {
        Canned { status, headers: vec![], body: body.into(), delay: Duration::ZERO }
    }
    pub fn header(mut self, k: &'static str, v: &str) -> Canned {
        self.headers.push((k, v.into()));
        self
    }
    pub fn delay(mut self, d: Duration) -> Canned {
        self.delay = d;
        self
    }
}

#[derive(Debug, Clone)]
pub struct FakeCredential {
    pub id: String,
    pub name: String,
    pub tag: String,
    pub expires_at: String,
    pub expired: bool,
}

#[derive(Default)]
pub struct FakeState {
    pub seen: Vec<Seen>,
    pub credentials: Vec<FakeCredential>,
    /// Answers to give before the normal behaviour, by route name.
    pub script: HashMap<&'static str, VecDeque<Canned>>,
    /// Delay for every answer on a route.
    pub slow: HashMap<&'static str, Duration>,
    next_id: u32,
}

#[derive(Clone, Default)]
pub struct Fake {
    pub state: Arc<Mutex<FakeState>>,
    pub addr: Option<SocketAddr>,
}

impl Fake {
    pub async fn start() -> Fake {
        let mut fake = Fake::default();
        let app = Router::new()
            .route("/v2/telephony_credentials", post(create).get(list))
            .route("/v2/telephony_credentials/{id}", delete(remove))
            .route("/v2/telephony_credentials/{id}/token", post(token))
            .route("/v2/calls", post(dial))
            .route("/v2/calls/{id}/actions/hangup", post(hangup))
            .route("/v2/calls/{id}/actions/{action}", post(call_action))
            .with_state(fake.clone());
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind fake");
        fake.addr = listener.local_addr().ok();
        tokio::spawn(async move { axum::serve(listener, app).await });
        fake
    }

    pub fn base_url(&self) -> String {
        format!("http://{}/v2", self.addr.expect("started"))
    }

    pub fn script(&self, route: &'static str, answer: Canned) {
        self.state.lock().unwrap().script.entry(route).or_default().push_back(answer);
    }

    pub fn slow(&self, route: &'static str, d: Duration) {
        self.state.lock().unwrap().slow.insert(route, d);
    }

    pub fn seen(&self, method: &str, path_prefix: &str) -> Vec<Seen> {
        let s = self.state.lock().unwrap();
        s.seen.iter().filter(|r| r.method == method && r.path.starts_with(path_prefix)).cloned().collect()
    }

    pub fn add_credential(&self, name: &str, tag: &str, expires_at: &str, expired: bool) -> String {
        let mut s = self.state.lock().unwrap();
        s.next_id += 1;
        let id = format!("pre-{}", s.next_id);
        s.credentials.push(FakeCredential {
            id: id.clone(),
            name: name.into(),
            tag: tag.into(),
            expires_at: expires_at.into(),
            expired,
        });
        id
    }

    pub fn credentials(&self) -> Vec<FakeCredential> {
        self.state.lock().unwrap().credentials.clone()
    }
}

/// Records the request and returns a scripted answer if one is queued.
async fn intake(
    f: &Fake,
    route: &'static str,
    method: &str,
    path: String,
    q: HashMap<String, String>,
    h: &HeaderMap,
    body: &Bytes,
) -> Option<Response> {
    let (canned, slow) = {
        let mut s = f.state.lock().unwrap();
        s.seen.push(Seen {
            method: method.into(),
            path,
            query: q,
            auth: h.get("authorization").and_then(|v| v.to_str().ok()).map(str::to_string),
            body: String::from_utf8_lossy(body).into_owned(),
        });
        (s.script.get_mut(route).and_then(|q| q.pop_front()), s.slow.get(route).copied())
    };
    if let Some(d) = slow {
        tokio::time::sleep(d).await;
    }
    let c = canned?;
    tokio::time::sleep(c.delay).await;
    let mut res =
        (StatusCode::from_u16(c.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR), c.body).into_response();
    for (k, v) in c.headers {
        res.headers_mut().insert(k, v.parse().expect("header"));
    }
    Some(res)
}

fn unauthorized(h: &HeaderMap) -> Option<Response> {
    let ok = h.get("authorization").and_then(|v| v.to_str().ok()) == Some(&format!("Bearer {KEY}"));
    (!ok).then(|| {
        (StatusCode::UNAUTHORIZED, r#"{"errors":[{"code":"10009","title":"Authentication failed"}]}"#)
            .into_response()
    })
}

fn json(status: StatusCode, v: serde_json::Value) -> Response {
    (status, axum::Json(v)).into_response()
}

fn cred_json(c: &FakeCredential) -> serde_json::Value {
    serde_json::json!({
        "id": c.id, "name": c.name, "tag": c.tag, "expires_at": c.expires_at, "expired": c.expired,
        "record_type": "credential", "sip_username": format!("gencred{}", c.id), "sip_password": "pw",
        "resource_id": "connection:1"
    })
}

async fn create(State(f): State<Fake>, h: HeaderMap, body: Bytes) -> Response {
    if let Some(r) =
        intake(&f, "create", "POST", "/v2/telephony_credentials".into(), HashMap::new(), &h, &body).await
    {
        return r;
    }
    if let Some(r) = unauthorized(&h) {
        return r;
    }
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    let mut s = f.state.lock().unwrap();
    s.next_id += 1;
    let c = FakeCredential {
        id: format!("cred-{}", s.next_id),
        name: v["name"].as_str().unwrap_or_default().into(),
        tag: v["tag"].as_str().unwrap_or_default().into(),
        expires_at: v["expires_at"].as_str().unwrap_or_default().into(),
        expired: false,
    };
    s.credentials.push(c.clone());
    json(StatusCode::CREATED, serde_json::json!({ "data": cred_json(&c) }))
}

async fn list(State(f): State<Fake>, h: HeaderMap, Query(q): Query<HashMap<String, String>>) -> Response {
    if let Some(r) =
        intake(&f, "list", "GET", "/v2/telephony_credentials".into(), q.clone(), &h, &Bytes::new()).await
    {
        return r;
    }
    if let Some(r) = unauthorized(&h) {
        return r;
    }
    let s = f.state.lock().unwrap();
    let matches: Vec<&FakeCredential> = s
        .credentials
        .iter()
        .filter(|c| q.get("filter[tag]").is_none_or(|t| &c.tag == t))
        .filter(|c| q.get("filter[name]").is_none_or(|n| &c.name == n))
        .filter(|c| q.get("filter[status]").is_none_or(|st| st != "expired" || c.expired))
        .collect();
    let size: usize = q.get("page[size]").and_then(|v| v.parse().ok()).unwrap_or(50);
    let number: usize = q.get("page[number]").and_then(|v| v.parse().ok()).unwrap_or(1);
    let total_pages = matches.len().div_ceil(size).max(1);
    let data: Vec<serde_json::Value> =
        matches.iter().skip((number - 1) * size).take(size).map(|c| cred_json(c)).collect();
    json(
        StatusCode::OK,
        serde_json::json!({
            "data": data,
            "meta": { "page_number": number, "page_size": size, "total_pages": total_pages, "total_results": matches.len() }
        }),
    )
}

async fn remove(State(f): State<Fake>, h: HeaderMap, Path(id): Path<String>) -> Response {
    if let Some(r) = intake(
        &f,
        "delete",
        "DELETE",
        format!("/v2/telephony_credentials/{id}"),
        HashMap::new(),
        &h,
        &Bytes::new(),
    )
    .await
    {
        return r;
    }
    if let Some(r) = unauthorized(&h) {
        return r;
    }
    let mut s = f.state.lock().unwrap();
    let before = s.credentials.len();
    s.credentials.retain(|c| c.id != id);
    if s.credentials.len() == before {
        return json(
            StatusCode::NOT_FOUND,
            serde_json::json!({ "errors": [{ "code": "10005", "title": "Resource not found" }] }),
        );
    }
    json(StatusCode::OK, serde_json::json!({ "data": { "id": id } }))
}

async fn token(State(f): State<Fake>, h: HeaderMap, Path(id): Path<String>) -> Response {
    if let Some(r) = intake(
        &f,
        "token",
        "POST",
        format!("/v2/telephony_credentials/{id}/token"),
        HashMap::new(),
        &h,
        &Bytes::new(),
    )
    .await
    {
        return r;
    }
    if let Some(r) = unauthorized(&h) {
        return r;
    }
    let exists = f.state.lock().unwrap().credentials.iter().any(|c| c.id == id);
    if !exists {
        return json(
            StatusCode::NOT_FOUND,
            serde_json::json!({ "errors": [{ "code": "10005", "title": "Resource not found" }] }),
        );
    }
    (
        StatusCode::CREATED,
        [("content-type", "text/plain")],
        format!("eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ7{id}In0.c2lnbmF0dXJl"),
    )
        .into_response()
}

async fn dial(State(f): State<Fake>, h: HeaderMap, body: Bytes) -> Response {
    if let Some(r) = intake(&f, "dial", "POST", "/v2/calls".into(), HashMap::new(), &h, &body).await {
        return r;
    }
    if let Some(r) = unauthorized(&h) {
        return r;
    }
    json(
        StatusCode::OK,
        serde_json::json!({ "data": {
            "call_control_id": "v3:call-1", "call_leg_id": "leg-1", "call_session_id": "session-1",
            "is_alive": false, "record_type": "call"
        }}),
    )
}

async fn hangup(State(f): State<Fake>, h: HeaderMap, Path(id): Path<String>, body: Bytes) -> Response {
    if let Some(r) =
        intake(&f, "hangup", "POST", format!("/v2/calls/{id}/actions/hangup"), HashMap::new(), &h, &body)
            .await
    {
        return r;
    }
    if let Some(r) = unauthorized(&h) {
        return r;
    }
    json(StatusCode::OK, serde_json::json!({ "data": { "result": "ok" } }))
}

/// record_start, record_stop: `{"data": {"result": "ok"}}`, as Telnyx answers.
async fn call_action(
    State(f): State<Fake>,
    h: HeaderMap,
    Path((id, action)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    let route = if action == "record_start" { "record_start" } else { "record_stop" };
    if let Some(r) =
        intake(&f, route, "POST", format!("/v2/calls/{id}/actions/{action}"), HashMap::new(), &h, &body).await
    {
        return r;
    }
    if let Some(r) = unauthorized(&h) {
        return r;
    }
    json(StatusCode::OK, serde_json::json!({ "data": { "result": "ok" } }))
}

/// Worker configuration pointing at `base_url`, with short timeouts for tests.
pub fn config(base_url: &str, extra: &[(&str, &str)]) -> Config {
    let mut env: HashMap<String, String> = [
        ("TELNYX_API_KEY", KEY),
        ("TELNYX_CONNECTION_ID", "conn-test"),
        ("TELNYX_BASE_URL", base_url),
        ("DIALTONE_SERVICE", "shop/calls"),
        ("TELNYX_TIMEOUT_MS", "800"),
        ("HEALTH_PERIOD_SECONDS", "1"),
        ("SWEEP_PERIOD_SECONDS", "3600"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    for (k, v) in extra {
        env.insert(k.to_string(), v.to_string());
    }
    Config::from_lookup(|k| env.get(k).cloned()).expect("valid test config")
}

/// A worker serving on a random loopback port; stops when dropped.
pub struct Worker {
    pub url: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Worker {
    /// A handle for a worker started elsewhere (e.g. the binary).
    pub fn at(url: String) -> Worker {
        Worker { url, stop: None }
    }

    pub async fn start(config: Config) -> Worker {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind worker");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(telephony_pod::serve(config, listener, Duration::ZERO, async move {
            let _ = rx.await;
        }));
        Worker { url, stop: Some(tx) }
    }

    pub async fn post(&self, path: &str, body: serde_json::Value) -> (u16, HeaderMap, serde_json::Value) {
        let res =
            testing::http().post(format!("{}{path}", self.url)).json(&body).send().await.expect("request");
        answer(res).await
    }

    pub async fn get(&self, path: &str) -> (u16, HeaderMap, serde_json::Value) {
        answer(testing::http().get(format!("{}{path}", self.url)).send().await.expect("request")).await
    }

    /// Delivers a webhook with the given headers, the body sent byte for byte.
    pub async fn webhook(
        &self,
        headers: &[(&'static str, String)],
        body: &str,
    ) -> (u16, HeaderMap, serde_json::Value) {
        let mut req = testing::http()
            .post(format!("{}/v1/webhooks/telnyx", self.url))
            .header("content-type", "application/json")
            .body(body.to_string());
        for (k, v) in headers {
            req = req.header(*k, v);
        }
        answer(req.send().await.expect("request")).await
    }

    /// Stops the worker as SIGTERM would (the drain begins).
    pub fn terminate(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
    }
}

async fn answer(res: reqwest::Response) -> (u16, HeaderMap, serde_json::Value) {
    let status = res.status().as_u16();
    let headers = HeaderMap::from_iter(res.headers().iter().map(|(k, v)| (k.clone(), v.clone())));
    let text = res.text().await.unwrap_or_default();
    (status, headers, serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text)))
}

impl Drop for Worker {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
    }
}
