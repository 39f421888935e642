//! Real faults on the real node, each as a user sees it: the TelephonyService status, its Events,
//! the readiness answer, and the restart budget counting the fault exactly once. Faults come from
//! the host (signals to the worker process, a stopped Telnyx, a memory limit), never from
//! annotations.

mod common;

use std::time::Duration;

use common::*;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Pod, Service};
use kube::ResourceExt;
use serde_json::json;
use telephony_operator::crd::Phase;
use testing::{node, wait_until, TestNamespace};

/// A namespace with the operator, a readiness service, and the TelephonyService `calls`.
struct Scene {
    ns: TestNamespace,
    _op: Operator,
    readiness: ReadinessProcess,
}

impl Scene {
    async fn new(prefix: &str, spec: serde_json::Value) -> Scene {
        let ns = setup(prefix).await;
        let op = Operator::start(&ns.name);
        let readiness = ReadinessProcess::start(&ns.name, &testing::kubeconfig_path(), "10s");
        create(&ns, &tsvc("calls", spec)).await;
        Scene { ns, _op: op, readiness }
    }

    async fn ready(&self) {
        wait_status(&self.ns, "calls", 90, "Ready", |s| s.phase == Phase::Ready).await;
        until_code(&self.readiness, &self.ns.name, 200, 10).await;
    }

    async fn pod(&self) -> String {
        worker_pods(&self.ns, "calls").await[0].name_any()
    }

    async fn restart_count(&self, pod: &str) -> i32 {
        let p = self.ns.api::<Pod>().get(pod).await.expect("pod");
        p.status
            .and_then(|s| s.container_statuses)
            .and_then(|c| c.first().map(|c| c.restart_count))
            .unwrap_or(0)
    }
}

/// Kubelet Events about one pod with `reason` (core/v1 Events, read through events.k8s.io/v1),
/// once one contains `text`: the kubelet records them asynchronously, after the status.
async fn pod_events(ns: &TestNamespace, pod: &str, reason: &str, text: &str) -> Vec<String> {
    wait_until(Duration::from_secs(30), &format!("a {reason} event saying {text:?}"), || async {
        let notes: Vec<String> = events(ns, reason)
            .await
            .into_iter()
            .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(pod))
            .filter_map(|e| e.note)
            .collect();
        notes.iter().any(|n| n.contains(text)).then_some(notes)
    })
    .await
}

#[tokio::test]
async fn a_killed_worker_process_exits_137_is_counted_once_and_recovers() {
    let s = Scene::new("kill", json!({})).await;
    s.ready().await;
    let pod = s.pod().await;
    kill_worker(&s.ns, &pod).await;
    let t = counted_exactly(&s.ns, "calls", 1, 30, Duration::from_secs(3)).await;
    let lf = t.status.and_then(|s| s.last_failure).expect("lastFailure");
    assert_eq!((lf.reason.as_str(), lf.pod.as_str()), ("Error", pod.as_str()));
    assert!(lf.message.contains("exit code 137"), "{}", lf.message);
    s.ready().await;
    wait_events(&s.ns, "PodRestarted").await;
    assert_eq!(used(&s.ns, "calls").await, 1, "recovery counts nothing");
    // The app's view: available again, with the failure in the answer. (How fast it saw the worker
    // down is measured by `dialtone-bench real-detection`: the kubelet may restart a worker and see
    // it Ready within a second or two, before a busy operator looks.)
    let (_, body) = until_code(&s.readiness, &s.ns.name, 200, 10).await;
    assert_eq!(
        (body["restarts"]["used"].as_u64(), body["lastFailure"]["reason"].as_str()),
        (Some(1), Some("Error"))
    );
    s.ns.delete().await;
}

#[tokio::test]
async fn a_worker_over_its_memory_limit_is_oom_killed() {
    // A 16 MiB limit, and a worker that grows past it (the worker's test-only leak: a limit
    // below its 1.1 MiB would kill runc's init instead of the worker).
    let spec = json!({
        "resources": { "requests": { "memory": "16Mi" }, "limits": { "memory": "16Mi" } },
        "pod": { "env": [{ "name": "DIALTONE_TEST_LEAK_MIB", "value": "64" }] }
    });
    let s = Scene::new("oom", spec).await;
    let t = wait_status(&s.ns, "calls", 90, "a failure counted", |s| {
        s.restart_budget.as_ref().is_some_and(|b| b.used >= 1)
    })
    .await;
    let first = t.status.as_ref().and_then(|s| s.history.failures.first().cloned()).expect("a failure");
    assert_eq!(first.reason, "OOMKilled", "{first:?}");
    assert!(first.message.contains("exit code 137"), "{}", first.message);
    assert_ne!(t.status.map(|s| s.phase), Some(Phase::Ready));
    until_code(&s.readiness, &s.ns.name, 503, 10).await;
    // A worker that stays down: Degraded, with its Event.
    wait_events(&s.ns, "Degraded").await;
    s.ns.delete().await;
}

