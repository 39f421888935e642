//! The worker's OpenAPI document, served at `GET /openapi.json`. It is built from the same
//! handlers the router serves (`utoipa-axum`'s `routes!` registers a route and documents it in one
//! step), so a route can't exist undocumented, and the shapes below are the ones the handlers send.

use serde::Serialize;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi, ToSchema};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "telephony-pod",
        description = "The Dialtone telephony worker: WebRTC credentials and tokens, calls through Telnyx, \
            call records and events, Telnyx's webhooks, probes and metrics. Every error is \
            `{\"error\": {\"code\", \"message\", \"field\"?, \"upstreamCode\"?}}`; 429, 502 and 503 carry \
            `Retry-After`. With `spec.auth`, the app's routes need `Authorization: Bearer <token>`."
    ),
    tags(
        (name = "calls", description = "Calls, their records and their events (the app's routes)"),
        (name = "credentials", description = "WebRTC logins for the browser (the app's routes)"),
        (name = "telnyx", description = "Telnyx's signed call events"),
        (name = "operations", description = "Probes, metrics and the readiness service's heartbeat")
    ),
    modifiers(&BearerToken)
)]
pub struct ApiDoc;

/// `spec.auth`'s bearer token, on the operations that declare `security(("bearer" = []))`.
struct BearerToken;

impl Modify for BearerToken {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme("bearer", SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)));
    }
}

/// Every error the worker sends.
#[derive(Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ErrorDetail {
    /// Stable and machine-readable, e.g. `invalid_request`, `unauthorized`, `draining`,
    /// `upstream_unavailable`.
    pub code: String,
    /// For people; never holds a secret.
    pub message: String,
    /// The request field at fault (400).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// Telnyx's own error code, when Telnyx refused.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upstream_code: Option<String>,
}

/// A command Telnyx took (hangup, recording).
#[derive(Serialize, ToSchema)]
pub struct Done {
    /// `ok`.
    pub result: String,
}

/// Recording started or stopped.
#[derive(Serialize, ToSchema)]
pub struct RecordingDone {
    /// `ok`.
    pub result: String,
    pub recording: bool,
}

/// What the worker did with a webhook: `applied`, `unchanged`, `duplicate` or `forwarded`.
#[derive(Serialize, ToSchema)]
pub struct WebhookResult {
    pub result: String,
}

/// The calls this worker placed or heard of, newest first, and how many are live.
#[derive(Serialize, ToSchema)]
pub struct CallList {
    pub active: usize,
    pub calls: Vec<crate::calls::Call>,
}

/// The OpenAPI document as JSON, for `GET /openapi.json`.
pub fn json(doc: &utoipa::openapi::OpenApi) -> String {
    doc.to_pretty_json().unwrap_or_else(|_| "{}".into())
}

/// What the app's routes answer when they can't do what was asked.
#[derive(utoipa::IntoResponses)]
pub enum AppErrors {
    /// Invalid input: the message, and `field`, name the problem.
    #[response(status = 400)]
    BadRequest(ErrorBody),
    /// `spec.auth` is on, and the bearer token is missing or wrong.
    #[response(status = 401, headers(("www-authenticate" = String)))]
    Unauthorized(ErrorBody),
    /// The body is over the 64 KiB limit.
    #[response(status = 413)]
    TooLarge(ErrorBody),
    /// The body is not sent as `application/json`.
    #[response(status = 415)]
    NotJson(ErrorBody),
    /// Telnyx refused what was asked (`upstreamCode` is its code).
    #[response(status = 422)]
    Refused(ErrorBody),
    /// Telnyx's rate limit: try again after `Retry-After` seconds.
    #[response(status = 429, headers(("retry-after" = u64)))]
    RateLimited(ErrorBody),
    /// Telnyx failed, answered nonsense, or refused this worker's API key.
    #[response(status = 502, headers(("retry-after" = u64)))]
    Upstream(ErrorBody),
    /// Telnyx can't be reached, or this worker is draining: another worker takes the call.
    #[response(status = 503, headers(("retry-after" = u64)))]
    Unavailable(ErrorBody),
}

/// What the routes of one call add.
#[derive(utoipa::IntoResponses)]
pub enum CallErrors {
    /// Neither this worker nor Telnyx knows the call.
    #[response(status = 404)]
    NotFound(ErrorBody),
    /// Telnyx: the call is in no state for this (e.g. already ended).
    #[response(status = 409)]
    Conflict(ErrorBody),
}
