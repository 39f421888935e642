//! The worker's HTTP API. Every failure is a JSON error with a clear message; upstream trouble
//! becomes 502/503/429 with `Retry-After`; nothing a client sends can produce a 500 or a panic.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::extract::rejection::JsonRejection;
use axum::extract::{DefaultBodyLimit, FromRequest, MatchedPath, Path, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine;
use prometheus_client::registry::Registry;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::config::Config;
use crate::credentials::Credentials;
use crate::input::{is_call_control_id, CallRequest, CredentialRequest};
use crate::metrics::{Metrics, RequestLabels};
use crate::telnyx::{Dial, Telnyx, UpstreamError};

/// Bodies larger than this are refused (413).
pub const BODY_LIMIT: usize = 16 * 1024;

/// Whether the worker should get traffic: the last Telnyx check, and shutdown.
#[derive(Default)]
pub struct Readiness {
    /// None until the first check; then Ok, or why it failed.
    last_check: Mutex<Option<Result<(), String>>>,
    shutting_down: AtomicBool,
}

impl Readiness {
    pub fn record(&self, result: Result<(), String>) {
        if let Ok(mut c) = self.last_check.lock() {
            *c = Some(result);
        }
    }

    pub fn shut_down(&self) {
        self.shutting_down.store(true, Ordering::SeqCst);
    }

    pub fn problem(&self) -> Option<String> {
        if self.shutting_down.load(Ordering::SeqCst) {
            return Some("shutting down".into());
        }
        match self.last_check.lock().ok()?.clone() {
            None => Some("waiting for the first Telnyx check".into()),
            Some(Ok(())) => None,
            Some(Err(why)) => Some(why),
        }
    }
}

#[derive(Clone)]
pub struct AppState {
    pub config: Arc<Config>,
    pub telnyx: Arc<Telnyx>,
    pub credentials: Arc<Credentials>,
    pub readiness: Arc<Readiness>,
    pub metrics: Metrics,
    pub registry: Arc<Registry>,
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/v1/credentials", post(create_credential))
        .route("/v1/calls", post(dial))
        .route("/v1/calls/{call_control_id}/hangup", post(hangup))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
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

// ---- handlers ----

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct CredentialResponse {
    credential_id: String,
    sip_username: String,
    token: String,
    expires_at: String,
}

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

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct CallResponse {
    call_control_id: String,
    call_leg_id: Option<String>,
    call_session_id: Option<String>,
}

async fn dial(State(s): State<AppState>, Body(req): Body<CallRequest>) -> Result<Response, ApiError> {
    req.validate()?;
    let client_state = req.client_state.as_ref().map(|c| base64::engine::general_purpose::STANDARD.encode(c));
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
    let body = CallResponse {
        call_control_id: call.call_control_id,
        call_leg_id: call.call_leg_id,
        call_session_id: call.call_session_id,
    };
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

async fn hangup(State(s): State<AppState>, Path(id): Path<String>) -> Result<Response, ApiError> {
    if !is_call_control_id(&id) {
        return Err(ApiError::invalid("callControlId", "is not a valid call control id"));
    }
    match s.telnyx.hangup(&id, &command_id()).await {
        Ok(()) => Ok(Json(serde_json::json!({ "result": "ok" })).into_response()),
        Err(e) if e.code() == Some("90018") => {
            Err(ApiError::new(StatusCode::CONFLICT, "call_already_ended", "the call has already ended")
                .with_upstream_code("90018"))
        }
        Err(e) => Err(ApiError::upstream(e)),
    }
}

async fn readyz(State(s): State<AppState>) -> Response {
    match s.readiness.problem() {
        None => (StatusCode::OK, "ok\n").into_response(),
        Some(why) => ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "not_ready", why).into_response(),
    }
}

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
fn command_id() -> String {
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

// ---- errors and the JSON body extractor ----

/// `{"error": {"code", "message", "field"?, "upstreamCode"?}}`, plus `Retry-After` when useful.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub field: Option<String>,
    pub upstream_code: Option<String>,
    pub retry_after: Option<u64>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
            field: None,
            upstream_code: None,
            retry_after: None,
        }
    }

    pub fn invalid(field: &str, problem: &str) -> ApiError {
        let mut e = ApiError::new(StatusCode::BAD_REQUEST, "invalid_request", format!("{field}: {problem}"));
        e.field = Some(field.to_string());
        e
    }

    fn with_upstream_code(mut self, code: &str) -> ApiError {
        self.upstream_code = Some(code.to_string());
        self
    }

    /// Maps a Telnyx failure to what the app should do about it.
    pub fn upstream(e: UpstreamError) -> ApiError {
        let code = e.code().map(str::to_string);
        let mut out = match &e {
            UpstreamError::RateLimited { retry_after, .. } => {
                let mut a = ApiError::new(StatusCode::TOO_MANY_REQUESTS, "rate_limited", e.to_string());
                a.retry_after = Some(retry_after.as_secs().max(1));
                a
            }
            UpstreamError::Rejected { status: 401 | 403, .. } => {
                let mut a = ApiError::new(
                    StatusCode::BAD_GATEWAY,
                    "upstream_auth",
                    "Telnyx refused this worker's API key",
                );
                a.retry_after = Some(30);
                a
            }
            UpstreamError::Rejected { status: 404, detail, .. } => {
                ApiError::new(StatusCode::NOT_FOUND, "upstream_not_found", format!("Telnyx: {detail}"))
            }
            UpstreamError::Rejected { status: 409, detail, .. } => {
                ApiError::new(StatusCode::CONFLICT, "upstream_conflict", format!("Telnyx: {detail}"))
            }
            UpstreamError::Rejected { title, detail, .. } => ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "upstream_rejected",
                if detail == title {
                    format!("Telnyx: {detail}")
                } else {
                    format!("Telnyx: {title}: {detail}")
                },
            ),
            UpstreamError::Server { .. } | UpstreamError::Malformed(_) => {
                let mut a = ApiError::new(StatusCode::BAD_GATEWAY, "upstream_error", e.to_string());
                a.retry_after = Some(5);
                a
            }
            UpstreamError::Timeout | UpstreamError::Unreachable => {
                let mut a =
                    ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "upstream_unavailable", e.to_string());
                a.retry_after = Some(5);
                a
            }
        };
        out.upstream_code = code;
        tracing::warn!(status = out.status.as_u16(), kind = e.kind(), error = %e, "Telnyx call failed");
        out
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut error = serde_json::json!({ "code": self.code, "message": self.message });
        if let Some(f) = &self.field {
            error["field"] = f.clone().into();
        }
        if let Some(c) = &self.upstream_code {
            error["upstreamCode"] = c.clone().into();
        }
        let mut res = (self.status, Json(serde_json::json!({ "error": error }))).into_response();
        if let Some(secs) = self.retry_after {
            if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
                res.headers_mut().insert(header::RETRY_AFTER, v);
            }
        }
        res
    }
}