#[tokio::test]
async fn a_stopped_worker_fails_its_liveness_probe_and_is_restarted_once() {
    let s = Scene::new("hang", json!({})).await;
    s.ready().await;
    let pod = s.pod().await;
    node::signal_container(&s.ns.api::<Pod>(), &pod, node::SIGSTOP).await;
    // Liveness every 2 s, 3 failures, then the kubelet's SIGTERM, which a stopped process can't
    // act on: the grace period (30 s) runs out and SIGKILL ends it.
    until_code(&s.readiness, &s.ns.name, 503, 20).await;
    wait_until(Duration::from_secs(90), "the kubelet restarted the hung worker", || async {
        (s.restart_count(&pod).await == 1).then_some(())
    })
    .await;
    counted_exactly(&s.ns, "calls", 1, 30, Duration::from_secs(3)).await;
    pod_events(&s.ns, &pod, "Unhealthy", "Liveness probe failed").await;
    s.ready().await;
    s.ns.delete().await;
}

/// Prism serving Telnyx's spec on the bridge, on a port of its own, for one test to stop.
struct Telnyx {
    child: Option<tokio::process::Child>,
    port: u16,
}

impl Telnyx {
    async fn start(port: u16) -> Telnyx {
        let spec = testing::telnyx::contract_spec();
        let prism = testing::cache_dir().join("prism-5.16.0/node_modules/.bin/prism");
        let child = tokio::process::Command::new(prism)
            .args(["mock", "-h", node::GATEWAY, "-p", &port.to_string()])
            .arg(spec)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("start Prism");
        let probe = format!("http://{}:{port}/v2/telephony_credentials?page%5Bsize%5D=1", node::GATEWAY);
        wait_until(Duration::from_secs(60), "Prism up", || async {
            let res = testing::http().get(&probe).bearer_auth("k").send().await.ok()?;
            (res.status().as_u16() == 200).then_some(())
        })
        .await;
        Telnyx { child: Some(child), port }
    }

    async fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill().await;
        }
    }
}

#[tokio::test]
async fn telnyx_unreachable_makes_the_worker_not_ready_and_its_return_is_seen_in_seconds() {
    let mut telnyx = Telnyx::start(testing::free_port()).await;
    let url = format!("http://{}:{}/v2", node::GATEWAY, telnyx.port);
    // The default health period (30 s): recovery must not wait for it.
    let health = json!({ "periodSeconds": 30, "timeoutSeconds": 1, "startupTimeoutSeconds": 300 });
    let spec = json!({ "health": health, "telnyx": { "apiKeySecretRef": { "name": "telnyx" },
        "connectionId": "conn-e2e", "baseUrl": url } });
    let s = Scene::new("telnyx", spec).await;
    s.ready().await;
    let pod = s.pod().await;

    telnyx.stop().await;
    // The worker notices at its next check (up to a period), and says so on its heartbeat stream
    // (and its /readyz): the answer is 503, in the worker's words.
    let t0 = std::time::Instant::now();
    let message = wait_until(Duration::from_secs(45), "a 503 naming Telnyx", || async {
        let (code, body) = s.readiness.status(&s.ns.name, "calls").await?;
        let message = body["message"].as_str()?.to_string();
        (code == 503 && message.contains("Telnyx")).then_some(message)
    })
    .await;
    eprintln!("Telnyx stopped → readiness 503 in {:?}: {message}", t0.elapsed());
    assert!(message.contains(&pod), "{message}");
    pod_events(&s.ns, &pod, "Unhealthy", "Readiness probe failed").await;
    assert_eq!(used(&s.ns, "calls").await, 0, "not ready is not a failure (the process is fine)");

    let _telnyx = Telnyx::start(telnyx.port).await;
    let (took, _) = until_code(&s.readiness, &s.ns.name, 200, 20).await;
    eprintln!("Telnyx back → readiness 200 in {took:?}");
    assert!(took < Duration::from_secs(15), "back in {took:?}, not a whole 30 s period");
    assert_eq!(s.restart_count(&pod).await, 0, "nothing restarted");
    s.ns.delete().await;
}

