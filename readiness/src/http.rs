//! HTTP API of the readiness service: JSON status answers with ETags, an SSE stream of changes,
//! the dashboard page, health and metrics. Bad paths, methods and queries get JSON 4xx errors.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{MatchedPath, Path, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use futures::{stream, Stream, StreamExt};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use serde::Serialize;
use tokio::sync::broadcast::error::RecvError;
use tower_http::cors::{AllowOrigin, CorsLayer};

use super::{now_ms, AppState, Change};
use crate::names::dns_subdomain;

const DASHBOARD: &str = include_str!("dashboard.html");

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    route: String,
    status: u16,
}

pub struct Metrics {
    requests: Family<RequestLabels, Counter>,
    stale: Gauge,
    services: Gauge,
    registry: Registry,
}

impl Default for Metrics {
    fn default() -> Self {
        let (requests, stale, services) = (Family::default(), Gauge::default(), Gauge::default());
        let mut registry = Registry::default();
        let r = registry.sub_registry_with_prefix("dialtone_readiness");
        r.register("http_requests", "Requests served, by route and status", requests.clone());
        r.register("stale", "1 while the watch can't be trusted (every answer is unknown)", stale.clone());
        r.register("services", "TelephonyServices visible", services.clone());
        Metrics { requests, stale, services, registry }
    }
}

impl Metrics {
    pub(super) fn registry_mut(&mut self) -> &mut Registry {
        &mut self.registry
    }
}

pub fn router(state: Arc<AppState>) -> Router {
    let mut app = Router::new()
        .route("/", get(dashboard))
        .route("/v1/status", get(list))
        .route("/v1/status/{namespace}/{name}", get(one))
        .route("/v1/watch", get(watch))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .fallback(|| async {
            error(StatusCode::NOT_FOUND, "no such route; see GET /v1/status/{namespace}/{name}")
        })
        .method_not_allowed_fallback(|| async { error(StatusCode::METHOD_NOT_ALLOWED, "only GET is served") })
        .layer(middleware::from_fn(no_query_strings))
        .layer(middleware::from_fn_with_state(state.clone(), count));
    if !state.cors_origins.is_empty() {
        let origins: Vec<HeaderValue> = state.cors_origins.iter().filter_map(|o| o.parse().ok()).collect();
        app = app.layer(
            CorsLayer::new()
                .allow_origin(AllowOrigin::list(origins))
                .allow_methods([Method::GET])
                .allow_headers([header::IF_NONE_MATCH])
                .expose_headers([header::ETAG, header::RETRY_AFTER]),
        );
    }
    app.with_state(state)
}

fn error(status: StatusCode, message: &str) -> Response {
    (status, axum::Json(serde_json::json!({ "error": { "code": status.as_u16(), "message": message } })))
        .into_response()
}

/// JSON with `Cache-Control: no-cache` and an ETag, so polling clients get cheap 304s.
fn cached_json<T: Serialize>(status: StatusCode, body: &T, headers: &HeaderMap) -> Response {
    match serde_json::to_vec(body) {
        Ok(bytes) => {
            let etag = etag_of(&bytes);
            respond(status, &etag, bytes.into(), headers, None)
        }
        Err(_) => error(StatusCode::INTERNAL_SERVER_ERROR, "encoding failed"),
    }
}

pub(super) fn etag_of(body: &[u8]) -> HeaderValue {
    let tag = format!("\"{:016x}\"", crate::names::fnv1a(body));
    HeaderValue::from_str(&tag).unwrap_or(HeaderValue::from_static("\"0\""))
}

/// A prepared JSON body, or 304 when the client already has it; a 503 says when to come back.
fn respond(
    status: StatusCode,
    etag: &HeaderValue,
    body: axum::body::Bytes,
    headers: &HeaderMap,
    retry_after: Option<u64>,
) -> Response {
    let matches = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim().as_bytes() == etag.as_bytes() || t.trim() == "*"));
    let common =
        [(header::CACHE_CONTROL, HeaderValue::from_static("no-cache")), (header::ETAG, etag.clone())];
    if matches {
        return (StatusCode::NOT_MODIFIED, common).into_response();
    }
    let mut res =
        (status, common, [(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))], body)
            .into_response();
    if let Some(secs) = retry_after.filter(|_| status == StatusCode::SERVICE_UNAVAILABLE) {
        res.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
    res
}

