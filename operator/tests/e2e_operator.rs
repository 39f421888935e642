//! The operator against the real control plane and the real node: what a user sees with kubectl
//! when worker pods start, are killed, exhaust their budget, get reset, change, or go away. Faults
//! come from the host: a SIGKILL to the worker process, as a segfault or the OOM killer would.

mod common;

use std::time::Duration;

use common::*;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Service;
use kube::api::{Patch, PatchParams, PostParams};
use kube::ResourceExt;
use telephony_operator::crd::{Phase, TelephonyService};
use testing::wait_until;

/// When our field manager last wrote the object (server-side apply), and its generation.
fn our_write(d: &Deployment) -> (Option<String>, Option<i64>) {
    let time = d
        .metadata
        .managed_fields
        .iter()
        .flatten()
        .find(|m| m.manager.as_deref() == Some(telephony_operator::names::MANAGER));
    (time.and_then(|m| m.time.as_ref().map(|t| t.0.to_string())), d.metadata.generation)
}

/// The notes of the operator's `Created` Events (the kubelet's say "Created container …" of pods).
async fn created(ns: &testing::TestNamespace) -> Vec<String> {
    let ours = |e: &k8s_openapi::api::events::v1::Event| {
        e.regarding.as_ref().and_then(|r| r.kind.as_deref()) == Some("TelephonyService")
    };
    events(ns, "Created").await.into_iter().filter(ours).filter_map(|e| e.note).collect()
}

#[tokio::test]
async fn a_service_becomes_ready_and_survives_one_crash() {
    let ns = setup("ready").await;
    let _op = Operator::start(&ns.name);
    create(&ns, &tsvc("calls", serde_json::json!({}))).await;

    // Children exist, owned by the TelephonyService.
    let (deployment, service) =
        wait_until(Duration::from_secs(30), "worker Deployment and Service", || async {
            Some((
                ns.api::<Deployment>().get("calls-worker").await.ok()?,
                ns.api::<Service>().get("calls-worker").await.ok()?,
            ))
        })
        .await;
    for owners in [&deployment.metadata.owner_references, &service.metadata.owner_references] {
        let o = &owners.as_ref().expect("owner")[0];
        assert_eq!(
            (o.kind.as_str(), o.name.as_str(), o.controller),
            ("TelephonyService", "calls", Some(true))
        );
    }

    let t = wait_status(&ns, "calls", 60, "Ready", |s| s.phase == Phase::Ready).await;
    let s = t.status.clone().expect("status");
    assert_eq!((s.ready.as_deref(), s.restarts.as_deref()), (Some("1/1"), Some("0/3")));
    assert_eq!(s.endpoint.as_deref(), Some(format!("http://calls-worker.{}.svc:8080", ns.name).as_str()));
    assert_eq!(condition(&t, "Ready").status, "True");

    // What `kubectl get tsvc` shows (printer columns).
    let out = testing::kubectl(&["get", "tsvc", "-n", &ns.name]);
    let header = out.lines().next().unwrap_or_default();
    for col in ["NAME", "PHASE", "READY", "RESTARTS", "AGE", "MESSAGE"] {
        assert!(header.contains(col), "column {col} missing in:\n{out}");
    }
    let row = out.lines().nth(1).unwrap_or_default();
    assert!(row.contains("Ready") && row.contains("1/1") && row.contains("0/3"), "row: {row}");

    // One crash: Degraded with the failure recorded, then Ready again.
    let pod = worker_pods(&ns, "calls").await[0].name_any();
    kill_worker(&ns, &pod).await;
    let t = wait_status(&ns, "calls", 20, "failure recorded", |s| {
        s.restart_budget.as_ref().is_some_and(|b| b.used == 1)
    })
    .await;
    let lf = t.status.as_ref().and_then(|s| s.last_failure.clone()).expect("lastFailure");
    assert_eq!((lf.reason.as_str(), lf.pod.as_str()), ("Error", pod.as_str()));
    wait_status(&ns, "calls", 20, "Ready after the crash", |s| s.phase == Phase::Ready).await;
    // (No Degraded event is promised here: a kubelet that restarts the worker and sees it Ready
    // before the operator's next look leaves Ready → Ready with the failure recorded.)
    wait_events(&ns, "PodRestarted").await;
    // One Event for the new service: its children, and the outcome its first status waited for.
    let first = "created Deployment and Service calls-worker; 1/1 workers ready";
    assert_eq!(created(&ns).await, vec![first.to_string()]);

    // The Deployment deleted by hand: made again, said once more, and its deleted pod is no failure.
    let uid = deployment.uid();
    ns.api::<Deployment>().delete("calls-worker", &Default::default()).await.expect("delete Deployment");
    wait_until(Duration::from_secs(30), "a new worker Deployment", || async {
        let d = ns.api::<Deployment>().get_opt("calls-worker").await.ok().flatten()?;
        (d.uid() != uid).then_some(())
    })
    .await;
    wait_status(&ns, "calls", 60, "Ready with the new Deployment", |s| {
        s.phase == Phase::Ready && s.restart_budget.as_ref().is_some_and(|b| b.used == 1)
    })
    .await;
    let notes = wait_until(Duration::from_secs(10), "a second Created event", || async {
        Some(created(&ns).await).filter(|notes| notes.len() >= 2)
    })
    .await;
    assert!(notes.iter().any(|n| n.starts_with("created Deployment calls-worker")), "{notes:?}");
    ns.delete().await;
}

