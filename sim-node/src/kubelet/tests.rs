use super::*;
use k8s_openapi::api::core::v1::PodSpec;
use kube::api::ObjectMeta;

const NODE: &str = "sim-node";

fn t0() -> Timestamp {
    "2026-01-01T00:00:00Z".parse().unwrap()
}

fn at(ms: i64) -> Timestamp {
    t0() + SignedDuration::from_millis(ms)
}

fn pod(node: Option<&str>) -> Pod {
    Pod {
        metadata: ObjectMeta { name: Some("w-1".into()), uid: Some("uid-1".into()), ..Default::default() },
        spec: Some(PodSpec {
            node_name: node.map(str::to_string),
            containers: vec![Container {
                name: "worker".into(),
                image: Some("img:1".into()),
                ..Default::default()
            }],
            ..Default::default()
        }),
        status: None,
    }
}

/// Plans at `now` and applies the plan's effects to the pod, like the runner does.
fn step(pod: &mut Pod, now: Timestamp, last_write: Option<Timestamp>) -> Plan {
    let timing = Timing::default();
    let config_error = pod.metadata.labels.as_ref().and_then(|l| l.get("test/config-error")).cloned();
    let cx = Context {
        node: NODE,
        node_ip: "10.0.0.1",
        timing: &timing,
        now,
        last_status_write: last_write,
        config_error,
    };
    let plan = plan(pod, &cx);
    for action in &plan.actions {
        match action {
            Action::WriteStatus(s) => pod.status = Some((**s).clone()),
            Action::MarkApplied(v) => {
                let ann = pod.metadata.annotations.get_or_insert_with(Default::default);
                match v {
                    Some(v) => ann.insert(FAULT_APPLIED.into(), v.clone()),
                    None => ann.remove(FAULT_APPLIED),
                };
            }
            Action::Bind | Action::ForceDelete => {}
        }
    }
    plan
}

fn annotate(pod: &mut Pod, fault: Option<&str>) {
    let ann = pod.metadata.annotations.get_or_insert_with(Default::default);
    match fault {
        Some(f) => ann.insert(FAULT.into(), f.into()),
        None => ann.remove(FAULT),
    };
}

fn container(pod: &Pod) -> ContainerStatus {
    pod.status.as_ref().unwrap().container_statuses.as_ref().unwrap()[0].clone()
}

fn waiting_reason(pod: &Pod) -> Option<String> {
    container(pod).state.unwrap().waiting.and_then(|w| w.reason)
}

fn pod_ready(pod: &Pod) -> bool {
    let conds = pod.status.as_ref().unwrap().conditions.as_ref().unwrap();
    conds.iter().any(|c| c.type_ == "Ready" && c.status == "True")
}

/// A pod that has been started and is Ready at t = 2500 ms (running at 500 ms, ready 1 s + 1 s
/// of timestamp-resolution padding later).
fn ready_pod() -> Pod {
    let mut p = pod(Some(NODE));
    step(&mut p, at(0), None);
    step(&mut p, at(500), None);
    step(&mut p, at(2500), None);
    assert!(pod_ready(&p));
    p
}

#[test]
fn pending_pod_without_node_is_bound() {
    let p = pod(None);
    assert_eq!(step(&mut p.clone(), at(0), None).actions, vec![Action::Bind]);
}

#[test]
fn pod_for_another_scheduler_or_node_is_left_alone() {
    let mut p = pod(None);
    p.spec.as_mut().unwrap().scheduler_name = Some("other".into());
    assert_eq!(step(&mut p, at(0), None), Plan::default());
    let mut other = pod(Some("real-node"));
    assert_eq!(step(&mut other, at(0), None), Plan::default());
}

#[test]
fn terminating_pod_on_this_node_is_confirmed_deleted() {
    let mut p = ready_pod();
    p.metadata.deletion_timestamp = Some(Time(at(2000)));
    assert_eq!(step(&mut p, at(2000), None).actions, vec![Action::ForceDelete]);
}

