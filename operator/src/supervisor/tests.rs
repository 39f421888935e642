use super::*;
use crate::conditions;
use crate::crd::Phase;
use dialtone_api::fixtures::sample;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

fn t(s: i64) -> Timestamp {
    Timestamp::from_second(1_800_000_000 + s).unwrap()
}

fn pod(name: &str, ready: bool, restarts: i32) -> PodObservation {
    PodObservation {
        name: name.into(),
        deleting: false,
        ready,
        not_ready_since: (!ready).then(|| t(0)),
        running: true,
        restarts,
        last_exit: (restarts > 0).then(|| ("Error".to_string(), 1)),
        last_words: None,
        ip: None,
        not_ready_reason: None,
        active_calls: None,
        template: None,
        waiting: None,
        unschedulable: None,
    }
}

/// What the watch cache would hold of an applied child.
fn child<K: kube::Resource>(obj: &K, status: Option<k8s_openapi::api::apps::v1::DeploymentStatus>) -> Child {
    let status = status.unwrap_or_default();
    Child {
        applied_hash: desired::applied_hash(obj).map(String::from),
        generation: obj.meta().generation,
        rollout: Rollout {
            observed_generation: status.observed_generation,
            updated_replicas: status.updated_replicas,
        },
    }
}

/// Runs one decision and feeds its status back, like successive reconciles do.
struct Sim {
    tsvc: TelephonyService,
    deployment: Option<Deployment>,
    service: Option<Service>,
    backup_up: Option<bool>,
}

impl Sim {
    fn new() -> Sim {
        let mut tsvc = sample();
        tsvc.metadata.generation = Some(1);
        Sim { tsvc, deployment: None, service: None, backup_up: None }
    }

    fn look(&mut self, now: i64, pods: Vec<PodObservation>) -> Decision {
        let d = decide(&Observed {
            tsvc: &self.tsvc,
            deployment: self.deployment.as_ref().map(|d| child(d, d.status.clone())),
            service: self.service.as_ref().map(|s| child(s, None)),
            just_applied: JustApplied::default(),
            pods,
            now: t(now),
            jitter: 0.0,
            backup_up: self.backup_up,
        });
        if let Some(dep) = &d.deployment {
            self.deployment = Some(dep.clone());
        }
        if let Some(svc) = &d.service {
            self.service = Some(svc.clone());
        }
        if !d.status_held {
            self.tsvc.status = Some(d.status.clone());
        }
        d
    }

    fn replicas(&self) -> i32 {
        self.deployment.as_ref().and_then(|d| d.spec.as_ref()?.replicas).unwrap_or(-1)
    }
}

fn reasons(d: &Decision) -> Vec<&'static str> {
    d.events.iter().map(|e| e.reason).collect()
}

fn ready_reason(d: &Decision) -> String {
    d.status.conditions.iter().find(|c| c.type_ == "Ready").unwrap().reason.clone()
}

#[test]
fn a_new_service_gets_its_children_then_goes_ready() {
    let mut sim = Sim::new();
    let first = sim.look(0, vec![]);
    assert!(first.deployment.is_some() && first.service.is_some());
    assert_eq!(first.status.phase, Phase::Progressing);
    assert_eq!(first.status.message.as_deref(), Some("starting workers: 0/1 ready"));
    // "Created" is said from the API server's answer to the apply (see `events::created`).
    assert!(first.events.is_empty());
    assert_eq!(first.status.endpoint.as_deref(), Some("http://calls-worker.shop.svc:8080"));

    let starting = sim.look(1, vec![pod("w-1", false, 0)]);
    assert!(starting.deployment.is_none(), "unchanged spec: nothing to apply");
    assert_eq!(starting.status.phase, Phase::Progressing);

    let ready = sim.look(2, vec![pod("w-1", true, 0)]);
    assert_eq!(ready.status.phase, Phase::Ready);
    assert_eq!(ready.status.ready.as_deref(), Some("1/1"));
    assert_eq!(ready.status.restarts.as_deref(), Some("0/3"));
    assert_eq!(reasons(&ready), vec!["Ready"]);
    assert_eq!(ready_reason(&ready), "AllReplicasReady");
    // Nothing changes: no events, same status.
    let again = sim.look(3, vec![pod("w-1", true, 0)]);
    assert!(again.events.is_empty());
    assert_eq!(again.status, ready.status);
}

