//! "Every Event matches a real transition", checked from the Events the operators published and
//! the counts the services' statuses and pods agree on. Events are best effort (one may be lost
//! to a cut connection), so each check bounds them from above: an Event that no transition
//! explains is a violation; a missing one is not.
//!
//! - A TelephonyService (one uid: a re-created one is another) has its Deployment and its Service
//!   each created at most once (`Created` is said when the API server answers an apply with 201,
//!   and its note names what was made). A re-created service can take two `Created`: its first
//!   apply can find the old Service still there (200) and the old Deployment already collected
//!   (201), or the other way round.
//! - For the services that only crash (never edited): no more `PodRestarted` and no more
//!   `Degraded` than counted failures (each needs one), and no more `Ready` than counted failures
//!   plus the first (each return to Ready needs a way out of it, which for them is a failure).
//!   Not "Ready after Degraded": a lost `Degraded` Event would make that fail with no bug.

use std::collections::HashMap;

use k8s_openapi::api::events::v1::Event;

/// Events per (uid, reason), a series counted by its length; `Created` is counted per kind its
/// note names ("Created Deployment", "Created Service").
pub fn tally(events: &[Event]) -> HashMap<(String, String), u32> {
    let mut by: HashMap<(String, String), u32> = HashMap::new();
    for e in events {
        let uid = e.regarding.as_ref().and_then(|r| r.uid.clone()).unwrap_or_default();
        let n = e.series.as_ref().map_or(1, |s| u32::try_from(s.count).unwrap_or(1));
        let reason = e.reason.clone().unwrap_or_default();
        let note = e.note.as_deref().unwrap_or_default();
        // "created Deployment and Service x; 1/1 workers ready": what was made comes first.
        let made_part = note.split(';').next().unwrap_or_default();
        let made = ["Deployment", "Service"].into_iter().filter(|kind| made_part.contains(kind));
        let keys: Vec<String> = match reason.as_str() {
            "Created" => made.map(|kind| format!("Created {kind}")).collect(),
            _ => vec![reason],
        };
        for key in keys {
            *by.entry((uid.clone(), key)).or_default() += n;
        }
    }
    by
}

/// One service's check: its uid, name, whether it is in the crash set, and its counted failures.
pub struct Service<'a> {
    pub uid: &'a str,
    pub name: &'a str,
    pub crash_only: bool,
    pub failures: u32,
}

/// The violations among `tally` for `s`.
pub fn check(tally: &HashMap<(String, String), u32>, s: &Service) -> Vec<String> {
    let n = |reason: &str| tally.get(&(s.uid.to_string(), reason.to_string())).copied().unwrap_or(0);
    let mut violations = vec![];
    for made in ["Created Deployment", "Created Service"] {
        if n(made) > 1 {
            violations.push(format!("{}: {made} {} times", s.name, n(made)));
        }
    }
    if s.crash_only {
        for reason in ["PodRestarted", "Degraded"] {
            if n(reason) > s.failures {
                violations.push(format!(
                    "{}: {} {reason} Events for {} counted failures",
                    s.name,
                    n(reason),
                    s.failures
                ));
            }
        }
        if n("Ready") > s.failures + 1 {
            violations.push(format!(
                "{}: {} Ready Events for {} counted failures",
                s.name,
                n("Ready"),
                s.failures
            ));
        }
    }
    violations
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::ObjectReference;
    use k8s_openapi::api::events::v1::EventSeries;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
    use k8s_openapi::jiff::Timestamp;

    fn event(uid: &str, reason: &str, series: Option<i32>) -> Event {
        let note = (reason == "Created").then(|| "created Deployment and Service svc-0-worker".to_string());
        Event {
            note,
            regarding: Some(ObjectReference { uid: Some(uid.into()), ..Default::default() }),
            reason: Some(reason.into()),
            series: series
                .map(|count| EventSeries { count, last_observed_time: MicroTime(Timestamp::now()) }),
            ..Default::default()
        }
    }

    fn service(uid: &str, failures: u32) -> Service<'_> {
        Service { uid, name: "svc-0", crash_only: true, failures }
    }

    #[test]
    fn events_that_transitions_explain_pass() {
        let events = [
            event("a", "Created", None),
            event("a", "Ready", None),
            event("a", "PodRestarted", Some(2)),
            event("a", "Degraded", Some(2)),
            event("a", "Ready", Some(2)),
        ];
        assert!(check(&tally(&events), &service("a", 2)).is_empty());
        // Fewer is allowed: Events are best effort.
        assert!(check(&tally(&events[..2]), &service("a", 2)).is_empty());
    }

    #[test]
    fn an_event_without_its_transition_is_a_violation() {
        let twice = [event("a", "Created", None), event("a", "Created", None)];
        assert_eq!(check(&tally(&twice), &service("a", 0)).len(), 2, "the Deployment and the Service");
        let ready_again = [event("a", "Ready", None), event("a", "Ready", None)];
        assert_eq!(check(&tally(&ready_again), &service("a", 0)).len(), 1);
        // A lost Degraded Event is no violation: the failure it announced was counted.
        assert!(check(&tally(&ready_again), &service("a", 1)).is_empty());
        let degraded = [event("a", "Degraded", Some(3)), event("a", "PodRestarted", Some(3))];
        assert_eq!(check(&tally(&degraded), &service("a", 2)).len(), 2);
        // Another object (a re-created service) has its own count.
        let other = [event("a", "Created", None), event("b", "Created", None)];
        assert!(check(&tally(&other), &service("a", 0)).is_empty());
        // One apply made the Service, the next the Deployment: each made once.
        let mut service_first = event("a", "Created", None);
        service_first.note = Some("created Service svc-0-worker".into());
        let mut deployment_next = event("a", "Created", None);
        deployment_next.note = Some("created Deployment svc-0-worker".into());
        assert!(check(&tally(&[service_first, deployment_next.clone()]), &service("a", 0)).is_empty());
        let again = [event("a", "Created", None), deployment_next];
        assert_eq!(check(&tally(&again), &service("a", 0)), vec!["svc-0: Created Deployment 2 times"]);
    }
}