async fn one(
    State(st): State<Arc<AppState>>,
    Path((ns, name)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    if !dns_subdomain(&ns) || !dns_subdomain(&name) {
        return error(
            StatusCode::BAD_REQUEST,
            "namespace and name must be Kubernetes names (lowercase, digits, '-', '.')",
        );
    }
    if !st.in_scope(&ns) {
        return error(
            StatusCode::NOT_FOUND,
            &format!("namespace {ns} is not watched by this readiness service"),
        );
    }
    match st.answer(&ns, &name) {
        Some(a) => respond(a.status, &a.etag, a.body.clone(), &headers, a.retry_after),
        None if st.freshness.is_stale(now_ms()) => {
            // We can't even say whether it exists: unknown, not "not found".
            let retry = super::view::DEFAULT_RETRY_AFTER_SECS;
            let body = serde_json::json!({
                "namespace": ns, "name": name, "status": "unknown", "healthy": false,
                "timestamp": st.freshness.confirmed_ms(), "retryAfter": retry,
                "message": super::view::STALE_MESSAGE,
            });
            match serde_json::to_vec(&body) {
                Ok(bytes) => respond(
                    StatusCode::SERVICE_UNAVAILABLE,
                    &etag_of(&bytes),
                    bytes.into(),
                    &headers,
                    Some(retry),
                ),
                Err(_) => error(StatusCode::INTERNAL_SERVER_ERROR, "encoding failed"),
            }
        }
        None => error(StatusCode::NOT_FOUND, &format!("no TelephonyService {ns}/{name}")),
    }
}

async fn list(State(st): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    let all = st.all();
    cached_json(StatusCode::OK, &serde_json::json!({ "items": all }), &headers)
}

/// The current state of every service, then one event per change; heartbeats every 15 s.
async fn watch(State(st): State<Arc<AppState>>) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let rx = st.changes.subscribe();
    let snapshot: Vec<Event> =
        st.all().iter().filter_map(|v| Event::default().event("status").json_data(v).ok()).collect();
    let updates = stream::unfold(rx, |mut rx| async move {
        let event = match rx.recv().await {
            Ok(Change::Status(v)) => Event::default().event("status").json_data(&*v).ok(),
            Ok(Change::Deleted { namespace, name }) => Event::default()
                .event("deleted")
                .json_data(serde_json::json!({ "namespace": namespace, "name": name }))
                .ok(),
            // Too slow to keep up: tell the client to fetch /v1/status again.
            Err(RecvError::Lagged(_)) => Some(Event::default().event("resync").data("{}")),
            Err(RecvError::Closed) => return None,
        };
        Some((event, rx))
    })
    .filter_map(|e| async move { e });
    let events = stream::iter(snapshot).chain(updates).map(Ok);
    Sse::new(events).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)).text("heartbeat"))
}

async fn readyz(State(st): State<Arc<AppState>>) -> Response {
    if st.freshness.is_stale(now_ms()) {
        error(
            StatusCode::SERVICE_UNAVAILABLE,
            "the watch of TelephonyServices is not confirmed; answers are unknown",
        )
    } else {
        (StatusCode::OK, "ok\n").into_response()
    }
}

async fn metrics(State(st): State<Arc<AppState>>) -> Response {
    st.metrics.stale.set(i64::from(st.freshness.is_stale(now_ms())));
    st.metrics
        .services
        .set(i64::try_from(st.scopes.iter().map(|(_, s)| s.state().len()).sum::<usize>()).unwrap_or(0));
    let mut body = String::new();
    if prometheus_client::encoding::text::encode(&mut body, &st.metrics.registry).is_err() {
        return error(StatusCode::INTERNAL_SERVER_ERROR, "metrics encoding failed");
    }
    ([(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], body)
        .into_response()
}

async fn dashboard() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'self'; style-src 'unsafe-inline'; script-src 'unsafe-inline'",
            ),
        ],
        DASHBOARD,
    )
        .into_response()
}

async fn no_query_strings(req: Request, next: Next) -> Response {
    if req.uri().query().is_some_and(|q| !q.is_empty()) {
        return error(StatusCode::BAD_REQUEST, "query parameters are not accepted");
    }
    next.run(req).await
}

