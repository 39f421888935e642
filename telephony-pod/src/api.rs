//! The worker's HTTP API. Every failure is a JSON error with a clear message; upstream trouble
//! becomes 502/503/429 with `Retry-After`; nothing a client sends can produce a 500 or a panic.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::extract::{DefaultBodyLimit, MatchedPath, Path, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use prometheus_client::registry::Registry;
use serde::Serialize;

use crate::calls::{routes as calls, Calls};
use crate::config::Config;
use crate::credentials::Credentials;
use crate::error::{ApiError, Body};
use crate::input::{CallRequest, CredentialRequest};
use crate::metrics::{Metrics, RequestLabels};
use crate::readiness::Readiness;
use crate::telnyx::{Dial, Telnyx};
use crate::webhook::{self, Seen};

/// Bodies larger than this are refused (413). The largest valid request is a dial whose 4096-byte
/// `clientState` is written as JSON escapes (`\u00e9`: 6 bytes per byte), about 25 KiB; the
/// fuzzer's just-too-long one (4097 emoji as surrogate pairs) is 49 KB, and must get its 400.
pub const BODY_LIMIT: usize = 64 * 1024;

#[derive(Clone)]
pub struct AppState {
    pub config: Arc<Config>,
    pub telnyx: Arc<Telnyx>,
    pub credentials: Arc<Credentials>,
    pub readiness: Arc<Readiness>,
    pub calls: Arc<Calls>,
    /// Webhook event ids already applied.
    pub seen: Arc<Mutex<Seen>>,
    pub metrics: Metrics,
    pub registry: Arc<Registry>,
}

/// The worker's HTTP API, with `GET /openapi.json` describing it.
pub fn router(state: AppState) -> Router {
    let (routes, doc) = documented(state.clone());
    let doc = Arc::new(crate::openapi::json(&doc));
    routes
        .route(
            "/openapi.json",
            get(move || async move { ([(header::CONTENT_TYPE, "application/json")], doc.to_string()) }),
        )
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such route") })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "method not allowed on this route",
            )
        })
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(middleware::from_fn_with_state(state.clone(), count_requests))
        .with_state(state)
}

/// The routes and their OpenAPI document, registered together (`utoipa-axum`), so neither can
/// have what the other lacks.
pub fn documented(state: AppState) -> (Router<AppState>, utoipa::openapi::OpenApi) {
    use utoipa::OpenApi as _;
    use utoipa_axum::{router::OpenApiRouter, routes};
    // The app's routes: behind the token when one is configured (`auth`).
    let app = OpenApiRouter::new()
        .routes(routes!(create_credential))
        .routes(routes!(dial, calls::list))
        .routes(routes!(calls::get))
        .routes(routes!(hangup))
        .routes(routes!(calls::start_recording))
        .routes(routes!(calls::stop_recording))
        .routes(routes!(calls::events))
        .route_layer(middleware::from_fn_with_state(state, crate::auth::require_token));
    let (schemas, paths, webhooks) = routes!(webhook::receive);
    let webhooks = webhooks.layer(DefaultBodyLimit::max(webhook::BODY_LIMIT));
    OpenApiRouter::with_openapi(crate::openapi::ApiDoc::openapi())
        .merge(app)
        .routes((schemas, paths, webhooks))
        .routes(routes!(crate::heartbeat::stream))
        .routes(routes!(healthz))
        .routes(routes!(readyz))
        .routes(routes!(metrics))
        .split_for_parts()
}

/// Alive (the kubelet's liveness probe).
#[utoipa::path(get, path = "/healthz", tag = "operations",
    responses((status = 200, body = String, content_type = "text/plain")))]
async fn healthz() -> &'static str {
    "ok\n"
}

// ---- handlers ----

/// A credential and a fresh WebRTC login token for the browser SDK.
#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CredentialResponse {
    credential_id: String,
    sip_username: String,
    token: String,
    expires_at: String,
}

#[utoipa::path(post, path = "/v1/credentials", tag = "credentials", security(("bearer" = [])),
    request_body = CredentialRequest,
    responses((status = 201, body = CredentialResponse), crate::openapi::AppErrors))]
async fn create_credential(
    State(s): State<AppState>,
    Body(req): Body<CredentialRequest>,
) -> Result<Response, ApiError> {
    req.validate()?;
    let issued = s.credentials.issue(&req.username).await.map_err(ApiError::upstream)?;
    let body = CredentialResponse {
        credential_id: issued.credential_id,
        sip_username: issued.sip_username,
        token: issued.token,
        expires_at: issued.expires_at.to_string(),
    };
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

/// The call Telnyx placed.
#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CallResponse {
    call_control_id: String,
    call_leg_id: Option<String>,
    call_session_id: Option<String>,
}

