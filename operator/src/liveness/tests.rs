use super::*;
use k8s_openapi::api::core::v1::Pod;

fn now() -> Timestamp {
    "2026-01-01T00:10:00Z".parse().unwrap()
}

fn secs_ago(s: i64) -> Timestamp {
    now() - jiff::SignedDuration::from_secs(s)
}

fn healthy(name: &str) -> PodObservation {
    PodObservation {
        name: name.into(),
        deleting: false,
        ready: true,
        not_ready_since: None,
        running: true,
        restarts: 0,
        last_exit: None,
        last_words: None,
        ip: None,
        not_ready_reason: None,
        active_calls: None,
        template: None,
        waiting: None,
        unschedulable: None,
    }
}

const TIMEOUT: Duration = Duration::from_secs(60);

#[test]
fn healthy_pods_have_no_failures_and_need_no_records() {
    let d = detect(&[healthy("a"), healthy("b")], &[], TIMEOUT, now());
    assert!(d.failures.is_empty());
    assert!(d.records.is_empty(), "nothing counted yet: nothing to persist");
    assert!(d.hung.is_empty());
}

#[test]
fn a_counted_pod_keeps_its_record_and_a_gone_pod_loses_it() {
    let mut a = healthy("a");
    a.restarts = 2;
    let known = [
        PodRecord { pod: "a".into(), restarts: 2, ..Default::default() },
        PodRecord { pod: "gone".into(), restarts: 1, ..Default::default() },
    ];
    let d = detect(&[a, healthy("b")], &known, TIMEOUT, now());
    assert!(d.failures.is_empty());
    assert_eq!(d.records, vec![PodRecord { pod: "a".into(), restarts: 2, ..Default::default() }]);
}

#[test]
fn a_restart_counts_once_with_its_reason() {
    let mut p = healthy("a");
    p.restarts = 1;
    p.last_exit = Some(("OOMKilled".into(), 137));
    let d = detect(std::slice::from_ref(&p), &[], TIMEOUT, now());
    assert_eq!(d.failures.len(), 1);
    assert_eq!(d.failures[0].reason, "OOMKilled");
    assert_eq!(d.failures[0].pod, "a");
    assert!(d.failures[0].message.contains("137"));
    // Seen again with the records from the first pass: nothing new.
    let again = detect(&[p], &d.records, TIMEOUT, now());
    assert!(again.failures.is_empty());
}

#[test]
fn two_restarts_between_looks_are_two_failures() {
    let mut p = healthy("a");
    p.restarts = 3;
    let known = [PodRecord { pod: "a".into(), restarts: 1, ..Default::default() }];
    assert_eq!(detect(&[p], &known, TIMEOUT, now()).failures.len(), 2);
}

#[test]
fn a_crash_loop_is_named_by_its_cause() {
    let mut p = healthy("a");
    p.ready = false;
    p.running = false;
    p.restarts = 1;
    p.last_exit = Some(("Error".into(), 1));
    p.waiting = Some(("CrashLoopBackOff".into(), "back-off 10s".into()));
    let d = detect(&[p], &[], TIMEOUT, now());
    assert_eq!(d.failures[0].reason, "Error");
    assert!(d.failures[0].message.contains("CrashLoopBackOff"), "{}", d.failures[0].message);
}

#[test]
fn image_pull_counts_once_per_episode() {
    let mut p = healthy("a");
    p.ready = false;
    p.running = false;
    p.waiting = Some(("ErrImagePull".into(), "not found".into()));
    let d1 = detect(std::slice::from_ref(&p), &[], TIMEOUT, now());
    assert_eq!(d1.failures.len(), 1);
    p.waiting = Some(("ImagePullBackOff".into(), "Back-off".into()));
    let d2 = detect(std::slice::from_ref(&p), &d1.records, TIMEOUT, now());
    assert!(d2.failures.is_empty(), "ImagePullBackOff continues the same episode");
    // Fixed, then broken again: a new episode.
    let d3 = detect(&[healthy("a")], &d2.records, TIMEOUT, now());
    let d4 = detect(&[p], &d3.records, TIMEOUT, now());
    assert_eq!(d4.failures.len(), 1);
}

#[test]
fn missing_secret_is_a_failure_with_the_kubelet_message() {
    let mut p = healthy("a");
    p.ready = false;
    p.running = false;
    p.waiting = Some(("CreateContainerConfigError".into(), "secret \"telnyx\" not found".into()));
    let d = detect(&[p], &[], TIMEOUT, now());
    assert_eq!(d.failures[0].reason, "CreateContainerConfigError");
    assert!(d.failures[0].message.contains("telnyx"));
    assert!(d.hung.is_empty(), "a restart would not fix a missing Secret");
}

#[test]
fn the_kubelets_own_cache_timeout_is_not_a_failure() {
    let mut p = healthy("a");
    p.ready = false;
    p.running = false;
    let hiccup = "failed to sync secret cache: timed out waiting for the condition";
    p.waiting = Some(("CreateContainerConfigError".into(), hiccup.into()));
    let d = detect(std::slice::from_ref(&p), &[], TIMEOUT, now());
    assert!(d.failures.is_empty() && d.records.is_empty(), "{d:?}");
    // A real configuration error right after it still counts.
    p.waiting = Some(("CreateContainerConfigError".into(), "secret \"telnyx\" not found".into()));
    assert_eq!(detect(&[p], &d.records, TIMEOUT, now()).failures.len(), 1);
}

#[test]
fn running_but_not_ready_past_the_timeout_is_hung() {
    let mut p = healthy("a");
    p.ready = false;
    p.not_ready_since = Some(secs_ago(61));
    let d = detect(std::slice::from_ref(&p), &[], TIMEOUT, now());
    assert_eq!(d.hung, vec!["a".to_string()]);
    assert!(d.failures.is_empty(), "counted when the operator restarts it");
    p.not_ready_since = Some(secs_ago(59));
    assert!(detect(&[p], &[], TIMEOUT, now()).hung.is_empty());
}

