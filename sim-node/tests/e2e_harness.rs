//! Proves the test harness: the real controller-manager turns a Deployment into pods, the
//! simulated node runs them, and an injected crash shows up in pod status like a kubelet's.

use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use kube::runtime::{watcher, WatchStreamExt};
use testing::{wait_until, TestNamespace};

fn deployment(replicas: i32) -> Deployment {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": { "name": "web" },
        "spec": {
            "replicas": replicas,
            "selector": { "matchLabels": { "app": "web" } },
            "template": {
                "metadata": { "labels": { "app": "web" } },
                "spec": { "containers": [{ "name": "web", "image": "example.invalid/web:1" }] }
            }
        }
    }))
    .expect("valid deployment")
}

fn ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

fn restarts(pod: &Pod) -> i32 {
    pod.status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .map(|cs| cs.iter().map(|c| c.restart_count).sum())
        .unwrap_or(0)
}

#[tokio::test]
async fn deployment_becomes_ready_and_a_crash_is_visible() {
    let ns = TestNamespace::create("harness").await;
    let deployments = ns.api::<Deployment>();
    let pods = ns.api::<Pod>();
    deployments.create(&PostParams::default(), &deployment(3)).await.expect("create deployment");

    // The controller-manager creates a ReplicaSet owned by the Deployment.
    let rs = wait_until(Duration::from_secs(30), "ReplicaSet", || async {
        ns.api::<ReplicaSet>().list(&ListParams::default()).await.ok()?.items.into_iter().next()
    })
    .await;
    let owner = &rs.metadata.owner_references.as_ref().expect("owner refs")[0];
    assert_eq!((owner.kind.as_str(), owner.name.as_str()), ("Deployment", "web"));

    // The simulated node binds and runs the pods; the Deployment counts them ready.
    wait_until(Duration::from_secs(60), "3 ready replicas", || async {
        let d = deployments.get("web").await.ok()?;
        (d.status?.ready_replicas? == 3).then_some(())
    })
    .await;
    let all = pods.list(&ListParams::default()).await.expect("list pods").items;
    assert_eq!(all.len(), 3);
    for p in &all {
        assert_eq!(p.spec.as_ref().and_then(|s| s.node_name.as_deref()), Some("sim-node"));
        assert!(ready(p), "pod {:?} not ready", p.metadata.name);
        assert_eq!(restarts(p), 0);
    }

    // Inject one crash into one pod and watch it: restartCount rises, Ready drops, then returns.
    let victim = all[0].metadata.name.clone().expect("pod name");
    let cfg = watcher::Config::default().fields(&format!("metadata.name={victim}"));
    let mut stream = watcher(pods.clone(), cfg).applied_objects().boxed();
    let patch =
        serde_json::json!({ "metadata": { "annotations": { dialtone_api::names::sim::FAULT: "crash" } } });
    pods.patch(&victim, &PatchParams::default(), &Patch::Merge(&patch)).await.expect("annotate");

    let mut saw_not_ready_after_crash = false;
    let outcome = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(pod) = stream.try_next().await.expect("watch") {
            if restarts(&pod) == 1 && !ready(&pod) {
                saw_not_ready_after_crash = true;
                let term = pod.status.as_ref().and_then(|s| s.container_statuses.as_ref()).map(|c| {
                    c[0].last_state.clone().and_then(|l| l.terminated).expect("lastState.terminated")
                });
                let term = term.expect("container status");
                assert_eq!((term.reason.as_deref(), term.exit_code), (Some("Error"), 1));
            }
            if saw_not_ready_after_crash && ready(&pod) {
                return restarts(&pod);
            }
        }
        panic!("pod watch ended");
    })
    .await
    .expect("crash then recovery within 30s");
    assert_eq!(outcome, 1, "exactly one restart for one crash");

    // The Deployment is whole again.
    wait_until(Duration::from_secs(30), "3 ready replicas after the crash", || async {
        let d = deployments.get("web").await.ok()?;
        (d.status?.ready_replicas? == 3).then_some(())
    })
    .await;
    ns.delete().await;
}

#[tokio::test]
async fn deleted_pods_are_confirmed_and_replaced() {
    let ns = TestNamespace::create("harness-del").await;
    let deployments = ns.api::<Deployment>();
    let pods = ns.api::<Pod>();
    deployments.create(&PostParams::default(), &deployment(1)).await.expect("create deployment");
    let first = wait_until(Duration::from_secs(60), "a ready pod", || async {
        pods.list(&ListParams::default()).await.ok()?.items.into_iter().find(ready)
    })
    .await;
    let first_name = first.metadata.name.clone().expect("name");
    pods.delete(&first_name, &Default::default()).await.expect("delete pod");
    // Graceful deletion completes (the simulated kubelet confirms it) and a new pod is Ready.
    wait_until(Duration::from_secs(30), "old pod gone and a new one ready", || async {
        let items = pods.list(&ListParams::default()).await.ok()?.items;
        let old_gone = items.iter().all(|p| p.metadata.name.as_deref() != Some(first_name.as_str()));
        (old_gone && items.iter().any(ready)).then_some(())
    })
    .await;
    ns.delete().await;
}