/// Each status write costs the API server a write and every watcher an event: starting a service
/// writes two (Progressing, Ready), whatever order the Deployment's and the pod's updates arrive in.
#[test]
fn starting_a_service_writes_two_statuses() {
    let mut sim = Sim::new();
    let mut statuses = vec![sim.look(0, vec![]).status];
    // The Deployment shows up in the cache; no pod yet.
    statuses.push(sim.look(0, vec![]).status);
    // The pod is created; the Deployment then counts it as updated before it is Ready.
    statuses.push(sim.look(1, vec![pod("w-1", false, 0)]).status);
    if let Some(d) = sim.deployment.as_mut() {
        d.metadata.generation = Some(1);
        d.status = Some(k8s_openapi::api::apps::v1::DeploymentStatus {
            observed_generation: Some(1),
            updated_replicas: Some(1),
            replicas: Some(1),
            ..Default::default()
        });
    }
    statuses.push(sim.look(1, vec![pod("w-1", false, 0)]).status);
    statuses.push(sim.look(2, vec![pod("w-1", true, 0)]).status);
    statuses.dedup();
    let phases: Vec<Phase> = statuses.iter().map(|s| s.phase).collect();
    assert_eq!(phases, vec![Phase::Progressing, Phase::Ready]);
    let progressing = |s: &TelephonyServiceStatus| {
        s.conditions.iter().find(|c| c.type_ == "Progressing").map(|c| c.status.clone())
    };
    assert_eq!(progressing(&statuses[0]).as_deref(), Some("True"), "starting workers is progress");
    assert_eq!(progressing(&statuses[1]).as_deref(), Some("False"), "Ready: rollout complete");
}

/// A new service whose workers start within `health.startupTimeoutSeconds` (60 s here) gets one
/// status, the outcome: the first look is not written, and asks to look again by the deadline.
#[test]
fn a_new_service_whose_workers_start_in_time_writes_one_status() {
    let mut sim = Sim::new();
    sim.tsvc.metadata.creation_timestamp = Some(Time(t(0)));
    let mut written = vec![];
    for (now, pods) in [(0, vec![]), (1, vec![pod("w-1", false, 0)]), (2, vec![pod("w-1", true, 0)])] {
        let d = sim.look(now, pods);
        if d.status_held {
            assert!(d.requeue <= Duration::from_millis(60_100 - 1000 * now as u64), "{:?}", d.requeue);
        } else {
            written.push((d.status.phase, reasons(&d)));
        }
    }
    assert_eq!(written, vec![(Phase::Ready, vec!["Ready"])]);
    // Once written, a status is never held again: a new generation's rollout is said at once.
    sim.tsvc.metadata.generation = Some(2);
    sim.tsvc.spec.replicas = 2;
    let rolling = sim.look(3, vec![pod("w-1", true, 0)]);
    assert!(!rolling.status_held);
    assert_eq!(rolling.status.phase, Phase::Progressing);
}

/// Anything but plain starting is written at once; so is "starting" past the startup timeout.
#[test]
fn a_new_service_says_at_once_what_keeps_its_workers_from_starting() {
    let new = || {
        let mut sim = Sim::new();
        sim.tsvc.metadata.creation_timestamp = Some(Time(t(0)));
        sim
    };
    let mut stuck = pod("w-1", false, 0);
    stuck.running = false;
    stuck.waiting = Some(("ImagePullBackOff".into(), "Back-off pulling image".into()));
    let d = new().look(5, vec![stuck]);
    assert_eq!((d.status_held, d.status.phase), (false, Phase::Degraded));
    let d = new().look(5, vec![pod("w-1", false, 1)]);
    assert_eq!((d.status_held, d.status.phase), (false, Phase::Degraded), "a crash");
    let d = new().look(59, vec![]);
    assert!(d.status_held && d.requeue <= Duration::from_millis(1100), "{:?}", d.requeue);
    let d = new().look(60, vec![]);
    assert_eq!((d.status_held, d.status.phase), (false, Phase::Progressing), "an unscheduled pod, 60 s on");
    let mut untimed = Sim::new();
    assert!(!untimed.look(0, vec![]).status_held, "no creation time: nothing to wait by");
}

/// No node takes the worker: the service says so at once, with the scheduler's words, and warns
/// once. It is not a failure: the worker never ran, and a node may yet come.
#[test]
fn a_worker_no_node_takes_is_said_at_once_and_spends_no_budget() {
    let mut sim = Sim::new();
    sim.tsvc.metadata.creation_timestamp = Some(Time(t(0)));
    let mut pending = pod("w-1", false, 0);
    pending.running = false;
    pending.unschedulable = Some("0/1 nodes are available: 1 Insufficient cpu.".into());
    let d = sim.look(1, vec![pending.clone()]);
    assert_eq!((d.status_held, d.status.phase), (false, Phase::Progressing));
    assert_eq!(ready_reason(&d), "Unschedulable");
    let said = "no node takes a worker: 0/1 nodes are available: 1 Insufficient cpu.";
    assert_eq!(d.status.message.as_deref(), Some(format!("starting workers: 0/1 ready; {said}").as_str()));
    assert_eq!(
        d.events.iter().map(|e| (e.reason, e.note.as_str())).collect::<Vec<_>>(),
        [("Unschedulable", said)]
    );
    assert!(d.failures.is_empty() && d.status.restarts.as_deref() == Some("0/3"));
    assert!(reasons(&sim.look(2, vec![pending])).is_empty(), "said once");
    let d = sim.look(3, vec![pod("w-1", true, 0)]);
    assert_eq!((d.status.phase, reasons(&d)), (Phase::Ready, vec!["Ready"]));
}