#[tokio::test]
async fn four_crashes_exhaust_the_budget_and_the_reset_annotation_recovers() {
    let ns = setup("budget").await;
    let _op = Operator::start(&ns.name);
    create(&ns, &tsvc("calls", serde_json::json!({}))).await;
    wait_status(&ns, "calls", 60, "Ready", |s| s.phase == Phase::Ready).await;
    let pod = worker_pods(&ns, "calls").await[0].name_any();
    // The kubelet restarts each killed worker, with its own CrashLoopBackOff (10 s, 20 s) between.
    for n in 1..=3u32 {
        kill_worker(&ns, &pod).await;
        wait_status(&ns, "calls", 20, "failure counted", |s| {
            s.restart_budget.as_ref().is_some_and(|b| b.used == n)
        })
        .await;
    }
    kill_worker(&ns, &pod).await;
    let t = wait_status(&ns, "calls", 20, "Failed", |s| s.phase == Phase::Failed).await;
    assert_eq!(condition(&t, "RestartBudgetExhausted").status, "True");
    assert_eq!(condition(&t, "Ready").reason, "RestartBudgetExhausted");
    assert!(t.status.as_ref().and_then(|s| s.restart_budget.as_ref()?.resets_at.clone()).is_some());
    let replicas = || async { ns.api::<Deployment>().get("calls-worker").await.ok()?.spec?.replicas };
    wait_until(Duration::from_secs(20), "Deployment scaled to 0", || async {
        (replicas().await? == 0).then_some(())
    })
    .await;
    let warnings = wait_events(&ns, "RestartBudgetExhausted").await;
    assert_eq!(warnings.len(), 1, "one Warning event");
    assert_eq!(warnings[0].type_.as_deref(), Some("Warning"));

    // "reset-failed": a human sets the annotation; the workers come back.
    let reset = telephony_operator::names::RESET_RESTART_BUDGET;
    let patch = serde_json::json!({ "metadata": { "annotations": { reset: "1" } } });
    ns.api::<TelephonyService>()
        .patch("calls", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .expect("reset");
    let t = wait_status(&ns, "calls", 60, "Ready after reset", |s| s.phase == Phase::Ready).await;
    assert_eq!(t.status.and_then(|s| s.restarts).as_deref(), Some("0/3"));
    assert_eq!(replicas().await, Some(1));
    wait_events(&ns, "Resumed").await;
    ns.delete().await;
}

#[tokio::test]
async fn a_spec_change_rolls_the_pods_and_an_unchanged_spec_writes_nothing() {
    let ns = setup("roll").await;
    let _op = Operator::start(&ns.name);
    create(&ns, &tsvc("calls", serde_json::json!({ "replicas": 2 }))).await;
    wait_status(&ns, "calls", 60, "Ready", |s| s.phase == Phase::Ready && s.ready_replicas == 2).await;
    let before: Vec<String> = worker_pods(&ns, "calls").await.iter().map(|p| p.name_any()).collect();
    let deployments = ns.api::<Deployment>();
    let written = our_write(&deployments.get("calls-worker").await.expect("deployment"));

    // Unchanged spec: a no-op update of the TelephonyService makes the operator write nothing.
    let touch = serde_json::json!({ "metadata": { "labels": { "touched": "yes" } } });
    let api = ns.api::<TelephonyService>();
    api.patch("calls", &PatchParams::default(), &Patch::Merge(&touch)).await.expect("touch");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(our_write(&deployments.get("calls-worker").await.expect("deployment")), written);

    // A change of the pod template (an environment variable): new pods, surge first.
    let env =
        serde_json::json!({ "spec": { "pod": { "env": [{ "name": "LOG_FORMAT", "value": "text" }] } } });
    api.patch("calls", &PatchParams::default(), &Patch::Merge(&env)).await.expect("change env");
    wait_until(Duration::from_secs(90), "pods replaced with the new template", || async {
        let pods = worker_pods(&ns, "calls").await;
        let new_env = pods.iter().all(|p| {
            let env = p.spec.as_ref().and_then(|s| s.containers[0].env.clone()).unwrap_or_default();
            env.iter().any(|e| e.name == "LOG_FORMAT" && e.value.as_deref() == Some("text"))
        });
        let all_new = pods.iter().all(|p| !before.contains(&p.name_any()));
        (pods.len() == 2 && new_env && all_new).then_some(())
    })
    .await;
    let t = wait_status(&ns, "calls", 60, "rolled out on generation 2", |s| {
        let rolled = s.conditions.iter().any(|c| c.type_ == "Progressing" && c.status == "False");
        s.phase == Phase::Ready && s.observed_generation == Some(2) && rolled
    })
    .await;
    assert_eq!(t.status.and_then(|s| s.ready).as_deref(), Some("2/2"));
    ns.delete().await;
}

#[tokio::test]
async fn a_missing_secret_is_a_condition_with_a_reason_until_it_exists() {
    let ns = testing::TestNamespace::create("secret").await;
    install_crd(&ns.client).await;
    let _op = Operator::start(&ns.name);
    create(&ns, &tsvc("calls", serde_json::json!({}))).await;
    let t = wait_status(&ns, "calls", 60, "SecretNotFound", |s| {
        s.conditions.iter().any(|c| c.type_ == "Ready" && c.reason == "SecretNotFound")
    })
    .await;
    assert!(condition(&t, "Ready").message.contains("telnyx"), "the message names the Secret");
    assert_ne!(t.status.as_ref().map(|s| s.phase), Some(Phase::Ready));
    // No secret value anywhere in the status: the operator never reads it.
    create_secret(&ns, "telnyx").await;
    wait_status(&ns, "calls", 60, "Ready once the Secret exists", |s| s.phase == Phase::Ready).await;
    let status = serde_json::to_string(&ns.api::<TelephonyService>().get("calls").await.expect("get").status)
        .expect("json");
    assert!(!status.contains("KEY-e2e-not-a-real-key"));
    ns.delete().await;
}

#[tokio::test]
async fn an_invalid_spec_is_a_condition_and_a_warning_event() {
    let ns = setup("invalid").await;
    let _op = Operator::start(&ns.name);
    create(&ns, &tsvc("bad", serde_json::json!({ "image": "Not An Image" }))).await;
    let t = wait_status(&ns, "bad", 30, "InvalidSpec", |s| {
        s.conditions.iter().any(|c| c.type_ == "Ready" && c.reason == "InvalidSpec")
    })
    .await;
    assert!(condition(&t, "Ready").message.contains("spec.image"));
    wait_events(&ns, "InvalidSpec").await;
    assert!(ns.api::<Deployment>().get_opt("bad-worker").await.expect("get").is_none());

    // The schema rejects out-of-bounds values before the operator sees them.
    let err = ns
        .api::<TelephonyService>()
        .create(&PostParams::default(), &tsvc("huge", serde_json::json!({ "replicas": 21 })))
        .await
        .expect_err("replicas 21 is out of bounds");
    assert!(err.to_string().contains("replicas"), "{err}");

    // One malformed object doesn't stop the others.
    create(&ns, &tsvc("good", serde_json::json!({}))).await;
    wait_status(&ns, "good", 60, "good service Ready", |s| s.phase == Phase::Ready).await;
    ns.delete().await;
}

/// A spec our validation passes but the apiserver refuses (a toleration with `Exists` and a
/// value): the user hears it from a Warning Event, once, not once per retry.
#[tokio::test]
async fn a_spec_the_apiserver_refuses_is_one_warning_event() {
    let ns = setup("refused").await;
    let _op = Operator::start(&ns.name);
    let toleration = serde_json::json!([{ "key": "dedicated", "operator": "Exists", "value": "voice" }]);
    create(&ns, &tsvc("calls", serde_json::json!({ "pod": { "tolerations": toleration } }))).await;
    let warned = wait_events(&ns, "ApplyFailed").await;
    let note = warned[0].note.clone().unwrap_or_default();
    assert!(note.starts_with("could not apply Deployment calls-worker"), "{note}");
    assert!(note.contains("toleration") || note.contains("tolerations"), "names the field: {note}");
    assert_eq!(warned[0].type_.as_deref(), Some("Warning"));
    // The retries go on (0.5 s, 1 s, 2 s, 4 s...), the warning doesn't repeat.
    tokio::time::sleep(Duration::from_secs(8)).await;
    assert_eq!(events(&ns, "ApplyFailed").await.len(), 1, "rate-limited to one per 5 min");
    ns.delete().await;
}

#[tokio::test]
async fn deleting_the_service_garbage_collects_its_children() {
    let ns = setup("gc").await;
    let _op = Operator::start(&ns.name);
    create(&ns, &tsvc("calls", serde_json::json!({}))).await;
    wait_status(&ns, "calls", 60, "Ready", |s| s.phase == Phase::Ready).await;
    ns.api::<TelephonyService>().delete("calls", &Default::default()).await.expect("delete");
    wait_until(Duration::from_secs(60), "children and pods gone", || async {
        let d = ns.api::<Deployment>().get_opt("calls-worker").await.ok()?;
        let s = ns.api::<Service>().get_opt("calls-worker").await.ok()?;
        let pods = worker_pods(&ns, "calls").await;
        (d.is_none() && s.is_none() && pods.is_empty()).then_some(())
    })
    .await;
    ns.delete().await;
}

#[tokio::test]
async fn an_operator_restart_neither_loses_nor_double_counts_failures() {
    let ns = setup("restart").await;
    let op = Operator::start(&ns.name);
    create(&ns, &tsvc("calls", serde_json::json!({}))).await;
    wait_status(&ns, "calls", 60, "Ready", |s| s.phase == Phase::Ready).await;
    let pod = worker_pods(&ns, "calls").await[0].name_any();
    kill_worker(&ns, &pod).await;
    wait_status(&ns, "calls", 20, "1 failure", |s| s.restart_budget.as_ref().is_some_and(|b| b.used == 1))
        .await;

    // Kill it mid-way; a crash happens while nobody watches (seen by the kubelet: restart count
    // 2); start it again.
    op.kill().await;
    kill_worker(&ns, &pod).await;
    let pods = ns.api::<k8s_openapi::api::core::v1::Pod>();
    wait_until(Duration::from_secs(60), "the kubelet restarted it", || async {
        let p = pods.get(&pod).await.ok()?;
        (p.status?.container_statuses?.first()?.restart_count == 2).then_some(())
    })
    .await;
    let _op = Operator::start_with(&ns.name, "op-2", &["--leader-elect=false"]);
    let t = wait_status(&ns, "calls", 30, "2 failures", |s| {
        s.restart_budget.as_ref().is_some_and(|b| b.used == 2)
    })
    .await;
    // Stays at 2 after settling: the first crash was not counted again.
    wait_status(&ns, "calls", 30, "Ready", |s| s.phase == Phase::Ready).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let now = ns.api::<TelephonyService>().get("calls").await.expect("get");
    assert_eq!(now.status.as_ref().and_then(|s| s.restarts.clone()).as_deref(), Some("2/3"));
    assert_eq!(t.status.and_then(|s| s.history.failures.first().map(|f| f.pod.clone())), Some(pod));
    ns.delete().await;
}

#[tokio::test]
async fn paused_services_are_left_alone() {
    let ns = setup("paused").await;
    let _op = Operator::start(&ns.name);
    create(&ns, &tsvc("calls", serde_json::json!({}))).await;
    wait_status(&ns, "calls", 60, "Ready", |s| s.phase == Phase::Ready).await;
    let patch = serde_json::json!({ "spec": { "paused": true, "replicas": 3 } });
    ns.api::<TelephonyService>()
        .patch("calls", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .expect("pause");
    wait_status(&ns, "calls", 20, "Paused", |s| s.phase == Phase::Paused).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let d = ns.api::<Deployment>().get("calls-worker").await.expect("deployment");
    assert_eq!(d.spec.and_then(|s| s.replicas), Some(1), "children untouched while paused");
    ns.delete().await;
}