#[tokio::test]
async fn an_image_that_does_not_exist_is_counted_once_per_episode() {
    // A registry on loopback that refuses: the pull fails at once, and no packet leaves the machine.
    let s = Scene::new("image", json!({ "image": "localhost:1/dialtone/telephony-pod:missing" })).await;
    let t = wait_status(&s.ns, "calls", 60, "ImagePullFailed", |s| {
        s.conditions.iter().any(|c| c.type_ == "Ready" && c.reason == "ImagePullFailed")
    })
    .await;
    assert!(condition(&t, "Ready").message.contains("localhost:1/dialtone/telephony-pod:missing"));
    // ErrImagePull and ImagePullBackOff alternate; it is one episode, counted once.
    counted_exactly(&s.ns, "calls", 1, 30, Duration::from_secs(15)).await;
    let lf = ns_last_failure(&s.ns).await;
    assert!(lf == "ErrImagePull" || lf == "ImagePullBackOff", "{lf}");
    assert_eq!(s.readiness.status(&s.ns.name, "calls").await.map(|r| r.0), Some(503));
    assert_eq!(worker_pods(&s.ns, "calls").await.len(), 1, "the pod is kept: deleting can't fix it");
    s.ns.delete().await;
}

/// A node selector no node has: kube-scheduler's words reach the status in seconds, not after
/// the first status' startup hold (60 s), and the worker that never ran spends no budget.
#[tokio::test]
async fn a_worker_no_node_takes_is_said_at_once_and_spends_no_budget() {
    let spec = json!({ "pod": { "nodeSelector": { "dialtone.dev/pool": "nowhere" } } });
    let s = Scene::new("unsched", spec).await;
    let t = wait_status(&s.ns, "calls", 20, "Unschedulable", |s| {
        s.conditions.iter().any(|c| c.type_ == "Ready" && c.reason == "Unschedulable")
    })
    .await;
    let said = condition(&t, "Ready").message.clone();
    assert!(said.contains("nodes are available"), "the scheduler's words: {said}");
    assert_eq!(t.status.as_ref().map(|s| s.phase), Some(Phase::Progressing));
    let warned = wait_events(&s.ns, "Unschedulable").await;
    assert_eq!(warned.len(), 1, "one warning, not one per look");
    assert_eq!(warned[0].note.as_deref(), Some(said.as_str()));
    assert_eq!(used(&s.ns, "calls").await, 0, "the worker never ran: no failure");
    assert_eq!(s.readiness.status(&s.ns.name, "calls").await.map(|r| r.0), Some(503));
    s.ns.delete().await;
}

async fn ns_last_failure(ns: &TestNamespace) -> String {
    let t = ns.api::<telephony_operator::crd::TelephonyService>().get("calls").await.expect("get");
    t.status.and_then(|s| s.last_failure).map(|f| f.reason).unwrap_or_default()
}

#[tokio::test]
async fn every_worker_crash_looping_opens_the_circuit_and_leaves_no_container() {
    // A bad setting: the worker exits with its configuration error at every start.
    let env = json!([{ "name": "TELNYX_TIMEOUT_MS", "value": "soon" }]);
    let s = Scene::new("loop", json!({ "replicas": 2, "pod": { "env": env } })).await;
    let t = wait_status(&s.ns, "calls", 120, "Failed", |s| s.phase == Phase::Failed).await;
    assert_eq!(condition(&t, "RestartBudgetExhausted").status, "True");
    assert_eq!(t.status.as_ref().and_then(|s| s.restarts.clone()).as_deref(), Some("4/3"));
    let replicas = || async { s.ns.api::<Deployment>().get("calls-worker").await.ok()?.spec?.replicas };
    assert_eq!(replicas().await, Some(0));
    wait_events(&s.ns, "RestartBudgetExhausted").await;
    until_code(&s.readiness, &s.ns.name, 503, 10).await;
    wait_until(Duration::from_secs(60), "no worker container left on the node (ctr)", || async {
        node::containers(&s.ns.name, "worker").is_empty().then_some(())
    })
    .await;
    // The circuit stays open: nothing starts again on its own.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(node::containers(&s.ns.name, "worker").is_empty());
    assert_eq!(used(&s.ns, "calls").await, 4);
    s.ns.delete().await;
}