/// The look that the Service's watch event starts can come before the Deployment's event.
#[test]
fn a_child_applied_but_not_in_the_cache_yet_is_not_applied_again() {
    let tsvc = sample();
    let applied = desired::applied_hash(&desired::deployment(&tsvc, 1)).map(String::from);
    let d = decide(&Observed {
        tsvc: &tsvc,
        deployment: None,
        service: None,
        just_applied: JustApplied { deployment: applied, service: None },
        pods: vec![],
        now: t(0),
        jitter: 0.0,
        backup_up: None,
    });
    assert!(d.deployment.is_none(), "applied a moment ago");
    assert!(d.service.is_some(), "never applied: made");
}

#[test]
fn created_and_ready_in_one_look_are_one_event() {
    let t = sample();
    let ready = |note: &str| Announcement { severity: Severity::Normal, reason: "Ready", note: note.into() };
    let folded = fold_created(created(&t, true, true), vec![ready("1/1 workers ready")]);
    let said: Vec<_> = folded.iter().map(|a| (a.reason, a.note.as_str())).collect();
    assert_eq!(said, vec![("Created", "created Deployment and Service calls-worker; 1/1 workers ready")]);
    let degraded = Announcement { severity: Severity::Warning, reason: "Degraded", note: "stuck".into() };
    let both = fold_created(created(&t, true, false), vec![degraded.clone()]);
    assert_eq!(both.iter().map(|a| a.reason).collect::<Vec<_>>(), vec!["Created", "Degraded"]);
    assert_eq!(fold_created(None, vec![degraded.clone()]), vec![degraded]);
}

/// Under load the controller-manager counts a new pod in the Deployment's status after the pod
/// is Ready: a first rollout is complete with its pods, and the Ready status is written once.
/// A later generation still waits for the Deployment to count its new pods.
#[test]
fn a_first_rollout_is_complete_when_its_workers_are_ready() {
    let mut sim = Sim::new();
    sim.look(0, vec![]);
    sim.look(1, vec![pod("w-1", false, 0)]);
    let deployment_lags = |sim: &mut Sim, generation: i64| {
        if let Some(d) = sim.deployment.as_mut() {
            d.metadata.generation = Some(generation);
            d.status = Some(k8s_openapi::api::apps::v1::DeploymentStatus {
                observed_generation: Some(generation - 1),
                updated_replicas: Some(0),
                ..Default::default()
            });
        }
    };
    deployment_lags(&mut sim, 1);
    let ready = sim.look(2, vec![pod("w-1", true, 0)]).status;
    let progressing = |s: &TelephonyServiceStatus| {
        s.conditions.iter().find(|c| c.type_ == "Progressing").map(|c| c.status.clone())
    };
    assert_eq!(ready.phase, Phase::Ready);
    assert_eq!(progressing(&ready).as_deref(), Some("False"), "the first rollout is its pods");

    deployment_lags(&mut sim, 2);
    let rolling = sim.look(3, vec![pod("w-1", true, 0)]).status;
    assert_eq!(progressing(&rolling).as_deref(), Some("True"), "a new generation waits for the Deployment");
}

#[test]
fn a_crash_degrades_then_recovers_and_is_remembered() {
    let mut sim = Sim::new();
    sim.look(0, vec![pod("w-1", true, 0)]);
    let crashed = sim.look(10, vec![pod("w-1", false, 1)]);
    assert_eq!(crashed.status.phase, Phase::Degraded);
    assert_eq!(reasons(&crashed), vec!["PodRestarted", "Degraded"]);
    let lf = crashed.status.last_failure.clone().unwrap();
    assert_eq!((lf.reason.as_str(), lf.pod.as_str()), ("Error", "w-1"));
    assert_eq!(crashed.status.restart_budget.as_ref().unwrap().used, 1);

    let back = sim.look(11, vec![pod("w-1", true, 1)]);
    assert_eq!(back.status.phase, Phase::Ready);
    assert_eq!(back.status.restarts.as_deref(), Some("1/3"));
    assert!(back.failures.is_empty(), "the same restart is not counted twice");
}

