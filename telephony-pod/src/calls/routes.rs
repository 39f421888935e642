//! `GET /v1/calls`, `GET /v1/calls/{id}`, `GET /v1/events` (SSE, resumable), and
//! `POST /v1/calls/{id}/recording/start|stop`.

use std::convert::Infallible;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::Json;
use futures::stream::{self, StreamExt};
use serde::Deserialize;
use tokio::sync::broadcast::error::RecvError;

use super::events::{CallEvent, EventLog, Resume};
use crate::api::{command_id, AppState};
use crate::error::ApiError;
use crate::input::is_call_control_id;
use crate::telnyx::RecordStart;

/// The calls this worker placed or heard of.
#[utoipa::path(get, path = "/v1/calls", tag = "calls", security(("bearer" = [])),
    responses((status = 200, body = crate::openapi::CallList),
              (status = 401, body = crate::openapi::ErrorBody)))]
pub async fn list(State(s): State<AppState>) -> Response {
    let calls = s.calls.list();
    let active = calls.iter().filter(|c| c.is_active()).count();
    Json(serde_json::json!({ "active": active, "calls": calls })).into_response()
}

/// One call's record.
#[utoipa::path(get, path = "/v1/calls/{call_control_id}", tag = "calls", security(("bearer" = [])),
    params(("call_control_id" = String, Path, description = "Telnyx's call control id", pattern = "^[A-Za-z0-9:_.=~-]{1,256}$")),
    responses((status = 200, body = super::Call),
              (status = 400, body = crate::openapi::ErrorBody),
              (status = 401, body = crate::openapi::ErrorBody),
              (status = 404, body = crate::openapi::ErrorBody)))]
pub async fn get(State(s): State<AppState>, Path(id): Path<String>) -> Result<Response, ApiError> {
    valid_id(&id)?;
    let call = s.calls.get(&id).ok_or_else(|| {
        ApiError::new(StatusCode::NOT_FOUND, "call_not_found", "this worker knows no call with that id")
    })?;
    Ok(Json(call).into_response())
}

/// How to record (the body is optional).
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RecordingRequest {
    /// `mp3` (default) or `wav`.
    #[serde(default)]
    #[schema(pattern = "^(mp3|wav)$")]
    format: Option<String>,
    /// `single` (default) or `dual`.
    #[serde(default)]
    #[schema(pattern = "^(single|dual)$")]
    channels: Option<String>,
}

/// Body optional: `{"format": "mp3"|"wav", "channels": "single"|"dual"}`, mp3 and single by default.
#[utoipa::path(post, path = "/v1/calls/{call_control_id}/recording/start", tag = "calls", security(("bearer" = [])),
    params(("call_control_id" = String, Path, description = "Telnyx's call control id", pattern = "^[A-Za-z0-9:_.=~-]{1,256}$")),
    request_body(content = Option<RecordingRequest>, description = "Optional"),
    responses((status = 200, body = crate::openapi::RecordingDone), crate::openapi::AppErrors, crate::openapi::CallErrors))]
pub async fn start_recording(
    State(s): State<AppState>,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    valid_id(&id)?;
    // No body, or `null`: the defaults. Anything else must be the object (a lone tab is not JSON:
    // schemathesis found it taken as no body).
    let value: serde_json::Value = if body.is_empty() {
        serde_json::Value::Null
    } else {
        serde_json::from_slice(&body).map_err(|e| {
            ApiError::new(StatusCode::BAD_REQUEST, "malformed_json", format!("malformed JSON: {e}"))
        })?
    };
    let req: RecordingRequest =
        if value.is_null() { RecordingRequest::default() } else { crate::error::object(value)? };
    let format = one_of("format", req.format.as_deref(), &["mp3", "wav"])?;
    let channels = one_of("channels", req.channels.as_deref(), &["single", "dual"])?;
    let start = RecordStart { format, channels, command_id: command_id() };
    s.telnyx.record_start(&id, &start).await.map_err(command_error)?;
    s.calls.set_recording(&id, true);
    Ok(Json(serde_json::json!({ "result": "ok", "recording": true })).into_response())
}

#[utoipa::path(post, path = "/v1/calls/{call_control_id}/recording/stop", tag = "calls", security(("bearer" = [])),
    params(("call_control_id" = String, Path, description = "Telnyx's call control id", pattern = "^[A-Za-z0-9:_.=~-]{1,256}$")),
    responses((status = 200, body = crate::openapi::RecordingDone), crate::openapi::AppErrors, crate::openapi::CallErrors))]