async fn count(State(st): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    let route = req.extensions().get::<MatchedPath>().map_or("unmatched", |p| p.as_str()).to_string();
    let res = next.run(req).await;
    st.metrics.requests.get_or_create(&RequestLabels { route, status: res.status().as_u16() }).inc();
    res
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::{Phase, TelephonyService, TelephonyServiceStatus};
    use crate::Freshness;
    use axum::body::Body;
    use kube::runtime::{reflector, watcher};
    use tower::ServiceExt;

    fn service(phase: Phase, ready: i32) -> TelephonyService {
        let mut t = dialtone_api::fixtures::sample();
        t.status = Some(TelephonyServiceStatus {
            phase,
            observed_generation: Some(1),
            ready_replicas: ready,
            replicas: 1,
            ..Default::default()
        });
        t
    }

    fn app(objects: Vec<TelephonyService>, fresh: bool) -> Router {
        let (store, mut writer) = reflector::store();
        writer.apply_watcher_event(&watcher::Event::Init);
        for o in objects {
            writer.apply_watcher_event(&watcher::Event::InitApply(o));
        }
        writer.apply_watcher_event(&watcher::Event::InitDone);
        let freshness = Freshness::new(Duration::from_secs(10));
        if fresh {
            freshness.set_synced();
            freshness.watch_event(true, now_ms());
        }
        router(Arc::new(AppState {
            answers: Default::default(),
            scopes: vec![(None, store)],
            freshness,
            changes: tokio::sync::broadcast::channel(16).0,
            metrics: Metrics::default(),
            cors_origins: vec!["https://app.example.com".into()],
            heartbeats: None,
            primaries: Default::default(),
        }))
    }

    async fn call(app: &Router, method: &str, uri: &str, headers: &[(&str, &str)]) -> Response {
        let mut req = Request::builder().method(method).uri(uri);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        app.clone().oneshot(req.body(Body::empty()).unwrap()).await.unwrap()
    }

    async fn json(res: Response) -> serde_json::Value {
        let bytes = axum::body::to_bytes(res.into_body(), 1 << 20).await.unwrap();
        serde_json::from_slice(&bytes).unwrap()
    }

    #[tokio::test]
    async fn ready_is_200_and_an_unchanged_answer_is_a_304() {
        let app = app(vec![service(Phase::Ready, 1)], true);
        let res = call(&app, "GET", "/v1/status/shop/calls", &[]).await;
        assert_eq!(res.status(), StatusCode::OK);
        assert_eq!(res.headers()[header::CACHE_CONTROL], "no-cache");
        let etag = res.headers()[header::ETAG].to_str().unwrap().to_string();
        assert_eq!(json(res).await["status"], "ready");
        let again = call(&app, "GET", "/v1/status/shop/calls", &[("if-none-match", &etag)]).await;
        assert_eq!(again.status(), StatusCode::NOT_MODIFIED);
        assert_eq!(again.headers()[header::ETAG].to_str().unwrap(), etag);
        let other = call(&app, "GET", "/v1/status/shop/calls", &[("if-none-match", "\"0000\"")]).await;
        assert_eq!(other.status(), StatusCode::OK);
    }

    #[tokio::test]
    async fn failed_and_stale_answers_are_503() {
        let failed = app(vec![service(Phase::Failed, 0)], true);
        let res = call(&failed, "GET", "/v1/status/shop/calls", &[]).await;
        assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(res.headers()[header::RETRY_AFTER], "5", "no budget reset or backoff known: the default");
        let body = json(res).await;
        assert_eq!(
            (&body["status"], &body["retryAfter"]),
            (&serde_json::json!("failed"), &serde_json::json!(5))
        );
        let stale = app(vec![service(Phase::Ready, 1)], false);
        let res = call(&stale, "GET", "/v1/status/shop/calls", &[]).await;
        assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(json(res).await["status"], "unknown");
        assert_eq!(call(&stale, "GET", "/readyz", &[]).await.status(), StatusCode::SERVICE_UNAVAILABLE);
        let res = call(&stale, "GET", "/v1/status/shop/missing", &[]).await;
        assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE, "can't tell whether it exists");
        assert_eq!(res.headers()[header::RETRY_AFTER], "5");
    }

    #[tokio::test]
    async fn bad_requests_get_json_errors() {
        let app = app(vec![service(Phase::Ready, 1)], true);
        for (method, uri, want) in [
            ("GET", "/v1/status/shop/missing", StatusCode::NOT_FOUND),
            ("GET", "/v1/status/Shop/calls", StatusCode::BAD_REQUEST),
            ("GET", "/v1/status/shop/calls?verbose=1", StatusCode::BAD_REQUEST),
            ("POST", "/v1/status/shop/calls", StatusCode::METHOD_NOT_ALLOWED),
            ("GET", "/v2/anything", StatusCode::NOT_FOUND),
        ] {
            let res = call(&app, method, uri, &[]).await;
            assert_eq!(res.status(), want, "{method} {uri}");
            assert!(json(res).await["error"]["message"].is_string(), "{method} {uri}");
        }
    }

    #[tokio::test]
    async fn cors_allows_only_listed_origins() {
        let app = app(vec![service(Phase::Ready, 1)], true);
        let ok = call(&app, "GET", "/v1/status/shop/calls", &[("origin", "https://app.example.com")]).await;
        assert_eq!(ok.headers()[header::ACCESS_CONTROL_ALLOW_ORIGIN], "https://app.example.com");
        let other = call(&app, "GET", "/v1/status/shop/calls", &[("origin", "https://evil.example")]).await;
        assert!(other.headers().get(header::ACCESS_CONTROL_ALLOW_ORIGIN).is_none());
    }

    #[tokio::test]
    async fn the_list_and_the_dashboard() {
        let app = app(vec![service(Phase::Ready, 1)], true);
        let list = json(call(&app, "GET", "/v1/status", &[]).await).await;
        assert_eq!(list["items"][0]["name"], "calls");
        let page = call(&app, "GET", "/", &[]).await;
        assert!(page.headers()[header::CONTENT_TYPE].to_str().unwrap().starts_with("text/html"));
        let html = axum::body::to_bytes(page.into_body(), 1 << 20).await.unwrap();
        assert!(String::from_utf8_lossy(&html).contains("EventSource(\"/v1/watch\")"));
    }

    #[test]
    fn kubernetes_names() {
        assert!(dns_subdomain("calls") && dns_subdomain("shop-prod") && dns_subdomain("a.b"));
        assert!(
            !dns_subdomain("")
                && !dns_subdomain("Calls")
                && !dns_subdomain("-x")
                && !dns_subdomain("a_b")
                && !dns_subdomain(&"a".repeat(254))
        );
    }
}