#[test]
fn four_crashes_exhaust_the_budget_and_scale_to_zero_until_reset() {
    let mut sim = Sim::new();
    sim.look(0, vec![pod("w-1", true, 0)]);
    for n in 1..=3 {
        let d = sim.look(n * 10, vec![pod("w-1", false, n as i32)]);
        assert_eq!(d.status.phase, Phase::Degraded);
        assert_eq!(sim.replicas(), 1);
    }
    let failed = sim.look(40, vec![pod("w-1", false, 4)]);
    assert_eq!(failed.status.phase, Phase::Failed);
    assert!(failed.budget_exhausted);
    assert!(reasons(&failed).contains(&"RestartBudgetExhausted"));
    assert_eq!(sim.replicas(), 0, "circuit open: the Deployment is scaled to 0");
    assert_eq!(failed.status.replicas, 0);
    assert!(conditions::is_true(
        &failed.status.conditions,
        conditions::ConditionType::RestartBudgetExhausted
    ));
    assert_eq!(ready_reason(&failed), "RestartBudgetExhausted");
    assert_eq!(failed.status.restart_budget.as_ref().unwrap().resets_at, Some(Time(t(610))));

    // A human resets it: workers come back.
    sim.tsvc.metadata.annotations =
        Some([(crate::names::RESET_RESTART_BUDGET.to_string(), "1".to_string())].into());
    let reset = sim.look(50, vec![]);
    assert_eq!(sim.replicas(), 1);
    assert!(reasons(&reset).contains(&"Resumed"));
    assert_eq!(reset.status.restarts.as_deref(), Some("0/3"));
    let ready = sim.look(51, vec![pod("w-2", true, 0)]);
    assert_eq!(ready.status.phase, Phase::Ready);
}

#[test]
fn the_circuit_half_opens_after_the_window() {
    let mut sim = Sim::new();
    sim.tsvc.spec.restart_budget.max_restarts = 0;
    sim.tsvc.spec.restart_budget.window_seconds = 60;
    sim.look(0, vec![pod("w-1", true, 0)]);
    let failed = sim.look(1, vec![pod("w-1", false, 1)]);
    assert_eq!(failed.status.phase, Phase::Failed);
    assert_eq!(failed.requeue, Duration::from_secs(60), "wakes up when the window has slid");
    let resumed = sim.look(61, vec![]);
    assert!(reasons(&resumed).contains(&"Resumed"));
    assert_eq!(sim.replicas(), 1);
}

#[test]
fn a_missing_secret_is_a_precise_not_ready_reason() {
    let mut sim = Sim::new();
    let mut p = pod("w-1", false, 0);
    p.running = false;
    p.waiting = Some(("CreateContainerConfigError".into(), "secret \"telnyx\" not found".into()));
    let d = sim.look(0, vec![p]);
    assert_eq!(d.status.phase, Phase::Degraded);
    assert_eq!(ready_reason(&d), "SecretNotFound");
    let ready = d.status.conditions.iter().find(|c| c.type_ == "Ready").unwrap();
    assert!(ready.message.contains("telnyx"));
    assert!(d.restart_pods.is_empty());
}

#[test]
fn a_hung_worker_is_restarted_by_the_operator() {
    let mut sim = Sim::new();
    sim.look(0, vec![]);
    let d = sim.look(61, vec![pod("w-1", false, 0)]);
    assert_eq!(d.restart_pods, vec!["w-1".to_string()]);
    assert_eq!(d.failures[0].reason, "ReadinessTimeout");
    // Before the timeout, a wake-up is planned for when it would expire.
    let mut early = Sim::new();
    let d = early.look(30, vec![pod("w-1", false, 0)]);
    assert!(d.restart_pods.is_empty());
    assert_eq!(d.requeue, Duration::from_millis(30_100));
}

#[test]
fn an_invalid_spec_is_reported_once_and_changes_nothing() {
    let mut sim = Sim::new();
    sim.tsvc.spec.image = "Not An Image".into();
    let d = sim.look(0, vec![]);
    assert!(d.deployment.is_none() && d.service.is_none());
    assert_eq!(d.status.phase, Phase::Failed);
    assert_eq!(ready_reason(&d), "InvalidSpec");
    assert_eq!(reasons(&d), vec!["InvalidSpec"]);
    assert!(sim.look(1, vec![]).events.is_empty(), "the same problem is announced once");
}

