//! `POST /v1/webhooks/telnyx`: Telnyx's call events, verified (`verify`: ed25519 over timestamp
//! and raw body, 5 minutes' tolerance), read tolerantly (`envelope`), applied once per event id
//! (`replay`), then recorded in the call store and streamed to the app. A webhook for a call
//! another worker placed (`owner`) is handed to that worker (`forward`), so its drain learns of
//! the hangup.
//!
//! Answers: 200 for every verified event, including unknown types and repeats (Telnyx retries on
//! anything else, and a repeat must not reach the failover URL); 401 for a bad or stale
//! signature; 400 for a verified body we can't read; 404 while no public key is configured.

mod envelope;
mod forward;
pub mod owner;
mod replay;
mod verify;

pub use envelope::{parse, Envelope, Kind, Malformed, Payload};
pub use replay::Seen;
pub use verify::{BadKey, PublicKey, Rejection, TOLERANCE};

use std::net::SocketAddr;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;

use crate::api::AppState;
use crate::error::ApiError;
use crate::metrics::{ReasonLabel, WebhookLabels};

/// Webhook bodies above this are refused (413). Telnyx's call events are a few KiB; a hangup
/// with `call_quality_stats` is the largest.
pub const BODY_LIMIT: usize = 64 * 1024;

/// Telnyx's call events, signed (ed25519 over `<timestamp>|<body>`).
#[utoipa::path(post, path = "/v1/webhooks/telnyx", tag = "telnyx",
    params(("telnyx-timestamp" = String, Header, description = "Unix seconds"),
           ("telnyx-signature-ed25519" = String, Header, description = "Base64 signature")),
    request_body(content = serde_json::Value, content_type = "application/json", description = "`{\"data\": {\"id\", \"event_type\", \"payload\"}}`"),
    responses((status = 200, body = crate::openapi::WebhookResult),
              (status = 400, body = crate::openapi::ErrorBody),
              (status = 401, description = "Bad or stale signature", body = crate::openapi::ErrorBody),
              (status = 404, description = "Webhooks are off (no public key)", body = crate::openapi::ErrorBody),
              (status = 413, body = crate::openapi::ErrorBody)))]
pub async fn receive(State(s): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let Some(key) = &s.config.webhook_key else {
        return ApiError::new(
            StatusCode::NOT_FOUND,
            "webhooks_off",
            "webhooks are off: the worker has no Telnyx public key (spec.telnyx.webhookPublicKeySecretRef)",
        )
        .into_response();
    };
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let now = jiff::Timestamp::now().as_second().max(0) as u64;
    if let Err(why) = key.verify(header("telnyx-timestamp"), header("telnyx-signature-ed25519"), &body, now) {
        return refuse(&s, why.reason(), StatusCode::UNAUTHORIZED, "bad_signature", why.to_string());
    }
    let event = match parse(&body) {
        Ok(e) => e,
        Err(why) => {
            return refuse(&s, "malformed", StatusCode::BAD_REQUEST, "malformed_event", why.to_string())
        }
    };
    if let Some((owner, me)) = elsewhere(&s, &event, &headers) {
        match forward::to_owner(owner, me, &headers, body.clone()).await {
            Ok(()) => return answer(&s, &event, "forwarded"),
            // The owner is gone (its calls with it) or refused: keep the event here.
            Err(why) => tracing::warn!(id = %event.id, %owner, %why, "webhook not forwarded; applied here"),
        }
    }
    let first = s.seen.lock().map(|mut seen| seen.first_time(&event.id, now)).unwrap_or(true);
    let result = if !first {
        "duplicate"
    } else if s.calls.apply(&event) {
        "applied"
    } else {
        "unchanged"
    };
    answer(&s, &event, result)
}

/// The worker to hand `event` to: its call's owner, when that is another worker and the event
/// was not forwarded already. Only a worker that knows its own address forwards.
/// The pair is (owner, this worker).
fn elsewhere(s: &AppState, event: &Envelope, headers: &HeaderMap) -> Option<(SocketAddr, SocketAddr)> {
    let me = s.config.advertise?;
    let owner = event.payload.owner.filter(|o| *o != me)?;
    (!headers.contains_key(forward::FORWARDED_BY)).then_some((owner, me))
}

fn answer(s: &AppState, event: &Envelope, result: &'static str) -> Response {
    tracing::info!(event = %event.kind.label(), id = %event.id, call = event.payload.call_control_id.as_deref().unwrap_or("-"), result, "webhook");
    s.metrics
        .webhooks
        .get_or_create(&WebhookLabels { event: event.kind.label().into(), result: result.into() })
        .inc();
    (StatusCode::OK, Json(serde_json::json!({ "result": result }))).into_response()
}

fn refuse(s: &AppState, reason: &str, status: StatusCode, code: &'static str, message: String) -> Response {
    tracing::warn!(reason, %message, "webhook refused");
    s.metrics.webhooks_rejected.get_or_create(&ReasonLabel { reason: reason.into() }).inc();
    ApiError::new(status, code, message).into_response()
}
