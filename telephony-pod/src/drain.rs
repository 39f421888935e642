//! Graceful drain on SIGTERM: new calls are refused at once (`/readyz` fails, dials get 503 with
//! `Retry-After`, the heartbeat says `draining`), live calls go on until they end or the drain
//! timeout passes, and the ones still live then are hung up with the cause `drain_timeout`. The
//! worker has no access to the Kubernetes API, so it tells the operator how many it ended in two
//! ways: its draining `/readyz` says so until the operator has asked (up to [`LINGER`]), which is
//! what makes the `DrainTimeout` Event dependable; and its termination message (`TERMINATION_LOG`),
//! which the operator sees only if it reads the pod in the moment between exit and removal.

use std::time::Duration;

use tokio::time::Instant;

use crate::api::command_id;
use crate::calls::Calls;
use crate::readiness::Readiness;
use crate::telnyx::Telnyx;

/// How often the drain looks at the live calls.
const POLL: Duration = Duration::from_millis(100);
/// How long a drain that ended calls waits for the operator to hear it. The operator asks a
/// draining worker every 2 s, each ask bounded by 0.5 s: 5 s gives it two chances.
pub const LINGER: Duration = Duration::from_secs(5);

/// What the worker waits for: `delay` always (endpoints drop the pod), then the live calls, up
/// to `timeout` from SIGTERM. Without webhooks the worker never learns that a call ended, so it
/// doesn't wait for calls it can't see end.
pub struct Drain {
    pub delay: Duration,
    pub timeout: Duration,
    pub calls_end_visibly: bool,
    /// Where the drain's outcome is written (the kubelet's `terminationMessagePath`), if anywhere.
    pub termination_log: Option<std::path::PathBuf>,
}

/// The termination message of a drain that ended live calls; the operator's `liveness` reads it.
pub fn cut_message(cut: usize, timeout: Duration) -> String {
    let calls = if cut == 1 { "call" } else { "calls" };
    format!(
        "drain timeout: ended {cut} live {calls} at the end of the {}s drain (hangup cause drain_timeout)",
        timeout.as_secs()
    )
}

pub async fn run(plan: Drain, calls: &Calls, telnyx: &Telnyx, readiness: &Readiness) {
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
    let cut = finish(&plan, calls, telnyx, readiness, deadline).await;
    if cut > 0 {
        tell(&plan, cut, readiness).await;
    }
    tracing::info!(ended_at_timeout = cut, "drained");
}

/// Says how many calls the drain ended: in the termination message, and on `/readyz` until the
/// operator has heard it.
async fn tell(plan: &Drain, cut: usize, readiness: &Readiness) {
    if let Some(path) = &plan.termination_log {
        if let Err(e) = std::fs::write(path, cut_message(cut, plan.timeout)) {
            tracing::warn!(error = %e, path = %path.display(), "could not write the termination message");
        }
    }
    if !readiness.heard_within(LINGER).await {
        tracing::warn!(linger_s = LINGER.as_secs(), "the operator did not ask for the drain's outcome");
    }
}

/// Waits for the live calls up to `deadline`, then ends the rest; how many it ended.
async fn finish(
    plan: &Drain,
    calls: &Calls,
    telnyx: &Telnyx,
    readiness: &Readiness,
    deadline: Instant,
) -> usize {
    while calls.active_calls() > 0 && Instant::now() < deadline {
        tokio::time::sleep(POLL).await;
    }
    let left = calls.active();
    if !left.is_empty() {
        // Said before the hangups, so an ask while they go out never sees 0 calls and no cut.
        readiness.drain_cut(cut_message(left.len(), plan.timeout));
    }
    // Together, so the hangups take one Telnyx request timeout however many calls are left.
    let hangups = left.iter().map(|id| async move {
        tracing::warn!(call = %id, timeout_s = plan.timeout.as_secs(), "ending a call that outlived the drain");
        if let Err(e) = telnyx.hangup(id, &command_id()).await {
            tracing::warn!(call = %id, error = %e, "Telnyx refused the hangup; the call is forgotten here anyway");
        }
        calls.ended_here(id, "drain_timeout", "worker");
    });
    futures::future::join_all(hangups).await;
    left.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_termination_message_says_how_many_calls_the_timeout_ended() {
        let m = cut_message(2, Duration::from_secs(30));
        assert_eq!(
            m,
            "drain timeout: ended 2 live calls at the end of the 30s drain (hangup cause drain_timeout)"
        );
        // The operator recognises it by this prefix (dialtone-api's names::DRAIN_TIMEOUT_MESSAGE).
        assert!(cut_message(1, Duration::ZERO).starts_with("drain timeout: ended 1 live call "));
    }
}