#[test]
fn paused_leaves_children_alone() {
    let mut sim = Sim::new();
    sim.look(0, vec![pod("w-1", true, 0)]);
    sim.tsvc.spec.paused = true;
    sim.tsvc.spec.replicas = 3;
    sim.tsvc.metadata.generation = Some(2);
    let d = sim.look(1, vec![pod("w-1", true, 0)]);
    assert!(d.deployment.is_none());
    assert_eq!(d.status.phase, Phase::Paused);
    assert_eq!(sim.replicas(), 1);
}

#[test]
fn a_spec_change_rolls_and_clears_history() {
    let mut sim = Sim::new();
    sim.look(0, vec![pod("w-1", true, 0)]);
    sim.look(1, vec![pod("w-1", false, 1)]);
    sim.tsvc.spec.image = "registry.example.com/dialtone/telephony-pod:0.2.0".into();
    sim.tsvc.metadata.generation = Some(2);
    let d = sim.look(2, vec![pod("w-1", true, 1)]);
    assert!(d.deployment.is_some(), "a new template is applied");
    assert_eq!(d.status.restarts.as_deref(), Some("0/3"));
    assert_eq!(d.status.observed_generation, Some(2));
}

#[test]
fn conditions_keep_their_transition_times() {
    let mut sim = Sim::new();
    let a = sim.look(0, vec![pod("w-1", true, 0)]);
    let b = sim.look(100, vec![pod("w-1", true, 0)]);
    assert_eq!(a.status.conditions, b.status.conditions);
}

#[test]
fn losing_ready_workers_without_restarts_is_degraded_not_starting() {
    let mut sim = Sim::new();
    sim.look(0, vec![pod("w-1", true, 0)]);
    let d = sim.look(5, vec![pod("w-1", false, 0)]);
    assert_eq!(d.status.phase, Phase::Degraded);
    assert_eq!(ready_reason(&d), "ReplicasNotReady");
    assert_eq!(d.status.message.as_deref(), Some("0/1 workers ready"));
    // A new generation starts over: not ready yet is "progressing" again.
    sim.tsvc.metadata.generation = Some(2);
    sim.tsvc.spec.image = "registry.example.com/dialtone/telephony-pod:0.2.0".into();
    assert_eq!(sim.look(6, vec![pod("w-2", false, 0)]).status.phase, Phase::Progressing);
}

#[test]
fn a_worker_that_says_why_it_is_not_ready_is_quoted_in_the_status() {
    let mut sim = Sim::new();
    sim.look(0, vec![]);
    let ready = sim.look(1, vec![pod("w-1", true, 0)]);
    assert_eq!(ready.status.phase, Phase::Ready);
    let mut cut_off = pod("w-1", false, 0);
    cut_off.not_ready_reason = Some("Telnyx check failed: Telnyx unreachable".into());
    let d = sim.look(2, vec![cut_off]);
    assert_eq!(d.status.phase, Phase::Degraded);
    let expected = "0/1 workers ready; w-1: Telnyx check failed: Telnyx unreachable";
    assert_eq!(d.status.message.as_deref(), Some(expected));
    assert_eq!(ready_reason(&d), "ReplicasNotReady");
}

/// More than one worker: a PodDisruptionBudget (one at a time); back to one: the budget goes, so
/// a node drain is never blocked for good. A single worker's service makes no budget call at all.
#[test]
fn a_disruption_budget_follows_the_worker_count() {
    let mut sim = Sim::new();
    let single = sim.look(0, vec![]);
    assert_eq!(single.disruption_budget, None, "one worker: no budget, and no call to delete one");
    sim.tsvc.spec.replicas = 3;
    sim.tsvc.metadata.generation = Some(2);
    let scaled = sim.look(1, vec![pod("w-1", true, 0)]);
    let Some(BudgetChange::Apply(pdb)) = &scaled.disruption_budget else {
        panic!("three workers get a budget: {:?}", scaled.disruption_budget)
    };
    let spec = pdb.spec.as_ref().unwrap();
    assert_eq!(spec.max_unavailable, Some(k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(1)));
    assert_eq!(spec.selector.as_ref().unwrap().match_labels, Some(desired::selector_labels(&sim.tsvc)));
    assert_eq!(pdb.metadata.name.as_deref(), Some("calls-worker"));
    assert!(sim.look(2, vec![pod("w-1", true, 0)]).disruption_budget.is_none(), "unchanged: nothing to do");
    sim.tsvc.spec.replicas = 1;
    sim.tsvc.metadata.generation = Some(3);
    assert_eq!(sim.look(3, vec![pod("w-1", true, 0)]).disruption_budget, Some(BudgetChange::Delete));
}