/// A JSON body whose every rejection is a JSON error naming the problem (and field).
pub struct Body<T>(pub T);

impl<S, T> FromRequest<S> for Body<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match Json::<T>::from_request(req, state).await {
            Ok(Json(v)) => Ok(Body(v)),
            Err(rejection) => Err(body_error(rejection)),
        }
    }
}

fn body_error(r: JsonRejection) -> ApiError {
    match r {
        JsonRejection::MissingJsonContentType(_) => ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "send the body as JSON with Content-Type: application/json",
        ),
        JsonRejection::JsonDataError(e) => {
            // serde's message names the field (`to: invalid type...`, `unknown field `x``).
            let text = e.body_text();
            let detail = text.split_once("target type: ").map_or(text.as_str(), |(_, d)| d).to_string();
            ApiError::new(StatusCode::BAD_REQUEST, "invalid_request", detail)
        }
        JsonRejection::JsonSyntaxError(e) => {
            let text = e.body_text();
            let detail =
                text.split_once("parse the request body as JSON: ").map_or(text.as_str(), |(_, d)| d);
            ApiError::new(StatusCode::BAD_REQUEST, "malformed_json", format!("malformed JSON: {detail}"))
        }
        JsonRejection::BytesRejection(_) => ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            format!("the body is larger than {BODY_LIMIT} bytes or could not be read"),
        ),
        other => ApiError::new(StatusCode::BAD_REQUEST, "invalid_request", other.body_text()),
    }
}
