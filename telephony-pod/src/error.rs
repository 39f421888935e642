//! The worker's HTTP errors: one JSON shape for every failure, and the JSON body extractor whose
//! every rejection is such an error naming the problem (and field).

use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, Request};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::de::DeserializeOwned;

use crate::api::BODY_LIMIT;
use crate::telnyx::UpstreamError;

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

    pub(crate) fn with_upstream_code(mut self, code: &str) -> ApiError {
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
        let Json(value) = Json::<serde_json::Value>::from_request(req, state).await.map_err(body_error)?;
        object(value).map(Body)
    }
}

/// A request body is a JSON object: serde would also take a struct from an array (`["+1…",
/// "+1…"]`), which no client means and the OpenAPI document doesn't allow.
pub fn object<T: DeserializeOwned>(value: serde_json::Value) -> Result<T, ApiError> {
    if !value.is_object() {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "the body must be a JSON object",
        ));
    }
    // The path names the field, as `to: invalid type: …` (what axum's own Json says too).
    serde_path_to_error::deserialize(value).map_err(|e| {
        let message = match e.path().to_string().as_str() {
            "." => e.inner().to_string(),
            path => format!("{path}: {}", e.inner()),
        };
        ApiError::new(StatusCode::BAD_REQUEST, "invalid_request", message)
    })
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