/// A worker told to stop (rollout, scale-in, eviction) drains its calls: counted as draining in the
/// status, never as a failure, and the service stays Ready on the worker that replaced it.
#[test]
fn workers_told_to_stop_are_draining_not_failures() {
    let mut sim = Sim::new();
    sim.look(0, vec![]);
    let mut old = pod("w-old", true, 0);
    old.deleting = true;
    old.running = false;
    old.last_exit = Some(("Completed".into(), 0));
    let d = sim.look(1, vec![old, pod("w-new", true, 0)]);
    assert_eq!(d.status.draining_replicas, 1);
    assert!(d.failures.is_empty());
    assert_eq!(d.status.phase, Phase::Ready);
    assert_eq!(sim.look(2, vec![pod("w-new", true, 0)]).status.draining_replicas, 0);
}

/// A draining worker's live calls are in the status, and the operator looks again soon enough to
/// follow them down (no pod event marks a call's end); once it has exited it goes back to waiting.
#[test]
fn draining_workers_live_calls_are_counted_and_followed() {
    let mut sim = Sim::new();
    sim.look(0, vec![]);
    let draining = |calls| {
        let mut p = pod("w-old", true, 0);
        p.deleting = true;
        p.active_calls = calls;
        p
    };
    let d = sim.look(1, vec![draining(Some(2)), pod("w-new", true, 0)]);
    assert_eq!((d.status.draining_replicas, d.status.draining_calls), (1, 2));
    assert_eq!(d.requeue, Duration::from_secs(2));
    let d = sim.look(2, vec![draining(Some(0)), pod("w-new", true, 0)]);
    assert_eq!((d.status.draining_replicas, d.status.draining_calls), (1, 0));
    assert_eq!(d.requeue, Duration::from_secs(2), "running: its drain may still end calls");
    // Exited, or no answer: counted as draining, its calls unknown (0), no hurry.
    let mut exited = draining(None);
    exited.running = false;
    let d = sim.look(3, vec![exited, pod("w-new", true, 0)]);
    assert_eq!((d.status.draining_replicas, d.status.draining_calls), (1, 0));
    assert!(d.requeue > Duration::from_secs(2));
}

fn with_template(mut p: PodObservation, template: &str) -> PodObservation {
    p.template = Some(template.into());
    p
}

/// A spec change whose workers crash, while the previous workers still serve: the budget running
/// out rolls the Deployment back to them instead of scaling every worker to 0. The service is
/// Degraded (not Failed) with `rolledBack`, the template is left alone for this generation, the
/// kept workers get the whole budget, and the next generation is applied again.
#[test]
fn a_rollout_that_exhausts_the_budget_is_rolled_back_to_the_serving_workers() {
    let mut sim = Sim::new();
    sim.tsvc.spec.replicas = 2;
    let old = |n: &str| with_template(pod(n, true, 0), "aaa");
    sim.look(0, vec![old("w-1"), old("w-2")]);
    sim.tsvc.metadata.generation = Some(2);
    sim.tsvc.spec.pod.env.push(k8s_openapi::api::core::v1::EnvVar {
        name: "SWEEP_PERIOD_SECONDS".into(),
        value: Some("bad".into()),
        ..Default::default()
    });
    let rolling = sim.look(1, vec![old("w-1"), old("w-2")]);
    assert!(rolling.deployment.is_some(), "generation 2 applied");
    let new = |restarts| with_template(pod("w-new", false, restarts), "bbb");
    for n in 1..=3 {
        let d = sim.look(n * 10, vec![old("w-1"), old("w-2"), new(n as i32)]);
        assert_eq!(d.status.restarts, Some(format!("{n}/3")));
        assert!(d.roll_back_to.is_none());
    }
    let undone = sim.look(40, vec![old("w-1"), old("w-2"), new(4)]);
    assert_eq!(undone.roll_back_to.as_deref(), Some("aaa"));
    assert!(!undone.budget_exhausted);
    assert!(undone.deployment.is_none(), "generation 2's template is not applied again");
    assert_eq!(undone.status.phase, Phase::Degraded);
    assert_eq!(undone.status.replicas, 2, "the serving workers stay");
    assert_eq!(reasons(&undone), vec!["PodRestarted", "RolledBack"]);
    let rb = undone.status.rolled_back.clone().expect("rolledBack");
    assert_eq!((rb.generation, rb.pod_template_hash.as_str()), (2, "aaa"));
    assert!(rb.message.contains("failed 4 times"), "{}", rb.message);
    assert_eq!(undone.status.message.as_deref(), Some(rb.message.as_str()));
    assert_eq!(
        undone.status.restarts.as_deref(),
        Some("0/3"),
        "the kept workers start with the whole budget"
    );
    let degraded = undone.status.conditions.iter().find(|c| c.type_ == "Degraded").unwrap();
    assert_eq!(degraded.reason, "RolledBack");
    let progressing = undone.status.conditions.iter().find(|c| c.type_ == "Progressing").unwrap();
    assert_eq!((progressing.status.as_str(), progressing.reason.as_str()), ("False", "RolledBack"));

    // The failing pod's last crash on its way out counts for nothing; the kept workers do.
    let after = sim.look(41, vec![old("w-1"), old("w-2"), new(5)]);
    assert_eq!(after.status.restarts.as_deref(), Some("0/3"));
    assert!(after.roll_back_to.is_none() && after.deployment.is_none() && after.events.is_empty());
    assert_eq!(after.status.phase, Phase::Degraded, "still not the spec's workers");
    let kept_crash = sim.look(42, vec![with_template(pod("w-1", false, 1), "aaa"), old("w-2")]);
    assert_eq!(kept_crash.status.restarts.as_deref(), Some("1/3"));

    // A new generation tries the spec again, with a fresh budget.
    sim.tsvc.metadata.generation = Some(3);
    sim.tsvc.spec.pod.env.clear();
    let retry = sim.look(50, vec![old("w-1"), old("w-2")]);
    assert!(retry.deployment.is_some(), "generation 3 applied");
    assert_eq!(retry.status.rolled_back, None);
}