pub async fn stop_recording(State(s): State<AppState>, Path(id): Path<String>) -> Result<Response, ApiError> {
    valid_id(&id)?;
    s.telnyx.record_stop(&id, &command_id()).await.map_err(command_error)?;
    s.calls.set_recording(&id, false);
    Ok(Json(serde_json::json!({ "result": "ok", "recording": false })).into_response())
}

/// `GET /v1/events`: the call events as SSE, resumable with `Last-Event-ID`. Ends when the
/// worker stops (after its drain), so it never holds the shutdown open.
#[utoipa::path(get, path = "/v1/events", tag = "calls", security(("bearer" = [])),
    params(("last-event-id" = Option<String>, Header, description = "The last id seen: what came after is sent again")),
    responses((status = 200, description = "`call.*` events (data: `{\"type\", \"call\"}`), `reset`, `lagged`",
               body = String, content_type = "text/event-stream"),
              (status = 401, body = crate::openapi::ErrorBody)))]
pub async fn events(State(s): State<AppState>, headers: HeaderMap) -> Response {
    let last = headers.get("last-event-id").and_then(|v| v.to_str().ok());
    let log = &s.calls.events;
    let (after, reset) = match log.resume(last) {
        Resume::After(n) => (n, None),
        Resume::Reset => {
            (0, Some(Event::default().event("reset").data("events were missed: refetch GET /v1/calls")))
        }
    };
    let (backlog, rx) = log.subscribe(after);
    let last_seq = backlog.last().map_or(after, |e| e.seq);
    let calls = s.calls.clone();
    let first: Vec<Event> =
        reset.into_iter().chain(backlog.iter().map(|e| frame(&calls.events, e))).collect();
    let live = stream::unfold(Some((rx, last_seq, calls, s.readiness.clone())), |state| async move {
        let (mut rx, seen, calls, readiness) = state?;
        loop {
            // Biased: events published just before the stop (a drain's last hangups) still go out.
            let next = tokio::select! {
                biased;
                next = rx.recv() => next,
                _ = readiness.stopped() => return None,
            };
            match next {
                Ok(e) if e.seq <= seen => continue, // already sent from the backlog
                Ok(e) => return Some((frame(&calls.events, &e), Some((rx, e.seq, calls, readiness)))),
                Err(RecvError::Lagged(_)) => {
                    tracing::info!("closed a call event subscriber that fell behind");
                    let bye = Event::default().event("lagged").data("too slow: reconnect with Last-Event-ID");
                    return Some((bye, None));
                }
                Err(RecvError::Closed) => return None,
            }
        }
    });
    let stream = stream::iter(first).chain(live);
    Sse::new(stream.map(Ok::<_, Infallible>)).keep_alive(KeepAlive::default()).into_response()
}

fn frame(log: &EventLog, e: &Arc<CallEvent>) -> Event {
    let data = serde_json::to_string(e.as_ref()).unwrap_or_else(|_| "{}".into());
    Event::default().id(log.id(e.seq)).event(e.kind).data(data)
}

pub(crate) fn valid_id(id: &str) -> Result<(), ApiError> {
    if is_call_control_id(id) {
        Ok(())
    } else {
        Err(ApiError::invalid("callControlId", "is not a valid call control id"))
    }
}

fn one_of<'a>(field: &str, value: Option<&'a str>, allowed: &[&'a str]) -> Result<&'a str, ApiError> {
    match value {
        None => Ok(allowed[0]),
        Some(v) if allowed.contains(&v) => Ok(v),
        Some(_) => Err(ApiError::invalid(field, &format!("must be one of {}", allowed.join(", ")))),
    }
}

/// Telnyx's refusals of a call command (hangup, recording), as the app should read them.
pub(crate) fn command_error(e: crate::telnyx::UpstreamError) -> ApiError {
    match e.code() {
        Some("90018") => {
            ApiError::new(StatusCode::CONFLICT, "call_already_ended", "the call has already ended")
        }
        Some("90020") => ApiError::new(
            StatusCode::CONFLICT,
            "call_not_answered",
            "recording can start only once the call has audio (after it is answered)",
        ),
        _ => return ApiError::upstream(e),
    }
    .with_upstream_code(e.code().unwrap_or_default())
}
