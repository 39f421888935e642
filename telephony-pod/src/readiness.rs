//! Whether the worker should get traffic: the last Telnyx check, and shutdown. Shutdown has two
//! steps: `shut_down` (SIGTERM: no new calls, live ones drain) and `stop` (drained: streams end,
//! the server stops accepting). Between them, a drain that had to end live calls says so on
//! `/readyz` until the operator has heard it (see `drain`).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::watch;

/// The header the operator sets when it asks a draining worker's `/readyz`. The kubelet's probes
/// keep coming during termination, so only this ask counts as heard.
pub const OPERATOR_ASKS: &str = "x-dialtone-asker";

pub struct Readiness {
    /// None until the first check; then Ok, or why it failed.
    last_check: Mutex<Option<Result<(), String>>>,
    shutting_down: AtomicBool,
    /// What the drain ended at its timeout (the `drain::cut_message`), once it has.
    drain_cut: Mutex<Option<String>>,
    /// The operator asked after `drain_cut` was set.
    heard: watch::Sender<bool>,
    stopped: watch::Sender<bool>,
}

impl Default for Readiness {
    fn default() -> Self {
        Readiness {
            last_check: Mutex::new(None),
            shutting_down: AtomicBool::new(false),
            drain_cut: Mutex::new(None),
            heard: watch::Sender::new(false),
            stopped: watch::Sender::new(false),
        }
    }
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

    pub fn is_shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::SeqCst)
    }

    /// The drain is ending live calls: `/readyz` says so from now on.
    pub fn drain_cut(&self, message: String) {
        if let Ok(mut c) = self.drain_cut.lock() {
            *c = Some(message);
        }
    }

    /// What a draining `/readyz` says: the drain's cut, if any. `by_operator` marks it heard.
    pub fn drain_report(&self, by_operator: bool) -> Option<String> {
        let cut = self.drain_cut.lock().ok()?.clone()?;
        if by_operator {
            self.heard.send_replace(true);
        }
        Some(cut)
    }

    /// Waits until the operator has heard the drain's cut, or `at_most`; whether it heard.
    pub async fn heard_within(&self, at_most: Duration) -> bool {
        let mut rx = self.heard.subscribe();
        tokio::time::timeout(at_most, rx.wait_for(|h| *h)).await.is_ok_and(|r| r.is_ok())
    }

    /// The drain is over: long-lived streams end and the server stops.
    pub fn stop(&self) {
        self.stopped.send_replace(true);
    }

    pub fn is_stopped(&self) -> bool {
        *self.stopped.borrow()
    }

    /// Resolves once `stop` was called.
    pub async fn stopped(&self) {
        let mut rx = self.stopped.subscribe();
        let _ = rx.wait_for(|s| *s).await;
    }

    pub fn problem(&self) -> Option<String> {
        if self.is_shutting_down() {
            return Some("shutting down".into());
        }
        match self.last_check.lock().ok()?.clone() {
            None => Some("waiting for the first Telnyx check".into()),
            Some(Ok(())) => None,
            Some(Err(why)) => Some(why),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn only_the_operators_ask_counts_as_heard() {
        let r = Readiness::default();
        assert_eq!(r.drain_report(true), None, "nothing to hear before a cut");
        assert!(!r.heard_within(Duration::from_millis(10)).await);
        r.drain_cut("drain timeout: ended 1 live call".into());
        assert_eq!(r.drain_report(false).as_deref(), Some("drain timeout: ended 1 live call"));
        assert!(!r.heard_within(Duration::from_millis(10)).await, "the kubelet's probe is not the operator");
        r.drain_report(true);
        assert!(r.heard_within(Duration::from_millis(10)).await);
    }
}