/// With no other workers serving (a first rollout, or the old ones failing too), the budget opens
/// the circuit as before: nothing to go back to.
#[test]
fn without_serving_workers_of_another_template_the_circuit_opens() {
    let mut sim = Sim::new();
    sim.look(0, vec![]);
    for n in 1..=4 {
        sim.look(n * 10, vec![with_template(pod("w-1", false, n as i32), "bbb")]);
    }
    assert_eq!(sim.tsvc.status.as_ref().unwrap().phase, Phase::Failed);
    assert_eq!(sim.replicas(), 0);
    assert_eq!(sim.tsvc.status.as_ref().unwrap().rolled_back, None);
}

/// While rolled back, the circuit still bounds the kept workers: it scales the Deployment
/// (replicas only, the template untouched) to 0 and back.
#[test]
fn a_rolled_back_service_whose_kept_workers_fail_scales_without_touching_the_template() {
    let mut sim = Sim::new();
    sim.tsvc.spec.restart_budget.max_restarts = 0;
    sim.tsvc.spec.restart_budget.window_seconds = 60;
    let old = |n: &str, ready, r| with_template(pod(n, ready, r), "aaa");
    sim.look(0, vec![old("w-1", true, 0)]);
    sim.tsvc.metadata.generation = Some(2);
    sim.look(1, vec![old("w-1", true, 0)]);
    let undone = sim.look(2, vec![old("w-1", true, 0), with_template(pod("w-new", false, 1), "bbb")]);
    assert_eq!(undone.roll_back_to.as_deref(), Some("aaa"));
    let open = sim.look(3, vec![old("w-1", false, 1)]);
    assert_eq!(open.status.phase, Phase::Failed);
    assert_eq!(open.scale_workers, Some(0));
    assert!(open.deployment.is_none());
    let half_open = sim.look(200, vec![]);
    assert_eq!(half_open.scale_workers, Some(1));
    assert!(half_open.deployment.is_none());
}

/// `spec.failover`: the primary's calls go to the backup when it can't take them (an Event), and
/// come back once it has been Ready for the hold-down (another Event).
#[test]
fn failover_and_failback_are_recorded_and_announced_once_each() {
    let mut sim = Sim::new();
    sim.tsvc.spec.restart_budget.max_restarts = 0;
    sim.tsvc.spec.failover =
        Some(crate::crd::FailoverSpec { service: "calls-b".into(), namespace: None, hold_down_seconds: 30 });
    sim.backup_up = Some(true);
    let starting = sim.look(0, vec![pod("w-1", false, 0)]);
    assert_eq!(starting.status.failover.as_ref().map(|f| f.active), Some(false), "starting is not failing");
    assert!(!reasons(&starting).contains(&"FailedOver"));
    let ready = sim.look(1, vec![pod("w-1", true, 0)]);
    assert_eq!(ready.status.failover.as_ref().map(|f| f.active), Some(false));
    let failed = sim.look(10, vec![pod("w-1", false, 1)]);
    assert_eq!(failed.status.phase, Phase::Failed);
    assert_eq!(failed.status.failover.as_ref().map(|f| f.active), Some(true));
    let over = failed.events.iter().find(|e| e.reason == "FailedOver").expect("FailedOver");
    assert!(over.note.starts_with("calls go to the backup shop/calls-b: "), "{}", over.note);
    assert!(!reasons(&sim.look(11, vec![])).contains(&"FailedOver"), "once");

    sim.tsvc.metadata.annotations =
        Some([(crate::names::RESET_RESTART_BUDGET.to_string(), "1".to_string())].into());
    sim.look(20, vec![]);
    let back_up = sim.look(21, vec![pod("w-2", true, 0)]);
    assert_eq!(back_up.status.failover.as_ref().map(|f| f.active), Some(true), "held down");
    assert_eq!(back_up.requeue, Duration::from_secs(31));
    let back = sim.look(51, vec![pod("w-2", true, 0)]);
    assert_eq!(back.status.failover.as_ref().map(|f| f.active), Some(false));
    let note = &back.events.iter().find(|e| e.reason == "FailedBack").expect("FailedBack").note;
    assert_eq!(note, "calls come back: Ready for 30s (spec.failover.holdDownSeconds)");
}