#[test]
fn terminating_and_vanished_pods_are_forgotten() {
    let mut gone = healthy("a");
    gone.deleting = true;
    gone.restarts = 5;
    let known = [PodRecord { pod: "a".into(), restarts: 0, ..Default::default() }];
    let d = detect(&[gone], &known, TIMEOUT, now());
    assert!(d.failures.is_empty());
    assert!(d.records.is_empty());
}

#[test]
fn observation_from_a_crashed_pod() {
    let pod: Pod = serde_json::from_value(serde_json::json!({
        "metadata": { "name": "w-1", "creationTimestamp": "2026-01-01T00:00:00Z" },
        "status": {
            "startTime": "2026-01-01T00:00:00Z",
            "conditions": [{ "type": "Ready", "status": "False", "lastTransitionTime": "2026-01-01T00:05:00Z" }],
            "containerStatuses": [{
                "name": "worker", "image": "i", "imageID": "", "ready": false, "restartCount": 2,
                "state": { "waiting": { "reason": "CrashLoopBackOff", "message": "back-off" } },
                "lastState": { "terminated": { "reason": "OOMKilled", "exitCode": 137 } }
            }]
        }
    }))
    .unwrap();
    let o = PodObservation::from_pod(&pod);
    assert_eq!(o.name, "w-1");
    assert!(!o.ready && !o.running && !o.deleting);
    // Restarted twice, and the third container is dead, waiting out its back-off: three exits.
    assert_eq!(o.restarts, 3);
    assert_eq!(o.last_exit, Some(("OOMKilled".into(), 137)));
    assert_eq!(o.waiting.as_ref().map(|w| w.0.as_str()), Some("CrashLoopBackOff"));
    assert_eq!(o.not_ready_since, Some("2026-01-01T00:05:00Z".parse().unwrap()));
}

/// What kube-scheduler writes on a pod no node takes (as `kubectl get pod -o yaml` shows it).
#[test]
fn observation_from_a_pod_no_node_takes() {
    let pod: Pod = serde_json::from_value(serde_json::json!({
        "metadata": { "name": "w-1", "creationTimestamp": "2026-01-01T00:00:00Z" },
        "status": { "phase": "Pending", "conditions": [{
            "type": "PodScheduled", "status": "False", "reason": "Unschedulable",
            "message": "0/1 nodes are available: 1 Insufficient cpu.",
            "lastTransitionTime": "2026-01-01T00:00:00Z"
        }] }
    }))
    .unwrap();
    let o = PodObservation::from_pod(&pod);
    assert_eq!(o.unschedulable.as_deref(), Some("0/1 nodes are available: 1 Insufficient cpu."));
    assert!(!o.ready && !o.running && o.waiting.is_none() && o.restarts == 0);
    assert_eq!(PodObservation::from_pod(&Pod::default()).unschedulable, None);
}

/// The statuses a real kubelet wrote around `kill -9` (scripts/cluster.sh's real node): running,
/// then `terminated` with restartCount unchanged for as long as the back-off lasts, then running
/// again with restartCount + 1.
#[test]
fn a_kill_counts_when_the_container_dies_and_the_restart_adds_nothing() {
    let status = |restarts: i32, state: serde_json::Value, last: serde_json::Value| -> Pod {
        serde_json::from_value(serde_json::json!({
            "metadata": { "name": "w" },
            "status": { "containerStatuses": [{ "name": "worker", "image": "i", "imageID": "",
                "ready": false, "restartCount": restarts, "state": state, "lastState": last }] }
        }))
        .unwrap()
    };
    let killed = serde_json::json!({ "terminated": { "reason": "Error", "exitCode": 137 } });
    let running = serde_json::json!({ "running": {} });
    let timeline = [
        status(1, running.clone(), killed.clone()),
        status(1, killed.clone(), killed.clone()),
        status(1, killed.clone(), killed.clone()),
        status(2, running, killed),
    ];
    let mut known = vec![PodRecord { pod: "w".into(), restarts: 1, ..Default::default() }];
    let mut counted = vec![];
    for pod in &timeline {
        let d = detect(&[PodObservation::from_pod(pod)], &known, TIMEOUT, now());
        counted.push(d.failures.len());
        known = d.records;
    }
    assert_eq!(counted, [0, 1, 0, 0], "one kill, one failure, at the kill");
}

#[test]
fn the_last_words_of_an_exited_worker_are_in_the_failure() {
    let mut p = healthy("a");
    p.restarts = 1;
    p.last_exit = Some(("Error".into(), 2));
    let long = "x".repeat(500);
    p.last_words = Some("telephony-pod: invalid configuration: TELNYX_TIMEOUT_MS: not a number".into());
    let d = detect(std::slice::from_ref(&p), &[], TIMEOUT, now());
    assert_eq!(
        d.failures[0].message,
        "container exited: Error (exit code 2); restart count 1: telephony-pod: invalid configuration: \
         TELNYX_TIMEOUT_MS: not a number"
    );
    let pod: Pod = serde_json::from_value(serde_json::json!({
        "metadata": { "name": "w" },
        "status": { "containerStatuses": [{ "name": "worker", "image": "i", "imageID": "", "ready": false,
            "restartCount": 0, "state": { "terminated": { "exitCode": 2, "message": format!("first\n{long}\n\n") } } }] }
    }))
    .unwrap();
    let words = PodObservation::from_pod(&pod).last_words.unwrap_or_default();
    assert_eq!(words.len(), 200, "the last non-empty line, cut short");
}
