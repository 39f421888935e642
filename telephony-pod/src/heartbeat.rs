//! `GET /v1/heartbeat`: the stream the readiness service holds to each worker, so the main app
//! learns of a dead or hung worker in milliseconds instead of at the kubelet's next probe.
//!
//! The stream opens with `event: hello` carrying the period, then sends `data: beat` every period
//! while the worker is ready, and `event: unready` with the reason (the same as `/readyz`'s) while
//! it is not: the reader knows at once, and why. A dead process closes its socket at once (the
//! kernel does it); a hung one goes silent, and the reader gives up after 3 periods. On SIGTERM
//! it sends `event: draining` with the live calls (`{"activeCalls": N}`) each period, so the
//! worker is out of rotation at once and the app can see what it still holds; once drained the
//! stream ends, so it never holds the server open.

use std::convert::Infallible;
use std::sync::Arc;

use axum::extract::State;
use axum::response::sse::{Event, Sse};
use axum::response::{IntoResponse, Response};
use futures::{stream, StreamExt};
use tokio::time::MissedTickBehavior;

use crate::api::AppState;
use crate::readiness::Readiness;

/// The stream the readiness service follows: `hello`, then `beat` every period while ready.
#[utoipa::path(get, path = "/v1/heartbeat", tag = "operations",
    responses((status = 200, description = "`hello`, `beat`, `unready`, `draining`", body = String, content_type = "text/event-stream")))]
pub async fn stream(State(s): State<AppState>) -> Response {
    let period = s.config.heartbeat_period;
    let hello = Event::default().event("hello").data(format!("{{\"periodMs\":{}}}", period.as_millis()));
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(MissedTickBehavior::Skip);
    let beats = stream::unfold(
        (tick, s.readiness.clone(), s.calls.clone()),
        |(mut tick, readiness, calls)| async move {
            tick.tick().await;
            let event = match beat(&readiness) {
                Beat::Stop => return None,
                Beat::Ready => Event::default().data("beat"),
                Beat::Unready(why) => Event::default().event("unready").data(why),
                Beat::Draining => Event::default()
                    .event("draining")
                    .data(format!("{{\"activeCalls\":{}}}", calls.active_calls())),
            };
            Some((Ok::<_, Infallible>(event), (tick, readiness, calls)))
        },
    );
    Sse::new(stream::once(async { Ok(hello) }).chain(beats)).into_response()
}

#[derive(Debug, PartialEq)]
enum Beat {
    Ready,
    /// Not ready (Telnyx unreachable, first check pending): no beat, the reason instead.
    Unready(String),
    /// SIGTERM received: no new calls, live ones finishing (how many goes with it).
    Draining,
    /// Drained: the stream ends.
    Stop,
}

fn beat(readiness: &Arc<Readiness>) -> Beat {
    if readiness.is_stopped() {
        return Beat::Stop;
    }
    if readiness.is_shutting_down() {
        return Beat::Draining;
    }
    match readiness.problem() {
        None => Beat::Ready,
        Some(why) => Beat::Unready(why.replace(['\r', '\n'], " ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn beats_only_while_ready_says_why_not_and_ends_on_shutdown() {
        let r = Arc::new(Readiness::default());
        assert_eq!(beat(&r), Beat::Unready("waiting for the first Telnyx check".into()));
        r.record(Ok(()));
        assert_eq!(beat(&r), Beat::Ready);
        r.record(Err("Telnyx check failed:\nunreachable".into()));
        assert_eq!(beat(&r), Beat::Unready("Telnyx check failed: unreachable".into()));
        r.record(Ok(()));
        r.shut_down();
        assert_eq!(beat(&r), Beat::Draining);
        r.stop();
        assert_eq!(beat(&r), Beat::Stop);
    }
}