/// A drain that ended live calls at its timeout is announced once, in the worker's own words (its
/// termination message), while its pod is seen; a drain that ended cleanly is not.
#[test]
fn calls_ended_by_a_drain_timeout_are_announced_once() {
    let mut sim = Sim::new();
    sim.look(0, vec![pod("w-1", true, 0)]);
    let words = "drain timeout: ended 1 live call at the end of the 3s drain (hangup cause drain_timeout)";
    let drained = |words: &str| {
        let mut p = pod("w-1", false, 0);
        (p.deleting, p.running, p.last_exit) = (true, false, Some(("Completed".into(), 0)));
        p.last_words = Some(words.into());
        p
    };
    let d = sim.look(1, vec![drained(words), pod("w-2", true, 0)]);
    let cut: Vec<_> = d.events.iter().filter(|e| e.reason == "DrainTimeout").collect();
    assert_eq!(cut.len(), 1);
    assert_eq!(cut[0].note, format!("worker pod w-1: {words}"));
    assert!(d.failures.is_empty(), "a drain is not a failure");
    let again = sim.look(2, vec![drained(words), pod("w-2", true, 0)]);
    assert!(!reasons(&again).contains(&"DrainTimeout"), "once per pod");
    let gone = sim.look(3, vec![pod("w-2", true, 0)]);
    assert!(gone.status.history.drains_announced.is_empty(), "forgotten with its pod");
    let clean = sim.look(4, vec![drained("bye"), pod("w-2", true, 0)]);
    assert!(!reasons(&clean).contains(&"DrainTimeout"));
}

/// The dependable path: the draining worker says what its drain ended on `/readyz` (asked every
/// 2 s while it runs) before it exits, and the operator announces that once; the exit's
/// termination message for the same pod adds nothing.
#[test]
fn a_drain_cut_heard_from_the_running_worker_is_announced_once() {
    let mut sim = Sim::new();
    sim.look(0, vec![pod("w-1", true, 0)]);
    let words = "drain timeout: ended 2 live calls at the end of the 3s drain (hangup cause drain_timeout)";
    let mut draining = pod("w-1", false, 0);
    (draining.deleting, draining.active_calls) = (true, Some(1));
    let asking = sim.look(1, vec![draining.clone(), pod("w-2", true, 0)]);
    assert_eq!(asking.requeue, Duration::from_secs(2), "asked again while it drains");
    assert!(!reasons(&asking).contains(&"DrainTimeout"));
    (draining.active_calls, draining.not_ready_reason) = (Some(0), Some(words.into()));
    let cut = sim.look(3, vec![draining.clone(), pod("w-2", true, 0)]);
    let notes: Vec<_> = cut.events.iter().filter(|e| e.reason == "DrainTimeout").map(|e| &e.note).collect();
    assert_eq!(notes, [&format!("worker pod w-1: {words}")]);
    assert_eq!(cut.requeue, Duration::from_secs(2), "still running: still asked");
    (draining.running, draining.last_words) = (false, Some(words.into()));
    let exited = sim.look(4, vec![draining, pod("w-2", true, 0)]);
    assert!(!reasons(&exited).contains(&"DrainTimeout"), "once per pod");
    assert!(exited.requeue > Duration::from_secs(2), "an exited worker is not asked");
}

#[test]
fn created_is_said_for_what_the_api_server_created() {
    let t = sample();
    let note = |d, s| created(&t, d, s).map(|a| (a.reason, a.note));
    assert_eq!(note(true, true), Some(("Created", "created Deployment and Service calls-worker".into())));
    assert_eq!(note(true, false), Some(("Created", "created Deployment calls-worker".into())));
    assert_eq!(note(false, true), Some(("Created", "created Service calls-worker".into())));
    assert_eq!(note(false, false), None, "an update of what exists is no creation");
}
