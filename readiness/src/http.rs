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
use crate::openapi::{ErrorBody, Refused, StatusList};
use crate::view::StatusView;

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
    let (routes, doc) = documented();
    let doc = Arc::new(crate::openapi::json(&doc));
    let mut app = routes
        .route(
            "/openapi.json",
            get(move || async move { ([(header::CONTENT_TYPE, "application/json")], doc.to_string()) }),
        )
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

/// The routes and their OpenAPI document, registered together (`utoipa-axum`), so neither can
/// have what the other lacks.
pub fn documented() -> (Router<Arc<AppState>>, utoipa::openapi::OpenApi) {
    use utoipa::OpenApi as _;
    use utoipa_axum::{router::OpenApiRouter, routes};
    OpenApiRouter::with_openapi(crate::openapi::ApiDoc::openapi())
        .routes(routes!(dashboard))
        .routes(routes!(list))
        .routes(routes!(one))
        .routes(routes!(watch))
        .routes(routes!(healthz))
        .routes(routes!(readyz))
        .routes(routes!(metrics))
        .split_for_parts()
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

/// One service's answer: 200 when the app may send calls, else 503 with `Retry-After` (and the
/// same body), or 304 when the `If-None-Match` ETag is current.
#[utoipa::path(get, path = "/v1/status/{namespace}/{name}", tag = "status",
    params(
        ("namespace" = String, Path, description = "The TelephonyService's namespace", example = "shop",
            max_length = 253, pattern = r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?(\.[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?)*$"),
        ("name" = String, Path, description = "The TelephonyService's name", example = "calls",
            max_length = 253, pattern = r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?(\.[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?)*$"),
        ("if-none-match" = Option<String>, Header, description = "An ETag from an earlier answer"),
    ),
    responses(
        (status = 200, body = StatusView, headers(("etag" = String))),
        (status = 304, description = "Unchanged since the given ETag"),
        (status = 404, body = ErrorBody, description = "No such service, or its namespace is not watched"),
        (status = 503, body = StatusView, headers(("retry-after" = u64), ("etag" = String)),
            description = "Not available now: `status` says why, `retryAfter` when to ask again"),
        Refused,
    ))]
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

/// Every service this readiness service sees.
#[utoipa::path(get, path = "/v1/status", tag = "status",
    params(("if-none-match" = Option<String>, Header, description = "An ETag from an earlier answer")),
    responses((status = 200, body = StatusList, headers(("etag" = String))),
              (status = 304, description = "Unchanged since the given ETag"), Refused))]
async fn list(State(st): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    let all = st.all();
    cached_json(StatusCode::OK, &serde_json::json!({ "items": all }), &headers)
}

/// Server-sent events: `status` with every service's answer first, then one per change
/// (`status`, `deleted`); a client that fell 1,024 changes behind gets `resync` and the stream
/// ends, so it reconnects for a fresh snapshot;
/// a comment line every 15 s keeps proxies from closing it.
#[utoipa::path(get, path = "/v1/watch", tag = "status",
    responses((status = 200, body = String, content_type = "text/event-stream"), Refused))]
async fn watch(State(st): State<Arc<AppState>>) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let rx = st.changes.subscribe();
    let snapshot: Vec<Event> =
        st.all().iter().filter_map(|v| Event::default().event("status").json_data(v).ok()).collect();
    // A subscriber that fell a whole channel behind (1,024 changes) is told `resync` and the
    // stream ends: it reconnects for a fresh snapshot (EventSource does, and so does the client),
    // rather than being buffered for without bound.
    let updates = stream::unfold(Some(rx), |rx| async move {
        let mut rx = rx?;
        let event = match rx.recv().await {
            Ok(Change::Status(json)) => Some(Event::default().event("status").data(&*json)),
            Ok(Change::Deleted { namespace, name }) => Event::default()
                .event("deleted")
                .json_data(serde_json::json!({ "namespace": namespace, "name": name }))
                .ok(),
            Err(RecvError::Lagged(missed)) => {
                let why = format!("too slow: {missed} changes missed; reconnect for a fresh snapshot");
                let resync = Event::default().event("resync").json_data(serde_json::json!({ "reason": why }));
                return Some((resync.ok(), None));
            }
            Err(RecvError::Closed) => return None,
        };
        Some((event, Some(rx)))
    })
    .filter_map(|e| async move { e });
    let events = stream::iter(snapshot).chain(updates).map(Ok);
    Sse::new(events).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)).text("heartbeat"))
}

/// Ready to answer: 503 while the watch of the Kubernetes API can't be trusted.
#[utoipa::path(get, path = "/readyz", tag = "operations",
    responses((status = 200, body = String, content_type = "text/plain"),
              (status = 503, body = ErrorBody), Refused))]
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