#[test]
fn new_pod_goes_creating_then_running_then_ready() {
    let mut p = pod(Some(NODE));
    let plan = step(&mut p, at(0), None);
    assert_eq!(plan.requeue, Some(Duration::from_millis(500)));
    assert_eq!(waiting_reason(&p).as_deref(), Some("ContainerCreating"));
    assert_eq!(p.status.as_ref().unwrap().phase.as_deref(), Some("Pending"));

    let plan = step(&mut p, at(500), None);
    assert_eq!(plan.requeue, Some(Duration::from_millis(1000)));
    assert_eq!(p.status.as_ref().unwrap().phase.as_deref(), Some("Running"));
    assert!(!container(&p).ready);
    assert!(!pod_ready(&p));

    step(&mut p, at(1500), None);
    assert!(!container(&p).ready, "never ready sooner than asked, whatever the timestamp rounding");
    step(&mut p, at(2500), None);
    assert!(container(&p).ready);
    assert!(pod_ready(&p));
    assert!(p.status.as_ref().unwrap().pod_ip.as_deref().unwrap().starts_with("10.244."));
}

#[test]
fn settled_pod_writes_nothing() {
    let mut p = ready_pod();
    let plan = step(&mut p, at(9000), None);
    assert_eq!(plan, Plan::default());
}

#[test]
fn ready_transition_time_moves_only_on_flip() {
    let mut p = ready_pod();
    let ready_since = |p: &Pod| {
        let conds = p.status.as_ref().unwrap().conditions.clone().unwrap();
        conds.into_iter().find(|c| c.type_ == "Ready").unwrap().last_transition_time.unwrap().0
    };
    assert_eq!(ready_since(&p), at(2500));
    annotate(&mut p, Some("crash"));
    step(&mut p, at(5000), None);
    assert_eq!(ready_since(&p), at(5000));
}

#[test]
fn crash_counts_one_restart_then_recovers() {
    let mut p = ready_pod();
    annotate(&mut p, Some("crash"));
    let plan = step(&mut p, at(5000), None);
    assert!(plan.actions.contains(&Action::MarkApplied(Some("crash".into()))));
    let cs = container(&p);
    assert_eq!(cs.restart_count, 1);
    assert!(!cs.ready);
    assert!(!pod_ready(&p));
    let term = cs.last_state.unwrap().terminated.unwrap();
    assert_eq!((term.reason.as_deref(), term.exit_code), (Some("Error"), 1));
    assert_eq!(term.finished_at, Some(Time(at(5000))));

    // The annotation is still set, but the crash was applied: no second restart.
    step(&mut p, at(6000), None);
    assert!(!pod_ready(&p), "not ready for at least the ready delay");
    step(&mut p, at(7000), None);
    assert_eq!(container(&p).restart_count, 1);
    assert!(pod_ready(&p));
}

#[test]
fn crash_again_needs_the_annotation_removed_and_set() {
    let mut p = ready_pod();
    annotate(&mut p, Some("crash"));
    step(&mut p, at(5000), None);
    annotate(&mut p, None);
    let plan = step(&mut p, at(5100), None);
    assert!(plan.actions.contains(&Action::MarkApplied(None)));
    annotate(&mut p, Some("crash"));
    step(&mut p, at(5200), None);
    assert_eq!(container(&p).restart_count, 2);
}

#[test]
fn oom_is_reported_as_oomkilled_137() {
    let mut p = ready_pod();
    annotate(&mut p, Some("oom"));
    step(&mut p, at(5000), None);
    let term = container(&p).last_state.unwrap().terminated.unwrap();
    assert_eq!((term.reason.as_deref(), term.exit_code), (Some("OOMKilled"), 137));
}

