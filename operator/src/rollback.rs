//! A bad rollout stops at the workers that still serve. A Deployment surges a new worker before it
//! stops an old one, so when a spec change brings workers that crash, the old ones are still
//! serving (and holding live calls) while the new ones use up the restart budget. Opening the
//! circuit then would scale every worker to 0 for one bad change; instead the Deployment goes
//! back to the old workers' template (what `kubectl rollout undo` does), the service reports
//! `Degraded` with `status.rolledBack`, and that template is kept until a new spec generation or
//! the reset annotation tries again. A failure with no serving workers of another template (a
//! first rollout, or every worker crashing) opens the circuit as before.

use std::collections::BTreeMap;

use crate::crd::Failure;
use crate::liveness::PodObservation;

/// The template to go back to when the budget runs out: the one with the most Ready workers among
/// those whose pods did not fail in the window, provided the failures came from pods of another
/// template. None when the failing template is unknown or nothing else serves.
pub fn target(pods: &[PodObservation], failures: &[Failure]) -> Option<String> {
    let template_of = |pod: &str| pods.iter().find(|p| p.name == pod)?.template.clone();
    let failed: Vec<String> = failures.iter().filter_map(|f| template_of(&f.pod)).collect();
    if failed.is_empty() {
        return None;
    }
    let mut serving: BTreeMap<&str, usize> = BTreeMap::new();
    for p in pods.iter().filter(|p| p.ready && !p.deleting) {
        if let Some(t) = p.template.as_deref().filter(|t| !failed.iter().any(|f| f == t)) {
            *serving.entry(t).or_default() += 1;
        }
    }
    serving.into_iter().max_by_key(|(_, ready)| *ready).map(|(t, _)| t.to_string())
}

/// Whether a failure of `pod` counts while rolled back to `kept`: the undone rollout's pods are on
/// their way out, and their last crashes are not the kept workers' failures.
pub fn counts(pods: &[PodObservation], pod: &str, kept: &str) -> bool {
    pods.iter().find(|p| p.name == pod).is_none_or(|p| p.template.as_deref() == Some(kept))
}

pub fn message(generation: i64, failures: usize, window_secs: u64, last: Option<&Failure>) -> String {
    let last =
        last.map(|f| format!(" (last: {} in pod {}: {})", f.reason, f.pod, f.message)).unwrap_or_default();
    format!(
        "the workers of generation {generation} failed {failures} times in {window_secs}s{last}; rolled back \
         to the previous workers, which keep serving. A new spec generation (or the reset annotation) tries again"
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    fn pod(name: &str, template: &str, ready: bool) -> PodObservation {
        PodObservation {
            name: name.into(),
            deleting: false,
            ready,
            not_ready_since: None,
            running: true,
            restarts: 0,
            last_exit: None,
            last_words: None,
            waiting: None,
            unschedulable: None,
            ip: None,
            not_ready_reason: None,
            active_calls: None,
            template: Some(template.into()),
        }
    }

    fn failure(pod: &str) -> Failure {
        Failure {
            reason: "Error".into(),
            message: "exit 2".into(),
            pod: pod.into(),
            at: Time(jiff::Timestamp::UNIX_EPOCH),
        }
    }

    #[test]
    fn a_crashing_rollout_goes_back_to_the_template_that_serves() {
        let pods = [pod("old-1", "aaa", true), pod("old-2", "aaa", true), pod("new-1", "bbb", false)];
        assert_eq!(target(&pods, &[failure("new-1"), failure("new-1")]).as_deref(), Some("aaa"));
        assert!(counts(&pods, "old-1", "aaa"));
        assert!(!counts(&pods, "new-1", "aaa"), "the undone rollout's last crash");
        assert!(counts(&pods, "gone", "aaa"), "a pod no longer seen is not excused");
    }

    #[test]
    fn without_other_serving_workers_there_is_nothing_to_go_back_to() {
        // A first rollout: only the failing template.
        assert_eq!(target(&[pod("new-1", "bbb", false)], &[failure("new-1")]), None);
        // The old workers failed too.
        let pods = [pod("old-1", "aaa", true), pod("new-1", "bbb", false)];
        assert_eq!(target(&pods, &[failure("new-1"), failure("old-1")]), None);
        // The old workers are not Ready, or are leaving.
        let mut leaving = pod("old-1", "aaa", true);
        leaving.deleting = true;
        assert_eq!(
            target(&[pod("old-2", "aaa", false), leaving, pod("new-1", "bbb", false)], &[failure("new-1")]),
            None
        );
        // Failures of pods no longer seen: their template is unknown.
        assert_eq!(target(&[pod("old-1", "aaa", true)], &[failure("gone")]), None);
    }
}