/// Prometheus metrics (OpenMetrics text).
#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, body = String, content_type = "application/openmetrics-text"), Refused))]
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

/// Alive (the kubelet's liveness probe).
#[utoipa::path(get, path = "/healthz", tag = "operations",
    responses((status = 200, body = String, content_type = "text/plain"), Refused))]
async fn healthz() -> &'static str {
    "ok\n"
}

/// The live dashboard (HTML; it follows `/v1/watch`).
#[utoipa::path(get, path = "/", tag = "operations",
    responses((status = 200, body = String, content_type = "text/html"), Refused))]
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
        router(state(objects, fresh))
    }

    fn state(objects: Vec<TelephonyService>, fresh: bool) -> Arc<AppState> {
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
        Arc::new(AppState {
            answers: Default::default(),
            scopes: vec![(None, store)],
            freshness,
            changes: tokio::sync::broadcast::channel(16).0,
            metrics: Metrics::default(),
            cors_origins: vec!["https://app.example.com".into()],
            heartbeats: None,
            primaries: Default::default(),
        })
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
            // Path traversal: an encoded name is still one segment, and not a Kubernetes name.
            ("GET", "/v1/status/..%2F..%2Fetc/passwd", StatusCode::BAD_REQUEST),
            ("GET", "/v1/status/%2e%2e/calls", StatusCode::BAD_REQUEST),
            ("GET", "/v1/status/shop/calls%00", StatusCode::BAD_REQUEST),
            ("GET", "/v1/status/shop/../../metrics", StatusCode::NOT_FOUND),
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

    /// `GET /openapi.json` describes what is served: every documented operation is routed (no
    /// fallback 404 or 405), and the answer's shape is among its schemas.
    #[tokio::test]
    async fn the_openapi_document_matches_the_routes() {
        let app = app(vec![service(Phase::Ready, 1)], true);
        let doc = json(call(&app, "GET", "/openapi.json", &[]).await).await;
        assert_eq!(doc["openapi"].as_str().map(|v| &v[..2]), Some("3."), "{doc}");
        let paths = doc["paths"].as_object().expect("paths");
        let mut routed = vec![];
        for (path, item) in paths {
            assert_eq!(item.as_object().unwrap().keys().collect::<Vec<_>>(), ["get"], "{path}");
            let uri = path.replace("{namespace}", "shop").replace("{name}", "calls");
            if uri == "/v1/watch" {
                continue; // never ends; routed, as the SSE tests show
            }
            let res = call(&app, "GET", &uri, &[]).await;
            assert_eq!(res.status(), StatusCode::OK, "{path} is documented but not served");
            routed.push(path.clone());
        }
        assert_eq!(routed.len(), 6, "{routed:?}");
        let schemas = doc["components"]["schemas"].as_object().expect("schemas");
        for name in ["StatusView", "StatusList", "ErrorBody", "Phase", "Word"] {
            assert!(schemas.contains_key(name), "{name}: {:?}", schemas.keys().collect::<Vec<_>>());
        }
    }

    /// A subscriber that falls a whole channel behind is told `resync`, and its stream ends (it
    /// reconnects for a fresh snapshot); one that keeps up gets every change.
    #[tokio::test]
    async fn a_subscriber_that_falls_behind_is_told_and_closed() {
        let st = state(vec![service(Phase::Ready, 1)], true);
        let app = router(st.clone());
        let body = |res: Response| res.into_body().into_data_stream();
        let mut slow = body(call(&app, "GET", "/v1/watch", &[]).await);
        let first = slow.next().await.unwrap().unwrap();
        assert!(String::from_utf8_lossy(&first).starts_with("event: status"), "the snapshot first");
        let v = Change::status(&st.all()[0]);
        for _ in 0..17 {
            st.changes.send(v.clone()).unwrap(); // capacity 16 here
        }
        let mut rest = String::new();
        while let Some(chunk) = tokio::time::timeout(Duration::from_secs(2), slow.next()).await.unwrap() {
            rest.push_str(&String::from_utf8_lossy(&chunk.unwrap()));
        }
        assert!(rest.starts_with("event: resync\ndata: {\"reason\":\"too slow: 1 changes missed"), "{rest}");
        assert_eq!(rest.matches("event:").count(), 1, "nothing after the resync: {rest}");

        let mut keeping_up = body(call(&app, "GET", "/v1/watch", &[]).await);
        keeping_up.next().await.unwrap().unwrap();
        for _ in 0..3 {
            st.changes.send(v.clone()).unwrap();
            let chunk = keeping_up.next().await.unwrap().unwrap();
            assert!(String::from_utf8_lossy(&chunk).starts_with("event: status"));
        }
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