#[test]
fn crashloop_backs_off_like_a_kubelet_until_removed() {
    let mut p = ready_pod();
    annotate(&mut p, Some("crashloop"));
    let plan = step(&mut p, at(2000), None);
    assert_eq!(waiting_reason(&p).as_deref(), Some("CrashLoopBackOff"));
    // Dead and waiting: restartCount is still the dead container's attempt, as on a kubelet.
    assert_eq!(container(&p).restart_count, 0);
    assert_eq!(plan.requeue, Some(Duration::from_secs(10)));

    // Before the backoff ends nothing changes; after it, one more crash with a doubled delay.
    assert_eq!(step(&mut p, at(5000), None).actions, vec![]);
    let plan = step(&mut p, at(12_000), None);
    assert_eq!(container(&p).restart_count, 1);
    assert_eq!(plan.requeue, Some(Duration::from_secs(20)));

    annotate(&mut p, None);
    step(&mut p, at(13_000), None);
    assert_eq!(container(&p).restart_count, 2, "started again: a restart");
    assert!(container(&p).state.unwrap().running.is_some());
    step(&mut p, at(15_000), None);
    assert!(pod_ready(&p));
}

#[test]
fn crashloop_delay_is_capped() {
    let t = Timing::default();
    assert_eq!(crashloop_delay(&t, 1), Duration::from_secs(10));
    assert_eq!(crashloop_delay(&t, 3), Duration::from_secs(40));
    assert_eq!(crashloop_delay(&t, 100), Duration::from_secs(300));
}

#[test]
fn notready_holds_while_set() {
    let mut p = ready_pod();
    annotate(&mut p, Some("notready"));
    step(&mut p, at(2000), None);
    assert!(!pod_ready(&p));
    step(&mut p, at(60_000), None);
    assert!(!pod_ready(&p));
    assert_eq!(container(&p).restart_count, 0);
    annotate(&mut p, None);
    step(&mut p, at(61_000), None);
    assert!(pod_ready(&p));
}

#[test]
fn imagepull_goes_errimagepull_then_backoff() {
    let mut p = pod(Some(NODE));
    annotate(&mut p, Some("imagepull"));
    step(&mut p, at(0), None);
    assert_eq!(waiting_reason(&p).as_deref(), Some("ErrImagePull"));
    assert_eq!(p.status.as_ref().unwrap().phase.as_deref(), Some("Pending"));
    // Our own status write comes back as an event at once: no change yet.
    step(&mut p, at(10), Some(at(0)));
    assert_eq!(waiting_reason(&p).as_deref(), Some("ErrImagePull"));
    step(&mut p, at(2000), Some(at(0)));
    assert_eq!(waiting_reason(&p).as_deref(), Some("ImagePullBackOff"));
    annotate(&mut p, None);
    step(&mut p, at(3000), Some(at(2000)));
    step(&mut p, at(5000), Some(at(3000)));
    assert!(pod_ready(&p));
}

#[test]
fn pod_ip_is_stable_and_valid() {
    assert_eq!(pod_ip("abc"), pod_ip("abc"));
    let last: u32 = pod_ip("xyz").rsplit('.').next().unwrap().parse().unwrap();
    assert!((1..=254).contains(&last));
}

#[test]
fn a_missing_secret_keeps_the_container_from_starting_until_it_exists() {
    let mut p = pod(Some(NODE));
    p.metadata.labels =
        Some([("test/config-error".to_string(), "secret \"telnyx\" not found".to_string())].into());
    step(&mut p, at(0), None);
    assert!(needs_start(&p));
    let plan = step(&mut p, at(500), None);
    assert_eq!(waiting_reason(&p).as_deref(), Some("CreateContainerConfigError"));
    let msg = container(&p).state.unwrap().waiting.unwrap().message.unwrap();
    assert_eq!(msg, "secret \"telnyx\" not found");
    assert_eq!(plan.requeue, Some(Duration::from_secs(2)));
    // The Secret appears: the container starts.
    p.metadata.labels = None;
    step(&mut p, at(2500), None);
    assert!(container(&p).state.unwrap().running.is_some());
    assert!(!needs_start(&p));
}
