//! Graceful drain on SIGTERM: new calls are refused at once (`/readyz` fails, dials get 503 with
//! `Retry-After`, the heartbeat says `draining`), live calls go on until they end or the drain
//! timeout passes, and the ones still live then are hung up with the cause `drain_timeout`.

use std::time::Duration;

use tokio::time::Instant;

use crate::api::command_id;
use crate::calls::Calls;
use crate::telnyx::Telnyx;

/// How often the drain looks at the live calls.
const POLL: Duration = Duration::from_millis(100);

/// What the worker waits for: `delay` always (endpoints drop the pod), then the live calls, up
/// to `timeout` from SIGTERM. Without webhooks the worker never learns that a call ended, so it
/// doesn't wait for calls it can't see end.
pub struct Drain {
    pub delay: Duration,
    pub timeout: Duration,
    pub calls_end_visibly: bool,
}

pub async fn run(plan: Drain, calls: &Calls, telnyx: &Telnyx) {
    let deadline = Instant::now() + plan.timeout.max(plan.delay);
    let live = calls.active_calls();
    tracing::info!(
        live_calls = live,
        timeout_s = plan.timeout.as_secs(),
        "draining: no new calls; live ones may finish"
    );
    tokio::time::sleep(plan.delay).await;
    if !plan.calls_end_visibly {
        return;
    }
    while calls.active_calls() > 0 && Instant::now() < deadline {
        tokio::time::sleep(POLL).await;
    }
    for id in calls.active() {
        tracing::warn!(call = %id, timeout_s = plan.timeout.as_secs(), "ending a call that outlived the drain");
        if let Err(e) = telnyx.hangup(&id, &command_id()).await {
            tracing::warn!(call = %id, error = %e, "Telnyx refused the hangup; the call is forgotten here anyway");
        }
        calls.ended_here(&id, "drain_timeout", "worker");
    }
    tracing::info!("drained");
}