#[utoipa::path(post, path = "/v1/calls", tag = "calls", security(("bearer" = [])),
    request_body = CallRequest,
    responses((status = 201, body = CallResponse), crate::openapi::AppErrors))]
async fn dial(State(s): State<AppState>, Body(req): Body<CallRequest>) -> Result<Response, ApiError> {
    req.validate()?;
    if s.readiness.is_shutting_down() {
        // Draining: the app retries, and the Service sends it to another worker.
        let mut e = ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "draining",
            "this worker is draining: it takes no new calls",
        );
        e.retry_after = Some(1);
        return Err(e);
    }
    let client_state = webhook::owner::client_state(s.config.advertise, req.client_state.as_deref());
    let call = s
        .telnyx
        .dial(&Dial {
            connection_id: &s.config.connection_id,
            to: &req.to,
            from: &req.from,
            timeout_secs: req.timeout_secs,
            client_state,
            command_id: command_id(),
        })
        .await
        .map_err(ApiError::upstream)?;
    s.calls.dialed(
        &call.call_control_id,
        call.call_leg_id.clone(),
        call.call_session_id.clone(),
        &req.from,
        &req.to,
    );
    let body = CallResponse {
        call_control_id: call.call_control_id,
        call_leg_id: call.call_leg_id,
        call_session_id: call.call_session_id,
    };
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

#[utoipa::path(post, path = "/v1/calls/{call_control_id}/hangup", tag = "calls", security(("bearer" = [])),
    params(("call_control_id" = String, Path, description = "Telnyx's call control id", pattern = "^[A-Za-z0-9:_.=~-]{1,256}$")),
    responses((status = 200, body = crate::openapi::Done), crate::openapi::AppErrors, crate::openapi::CallErrors))]
async fn hangup(State(s): State<AppState>, Path(id): Path<String>) -> Result<Response, ApiError> {
    calls::valid_id(&id)?;
    s.telnyx.hangup(&id, &command_id()).await.map_err(calls::command_error)?;
    // With webhooks, Telnyx's call.hangup says how it ended; without, this is all we learn.
    if s.config.webhook_key.is_none() {
        s.calls.ended_here(&id, "normal_clearing", "app");
    }
    Ok(Json(serde_json::json!({ "result": "ok" })).into_response())
}

/// Ready for calls (the kubelet's readiness probe). 503 says why not; while draining, with
/// `activeCalls`, the live calls the worker still holds, and once the drain timeout has ended
/// calls, its message says how many.
#[utoipa::path(get, path = "/readyz", tag = "operations",
    params(("x-dialtone-asker" = Option<String>, Header,
            description = "Set by the operator: a drain that ended calls waits for this ask")),
    responses((status = 200, body = String, content_type = "text/plain"),
              (status = 503, body = crate::openapi::ErrorBody)))]
async fn readyz(State(s): State<AppState>, headers: header::HeaderMap) -> Response {
    if s.readiness.is_shutting_down() {
        // The operator reads `activeCalls` into the status (`drainingCalls`), and the drain's
        // cut into a `DrainTimeout` Event.
        let calls = s.calls.active_calls();
        let asker = headers.contains_key(crate::readiness::OPERATOR_ASKS);
        let message =
            s.readiness.drain_report(asker).unwrap_or_else(|| format!("draining: {calls} live calls"));
        let body = serde_json::json!({
            "error": { "code": "draining", "message": message },
            "activeCalls": calls,
        });
        return (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response();
    }
    match s.readiness.problem() {
        None => (StatusCode::OK, "ok\n").into_response(),
        Some(why) => ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "not_ready", why).into_response(),
    }
}

/// Prometheus metrics (OpenMetrics text).
#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, body = String, content_type = "application/openmetrics-text")))]
async fn metrics(State(s): State<AppState>) -> Response {
    let mut body = String::new();
    if prometheus_client::encoding::text::encode(&mut body, &s.registry).is_err() {
        return ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "metrics", "metrics encoding failed")
            .into_response();
    }
    ([(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], body)
        .into_response()
}

/// Telnyx ignores a repeated `command_id`, so a retried command can't act twice.
pub(crate) fn command_id() -> String {
    let r: u128 = rand::random();
    format!("dialtone-{r:032x}")
}

async fn count_requests(State(s): State<AppState>, req: Request, next: Next) -> Response {
    let route = req.extensions().get::<MatchedPath>().map_or("unmatched", |p| p.as_str()).to_string();
    let started = Instant::now();
    let res = next.run(req).await;
    s.metrics
        .requests
        .get_or_create(&RequestLabels { route: route.clone(), status: res.status().as_u16() })
        .inc();
    tracing::debug!(%route, status = res.status().as_u16(), took_ms = started.elapsed().as_millis() as u64, "request");
    res
}
