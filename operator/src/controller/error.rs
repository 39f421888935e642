//! What can go wrong while acting on a decision, and which of it the user should hear about.

use std::time::{Duration, Instant};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("TelephonyService has no namespace")]
    NoNamespace,
    #[error("apply {kind} {name}: {source}")]
    Apply { kind: &'static str, name: String, source: kube::Error },
    #[error("write status: {0}")]
    Status(#[source] kube::Error),
    #[error("restart pod {pod}: {source}")]
    Restart { pod: String, source: kube::Error },
    /// The workers to roll back to have no ReplicaSet (any more): retried, as the pods that
    /// chose them are still there.
    #[error("roll back: no ReplicaSet of {deployment} has pod-template-hash {template}")]
    NoRollbackTarget { deployment: String, template: String },
}

/// One Warning Event per service and reason at most this often: the retries back off to 5 min
/// anyway, and a user needs to hear it once, not per retry.
pub const WARN_EVERY: Duration = Duration::from_secs(300);

impl Error {
    /// The `error` label of `dialtone_reconcile_errors_total`.
    pub fn kind(&self) -> &'static str {
        match self {
            Error::NoNamespace => "no_namespace",
            Error::Apply { .. } => "apply",
            Error::Status(_) => "status",
            Error::Restart { .. } => "restart",
            Error::NoRollbackTarget { .. } => "rollback",
        }
    }

    /// A Warning Event (reason, note) when the user can act on this: the apiserver forbids it
    /// (RBAC, a quota) or refuses what the spec asks for (422). None for what a retry fixes:
    /// conflicts, timeouts, an unreachable apiserver.
    pub fn warning(&self) -> Option<(&'static str, String)> {
        let (reason, what, source) = match self {
            Error::Apply { kind, name, source } => ("ApplyFailed", format!("apply {kind} {name}"), source),
            Error::Status(source) => ("StatusWriteFailed", "write the status".to_string(), source),
            Error::Restart { pod, source } => ("RestartFailed", format!("restart pod {pod}"), source),
            Error::NoNamespace | Error::NoRollbackTarget { .. } => return None,
        };
        match source {
            kube::Error::Api(s) if s.code == 403 || s.code == 422 => Some((
                reason,
                format!(
                    "could not {what}: {} ({}, HTTP {}); retrying with backoff",
                    s.message, s.reason, s.code
                ),
            )),
            _ => None,
        }
    }
}

/// Whether to publish a warning whose last one went out at `last`.
pub fn due(last: Option<Instant>, now: Instant) -> bool {
    last.is_none_or(|at| now.duration_since(at) >= WARN_EVERY)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api(code: u16, reason: &str) -> kube::Error {
        kube::Error::Api(
            kube::core::Status::failure("deployments.apps is forbidden: User cannot patch", reason)
                .with_code(code)
                .boxed(),
        )
    }

    #[test]
    fn what_the_user_can_fix_is_a_warning() {
        let forbidden =
            Error::Apply { kind: "Deployment", name: "calls-worker".into(), source: api(403, "Forbidden") };
        let (reason, note) = forbidden.warning().expect("a warning");
        assert_eq!(reason, "ApplyFailed");
        assert!(
            note.starts_with("could not apply Deployment calls-worker: deployments.apps is forbidden"),
            "{note}"
        );
        assert!(note.contains("HTTP 403"), "{note}");
        let invalid = Error::Restart { pod: "p".into(), source: api(422, "Invalid") };
        assert_eq!(invalid.warning().map(|w| w.0), Some("RestartFailed"));
        assert_eq!(Error::Status(api(403, "Forbidden")).warning().map(|w| w.0), Some("StatusWriteFailed"));
    }

    #[test]
    fn what_a_retry_fixes_is_not() {
        assert!(Error::Status(api(409, "Conflict")).warning().is_none());
        assert!(Error::Apply { kind: "Service", name: "s".into(), source: api(500, "InternalError") }
            .warning()
            .is_none());
        assert!(Error::NoNamespace.warning().is_none());
    }

    #[test]
    fn warnings_are_rate_limited() {
        let now = Instant::now();
        assert!(due(None, now));
        assert!(!due(Some(now), now + Duration::from_secs(60)));
        assert!(due(Some(now), now + WARN_EVERY));
    }
}
