//! Graceful drain on SIGTERM: new calls are refused at once (`/readyz` fails, dials get 503 with
//! `Retry-After`, the heartbeat says `draining`), live calls go on until they end or the drain
//! timeout passes, and the ones still live then are hung up with the cause `drain_timeout`. How
//! many were is the container's termination message (`TERMINATION_LOG`), so the operator can say
//! so in an Event: the worker has no access to the Kubernetes API, and its exit is its last word.

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
    let cut = finish(&plan, calls, telnyx, deadline).await;
    if let (true, Some(path)) = (cut > 0, &plan.termination_log) {
        if let Err(e) = std::fs::write(path, cut_message(cut, plan.timeout)) {
            tracing::warn!(error = %e, path = %path.display(), "could not write the termination message");
        }
    }
    tracing::info!(ended_at_timeout = cut, "drained");
}

/// Waits for the live calls up to `deadline`, then ends the rest; how many it ended.
async fn finish(plan: &Drain, calls: &Calls, telnyx: &Telnyx, deadline: Instant) -> usize {
    while calls.active_calls() > 0 && Instant::now() < deadline {
        tokio::time::sleep(POLL).await;
    }
    let left = calls.active();
    for id in &left {
        tracing::warn!(call = %id, timeout_s = plan.timeout.as_secs(), "ending a call that outlived the drain");
        if let Err(e) = telnyx.hangup(id, &command_id()).await {
            tracing::warn!(call = %id, error = %e, "Telnyx refused the hangup; the call is forgotten here anyway");
        }
        calls.ended_here(id, "drain_timeout", "worker");
    }
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