#[tokio::test]
async fn a_worker_that_never_becomes_ready_is_restarted_after_the_startup_timeout() {
    // Telnyx refuses every connection (nothing listens there): running, never Ready.
    let telnyx = json!({ "apiKeySecretRef": { "name": "telnyx" }, "connectionId": "conn-e2e",
        "baseUrl": format!("http://{}:9/v2", node::GATEWAY) });
    let spec = json!({ "telnyx": telnyx, "health": { "periodSeconds": 2, "timeoutSeconds": 1,
        "startupTimeoutSeconds": 6 }, "backoff": { "initialSeconds": 0 } });
    let s = Scene::new("never", spec).await;
    let first = wait_until(Duration::from_secs(60), "a worker pod", || async {
        worker_pods(&s.ns, "calls").await.first().map(|p| p.name_any())
    })
    .await;
    let t = counted_exactly(&s.ns, "calls", 1, 60, Duration::from_secs(1)).await;
    let lf = t.status.and_then(|s| s.last_failure).expect("lastFailure");
    assert_eq!((lf.reason.as_str(), lf.pod.as_str()), ("ReadinessTimeout", first.as_str()));
    wait_until(Duration::from_secs(30), "the hung pod replaced", || async {
        let pods = worker_pods(&s.ns, "calls").await;
        (!pods.is_empty() && pods.iter().all(|p| p.name_any() != first)).then_some(())
    })
    .await;
    assert_eq!(s.readiness.status(&s.ns.name, "calls").await.map(|r| r.0), Some(503));
    s.ns.delete().await;
}

#[tokio::test]
async fn the_main_apps_calls_go_through_the_worker_service() {
    // With `spec.auth`: only a request with the app's token places calls.
    let ns = setup("app").await;
    let token = "app-token-e2e-7c1d0b5a93f2";
    let secret = k8s_openapi::api::core::v1::Secret {
        metadata: kube::api::ObjectMeta { name: Some("dialtone-worker-token".into()), ..Default::default() },
        string_data: Some([("token".to_string(), token.to_string())].into()),
        ..Default::default()
    };
    ns.api::<k8s_openapi::api::core::v1::Secret>()
        .create(&Default::default(), &secret)
        .await
        .expect("token Secret");
    let (op, readiness) =
        (Operator::start(&ns.name), ReadinessProcess::start(&ns.name, &testing::kubeconfig_path(), "10s"));
    let auth = json!({ "tokenSecretRef": { "name": "dialtone-worker-token", "key": "token" } });
    create(&ns, &tsvc("calls", json!({ "replicas": 2, "auth": auth }))).await;
    let s = Scene { ns, _op: op, readiness };
    s.ready().await; // the kubelet's probes and the readiness service's heartbeats need no token
                     // What the app reads from the readiness answer: where the workers are.
    let (_, body) = until_code(&s.readiness, &s.ns.name, 200, 10).await;
    let endpoint = format!("http://calls-worker.{}.svc:8080", s.ns.name);
    assert_eq!(body["endpoint"], endpoint.as_str());
    // No cluster DNS here: the Service's ClusterIP, routed by kube-proxy like in-cluster traffic.
    let svc = s.ns.api::<Service>().get("calls-worker").await.expect("worker Service");
    let ip = svc.spec.and_then(|s| s.cluster_ip).expect("ClusterIP");
    let base = format!("http://{ip}:8080");
    let http = testing::http();
    // kube-proxy may take a moment to program the new Service's endpoints: until then, refused.
    let refused = wait_until(Duration::from_secs(15), "the worker Service routed", || async {
        let dial = json!({ "to": "+15551234567", "from": "+15557654321" });
        http.post(format!("{base}/v1/calls")).json(&dial).send().await.ok()
    })
    .await;
    assert_eq!(refused.status().as_u16(), 401);
    assert_eq!(refused.json::<serde_json::Value>().await.expect("JSON")["error"]["code"], "unauthorized");
    let post = |path: &str, body: serde_json::Value| {
        http.post(format!("{base}{path}")).bearer_auth(token).json(&body).send()
    };

    let res = post("/v1/credentials", json!({ "username": "agent-42" })).await.expect("credential");
    assert_eq!(res.status().as_u16(), 201);
    let credential: serde_json::Value = res.json().await.expect("JSON");
    assert!(credential["token"].as_str().is_some_and(|t| !t.is_empty()), "{credential}");
    assert!(credential["sipUsername"].is_string(), "{credential}");

    let res = post("/v1/calls", json!({ "to": "+15551234567", "from": "+15557654321" })).await.expect("dial");
    assert_eq!(res.status().as_u16(), 201);
    let call: serde_json::Value = res.json().await.expect("JSON");
    let id = call["callControlId"].as_str().expect("callControlId").to_string();

    let res = post(&format!("/v1/calls/{id}/hangup"), json!({})).await.expect("hangup");
    assert_eq!(res.status().as_u16(), 200);
    assert_eq!(res.json::<serde_json::Value>().await.expect("JSON")["result"], "ok");

    // Bad input is a 400 naming the field, through the same path.
    let res = post("/v1/calls", json!({ "to": "555", "from": "+15557654321" })).await.expect("dial");
    assert_eq!(res.status().as_u16(), 400);
    assert_eq!(res.json::<serde_json::Value>().await.expect("JSON")["error"]["field"], "to");
    s.ns.delete().await;
}
