//! Calls that survive operations, on the real node: a worker told to stop (a rollout, a scale-in)
//! takes no new calls at once, keeps its live call until it ends, and ends one that outlives the
//! drain with the cause `drain_timeout`. The calls are placed through the worker against the Telnyx
//! mock; their story arrives as webhooks signed with a key made in the test, as Telnyx sends them.
//! A bad rollout is undone without touching the workers that serve, or their calls.

mod common;

use std::time::Duration;

use common::*;
use k8s_openapi::api::core::v1::{Pod, ResourceQuota, Secret, Service};
use kube::api::{ObjectMeta, Patch, PatchParams, PostParams};
use kube::ResourceExt;
use serde_json::{json, Value};
use telephony_operator::crd::{Phase, TelephonyService};
use testing::telnyx::{call_event, owned_by, Signer};
use testing::{sse, wait_until, TestNamespace};

/// The operator, a readiness service, and `calls` with webhooks on and the given drain and pool.
struct Scene {
    ns: TestNamespace,
    _op: Operator,
    readiness: ReadinessProcess,
    signer: Signer,
}

impl Scene {
    async fn new(prefix: &str, replicas: i32, drain_secs: u32) -> Scene {
        let ns = setup(prefix).await;
        let signer = Signer::default();
        let secret = Secret {
            metadata: ObjectMeta { name: Some("telnyx-webhooks".into()), ..Default::default() },
            string_data: Some([("publicKey".to_string(), signer.public_key())].into()),
            ..Default::default()
        };
        ns.api::<Secret>().create(&PostParams::default(), &secret).await.expect("webhook key Secret");
        let op = Operator::start(&ns.name);
        let readiness = ReadinessProcess::start(&ns.name, &testing::kubeconfig_path(), "10s");
        let spec = json!({
            "replicas": replicas,
            "drain": { "timeoutSeconds": drain_secs },
            "telnyx": {
                "apiKeySecretRef": { "name": "telnyx" },
                "webhookPublicKeySecretRef": { "name": "telnyx-webhooks", "key": "publicKey" },
                "connectionId": "conn-e2e",
                "baseUrl": testing::node::telnyx_url()
            },
        });
        create(&ns, &tsvc("calls", spec)).await;
        wait_status(&ns, "calls", 120, "Ready", |s| s.phase == Phase::Ready && s.ready_replicas == replicas)
            .await;
        Scene { ns, _op: op, readiness, signer }
    }

    /// `http://<pod IP>:8080` of each worker pod not being deleted.
    async fn workers(&self) -> Vec<(String, String)> {
        let mut out = vec![];
        for p in worker_pods(&self.ns, "calls").await {
            let ip = pod_ip(&self.ns, &p.name_any()).await;
            out.push((p.name_any(), format!("http://{ip}:8080")));
        }
        out
    }

    /// A call placed on the worker at `base`, answered: live.
    async fn live_call(&self, base: &str) -> String {
        let res = testing::http()
            .post(format!("{base}/v1/calls"))
            .json(&json!({ "to": "+15551234567", "from": "+15557654321" }))
            .send()
            .await
            .expect("dial");
        assert_eq!(res.status().as_u16(), 201);
        let body: Value = res.json().await.expect("JSON");
        let id = body["callControlId"].as_str().expect("callControlId").to_string();
        let answered = call_event(&format!("answered-{base}"), "call.answered", &id, json!({}));
        assert_eq!(self.signer.deliver(base, &answered).await.0, 200);
        id
    }

    async fn call_state(&self, base: &str, id: &str) -> Option<String> {
        let (code, body) = testing::get(&format!("{base}/v1/calls/{id}")).await?;
        let body: Value = serde_json::from_str(&body).ok()?;
        (code == 200).then(|| body["state"].as_str().unwrap_or_default().to_string())
    }

    /// Waits until the worker process of `pod` has exited by itself (exit code 0), or the pod is
    /// gone. Not the pod's removal alone: a kubelet 1.20 sometimes restarts a container that exits
    /// during its pod's termination, and the pod then stays until its grace period ends (and then
    /// it may report the exited container as `ContainerStatusUnknown`, without its code).
    async fn exited(&self, pod: &str, secs: u64) {
        let pods = self.ns.api::<Pod>();
        let deadline = std::time::Instant::now() + Duration::from_secs(secs);
        let mut last = None;
        while std::time::Instant::now() < deadline {
            let Ok(Some(p)) = pods.get_opt(pod).await else { return };
            let c = p.status.and_then(|s| s.container_statuses?.into_iter().next());
            // Exit code 0; or the 1.20 kubelet's `ContainerStatusUnknown` ("could not be located
            // when the pod was deleted"): the container is gone and the kubelet lost its code.
            let done = |s: &Option<k8s_openapi::api::core::v1::ContainerState>| {
                s.as_ref().and_then(|s| s.terminated.as_ref()).is_some_and(|t| {
                    t.exit_code == 0 || t.reason.as_deref() == Some("ContainerStatusUnknown")
                })
            };
            if c.as_ref().is_some_and(|c| done(&c.state) || done(&c.last_state)) {
                return;
            }
            last = c;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let log = testing::tool("kubectl", &["-n", &self.ns.name, "logs", pod, "--tail", "15"], None);
        panic!("{pod}'s worker did not exit within {secs}s; its container: {last:?}; its log: {log:?}");
    }

    async fn deleting(&self, pod: &str) -> bool {
        let p = self.ns.api::<Pod>().get_opt(pod).await.ok().flatten();
        p.is_some_and(|p| p.metadata.deletion_timestamp.is_some())
    }
}

#[tokio::test]
async fn a_live_call_outlasts_a_rollout_restart_while_new_calls_go_to_the_new_worker() {
    let s = Scene::new("drain-roll", 1, 120).await;
    let (old, old_url) = s.workers().await.remove(0);
    let call = s.live_call(&old_url).await;
    let mut events = sse::follow(&format!("{old_url}/v1/events"), None).await;

    testing::kubectl(&["-n", &s.ns.name, "rollout", "restart", "deployment/calls-worker"]);
    // The new worker comes up first (surge), then the old one is told to stop.
    let new = wait_until(Duration::from_secs(90), "a new worker Ready, the old one draining", || async {
        let fresh = worker_pods(&s.ns, "calls").await.into_iter().find(|p| p.name_any() != old)?;
        let ready = fresh
            .status
            .as_ref()?
            .conditions
            .as_ref()?
            .iter()
            .any(|c| c.type_ == "Ready" && c.status == "True");
        (ready && s.deleting(&old).await).then(|| fresh.name_any())
    })
    .await;
    // The app sees the old worker draining with its call, and is still served.
    let (_, body) = wait_until(Duration::from_secs(15), "the answer lists the draining worker", || async {
        let (code, body) = s.readiness.status(&s.ns.name, "calls").await?;
        (body["draining"] == json!([{ "pod": old, "activeCalls": 1 }])).then_some((code, body))
    })
    .await;
    assert_eq!(body["healthy"], true, "the new worker serves: {body}");
    // So does `kubectl get tsvc -o yaml`: the operator asked the draining worker.
    wait_status(&s.ns, "calls", 10, "drainingCalls 1", |st| {
        st.draining_replicas == 1 && st.draining_calls == 1
    })
    .await;

    // New calls through the Service are placed by the new worker. Until kube-proxy has dropped the
    // old pod from the Service (a second or two), a dial may still reach it: it answers 503
    // `draining` with Retry-After, and the app's retry lands on the new worker.
    let svc = s.ns.api::<Service>().get("calls-worker").await.expect("worker Service");
    let ip = svc.spec.and_then(|s| s.cluster_ip).expect("ClusterIP");
    for _ in 0..5 {
        let mut attempts = 0;
        loop {
            attempts += 1;
            let res = testing::http()
                .post(format!("http://{ip}:8080/v1/calls"))
                .json(&json!({ "to": "+15551234567", "from": "+15557654321" }))
                .send()
                .await
                .expect("dial through the Service");
            if res.status().as_u16() == 201 {
                break;
            }
            assert_eq!(res.status().as_u16(), 503, "only the draining worker refuses");
            let retry: u64 = res
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok()?.parse().ok())
                .expect("Retry-After");
            let body: Value = res.json().await.expect("a JSON error");
            assert_eq!(body["error"]["code"], "draining", "{body}");
            assert!(attempts < 5, "still refused after {attempts} tries");
            tokio::time::sleep(Duration::from_secs(retry)).await;
        }
    }
    let (_, direct) = testing::get(&format!("{old_url}/v1/calls")).await.expect("the old worker answers");
    let direct: Value = serde_json::from_str(&direct).expect("JSON");
    assert_eq!(direct["calls"].as_array().map(Vec::len), Some(1), "no new call reached the draining worker");

    // The live call goes on: seconds into the drain, the old worker still holds it.
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(s.call_state(&old_url, &call).await.as_deref(), Some("answered"), "the call was not cut");
    assert!(s.deleting(&old).await, "{old} still drains");

    // It ends as the caller hangs up; then the worker exits, well before its 120 s drain.
    let hangup = call_event("hangup-1", "call.hangup", &call, json!({ "hangup_cause": "normal_clearing" }));
    assert_eq!(s.signer.deliver(&old_url, &hangup).await.0, 200);
    let (event, _, data) = sse::next(&mut events, Duration::from_secs(10), "call.ended").await;
    assert_eq!(event, "call.ended", "{data}");
    assert!(data.contains(r#""hangupCause":"normal_clearing""#), "{data}");
    s.exited(&old, 30).await;
    wait_status(&s.ns, "calls", 15, "no draining calls", |st| st.draining_calls == 0).await;
    let t = s.ns.api::<TelephonyService>().get("calls").await.expect("get");
    let status = t.status.expect("status");
    assert_eq!(status.restart_budget.map(|b| b.used), Some(0), "a drain is not a failure");
    assert!(worker_pods(&s.ns, "calls").await.iter().any(|p| p.name_any() == new));
    s.ns.delete().await;
}

#[tokio::test]
async fn a_scale_in_drains_one_worker_at_a_time_and_ends_a_call_that_outlives_the_drain() {
    let s = Scene::new("drain-scale", 2, 3).await;
    let pdb =
        testing::kubectl(&["-n", &s.ns.name, "get", "poddisruptionbudget", "calls-worker", "-o", "json"]);
    let pdb: Value = serde_json::from_str(&pdb).expect("PDB JSON");
    assert_eq!(pdb["spec"]["maxUnavailable"], 1, "{pdb}");
    assert_eq!(pdb["metadata"]["ownerReferences"][0]["kind"], "TelephonyService");

    let workers = s.workers().await;
    let mut calls = vec![];
    for (pod, url) in &workers {
        let id = s.live_call(url).await;
        let events = sse::follow(&format!("{url}/v1/events"), None).await;
        calls.push((pod.clone(), url.clone(), id, events));
    }
    let tsvcs = s.ns.api::<TelephonyService>();
    let scale = json!({ "spec": { "replicas": 1 } });
    tsvcs.patch("calls", &PatchParams::default(), &Patch::Merge(&scale)).await.expect("scale in");

    let leaving = wait_until(Duration::from_secs(30), "one worker told to stop", || async {
        for (i, (pod, ..)) in calls.iter().enumerate() {
            if s.deleting(pod).await {
                return Some(i);
            }
        }
        None
    })
    .await;
    let (pod, url, id, mut events) = calls.remove(leaving);
    // Live for the 3 s drain, then ended by the worker, through Telnyx, with the cause.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(s.call_state(&url, &id).await.as_deref(), Some("answered"), "not cut before the drain ends");
    let (event, _, data) = sse::next(&mut events, Duration::from_secs(10), "call.ended").await;
    assert_eq!(event, "call.ended", "{data}");
    let data: Value = serde_json::from_str(&data).expect("JSON");
    assert_eq!(
        (data["call"]["hangupCause"].as_str(), data["call"]["hangupSource"].as_str()),
        (Some("drain_timeout"), Some("worker"))
    );
    // The worker said so on /readyz and waited for the operator to ask, so the Event is certain.
    let cut = wait_events(&s.ns, "DrainTimeout").await;
    let note = cut[0].note.clone().unwrap_or_default();
    assert_eq!(cut.len(), 1, "once: {note}");
    assert!(note.starts_with(&format!("worker pod {pod}: drain timeout: ended 1 live call ")), "{note}");
    s.exited(&pod, 30).await;

    let (staying, staying_url, staying_call, _) = &calls[0];
    assert!(!s.deleting(staying).await);
    assert_eq!(
        s.call_state(staying_url, staying_call).await.as_deref(),
        Some("answered"),
        "the other worker's call is untouched"
    );
    let t =
        wait_status(&s.ns, "calls", 30, "1/1 Ready", |st| st.phase == Phase::Ready && st.replicas == 1).await;
    assert_eq!(
        t.status.and_then(|st| st.restart_budget).map(|b| b.used),
        Some(0),
        "a drain is not a failure"
    );
    // One worker left: its budget is gone, so a node drain can't be blocked by it.
    wait_until(Duration::from_secs(15), "the PodDisruptionBudget deleted", || async {
        let out =
            testing::tool("kubectl", &["-n", &s.ns.name, "get", "poddisruptionbudget", "calls-worker"], None);
        out.err().filter(|e| e.contains("NotFound")).map(|_| ())
    })
    .await;
    s.ns.delete().await;
}

/// With two workers, Telnyx's webhooks reach either one. The hangup of a draining worker's call,
/// delivered to the other worker, is handed to the one that placed the call (its address rides in
/// the call's `client_state`), so that drain ends with the call, not at its 60 s timeout.
#[tokio::test]
async fn a_hangup_that_lands_on_another_worker_ends_the_drain_of_the_worker_that_placed_the_call() {
    let s = Scene::new("drain-owner", 2, 60).await;
    let workers = s.workers().await;
    let ((owner, owner_url), (_, other_url)) = (&workers[0], &workers[1]);
    let id = s.live_call(owner_url).await;
    let mut events = sse::follow(&format!("{owner_url}/v1/events"), None).await;
    s.ns.api::<Pod>().delete(owner, &Default::default()).await.expect("delete the owner's pod");
    wait_until(Duration::from_secs(10), "the owner told to stop", || async {
        s.deleting(owner).await.then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(s.call_state(owner_url, &id).await.as_deref(), Some("answered"), "draining with its call");

    let started = std::time::Instant::now();
    let owner_addr = owner_url.trim_start_matches("http://");
    let extra = json!({ "hangup_cause": "normal_clearing", "hangup_source": "callee",
                        "client_state": owned_by(owner_addr, "app-state") });
    let hangup = call_event("hangup-elsewhere", "call.hangup", &id, extra);
    let (code, answer) = s.signer.deliver(other_url, &hangup).await;
    assert_eq!((code, answer["result"].as_str()), (200, Some("forwarded")), "{answer}");
    let (event, _, data) = sse::next(&mut events, Duration::from_secs(5), "call.ended").await;
    assert_eq!(event, "call.ended", "{data}");
    let data: Value = serde_json::from_str(&data).expect("JSON");
    assert_eq!(
        (data["call"]["hangupCause"].as_str(), data["call"]["hangupSource"].as_str()),
        (Some("normal_clearing"), Some("callee")),
        "the owner applied Telnyx's hangup"
    );
    s.exited(owner, 20).await;
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(30),
        "the drain ended with its call ({took:?}), not at its 60 s timeout"
    );
    assert_eq!(
        testing::get(&format!("{other_url}/v1/calls/{id}")).await.map(|r| r.0),
        Some(404),
        "the worker it landed on keeps no record of a call it didn't place"
    );
    // A forged copy is refused before any forwarding.
    let mut forged = testing::http()
        .post(format!("{other_url}/v1/webhooks/telnyx"))
        .header("content-type", "application/json")
        .body(hangup.replace("hangup-elsewhere", "forged"));
    for (k, v) in s.signer.headers(testing::telnyx::now(), &hangup) {
        forged = forged.header(k, v);
    }
    assert_eq!(forged.send().await.expect("deliver").status().as_u16(), 401);
    s.ns.delete().await;
}

/// A spec change whose workers crash (a real configuration error: the worker exits 2) uses up the
/// budget while the previous workers still serve. The Deployment goes back to those workers
/// instead of to 0: their live call goes on, the app is still served (degraded), and the status
/// and an Event say what happened. A fixed spec then rolls out.
#[tokio::test]
async fn a_rollout_that_exhausts_the_budget_is_rolled_back_and_the_serving_workers_keep_their_calls() {
    let s = Scene::new("rollback", 2, 30).await;
    let workers = s.workers().await;
    let (pod, url) = &workers[0];
    let call = s.live_call(url).await;
    let tsvcs = s.ns.api::<TelephonyService>();
    let bad = json!({ "spec": {
        "restartBudget": { "maxRestarts": 1 },
        "pod": { "env": [{ "name": "SWEEP_PERIOD_SECONDS", "value": "0" }] },
    }});
    tsvcs.patch("calls", &PatchParams::default(), &Patch::Merge(&bad)).await.expect("a bad spec");

    let t = wait_status(&s.ns, "calls", 120, "rolled back", |st| st.rolled_back.is_some()).await;
    let status = t.status.expect("status");
    let rb = status.rolled_back.clone().expect("rolledBack");
    assert_eq!(rb.generation, t.metadata.generation.expect("generation"));
    assert!(rb.message.contains("SWEEP_PERIOD_SECONDS"), "the worker's own words: {}", rb.message);
    assert_eq!((status.phase, status.replicas), (Phase::Degraded, 2), "{status:?}");
    let event = wait_events(&s.ns, "RolledBack").await;
    assert_eq!(event[0].type_.as_deref(), Some("Warning"));
    assert!(events(&s.ns, "RestartBudgetExhausted").await.is_empty(), "the circuit did not open");

    // The Deployment is back on the old template; only the two old workers remain, untouched.
    let template = testing::kubectl(&[
        "-n",
        &s.ns.name,
        "get",
        "deployment",
        "calls-worker",
        "-o",
        "jsonpath={.spec.template.spec.containers[0].env[*].name}",
    ]);
    assert!(!template.contains("SWEEP_PERIOD_SECONDS"), "{template}");
    let old: Vec<String> = workers.iter().map(|(p, _)| p.clone()).collect();
    wait_until(Duration::from_secs(60), "only the old workers", || async {
        let now: Vec<String> = worker_pods(&s.ns, "calls").await.iter().map(|p| p.name_any()).collect();
        (now.len() == 2 && now.iter().all(|p| old.contains(p))).then_some(())
    })
    .await;
    for p in &old {
        assert!(!s.deleting(p).await, "{p} was never told to stop");
    }
    assert_eq!(s.call_state(url, &call).await.as_deref(), Some("answered"), "the call on {pod} goes on");
    let (code, body) = s.readiness.status(&s.ns.name, "calls").await.expect("readiness answer");
    assert_eq!(
        (code, body["healthy"].as_bool(), body["status"].as_str()),
        (200, Some(true), Some("degraded")),
        "{body}"
    );

    // A fixed spec (a new generation) rolls out; the call ends first, so the old worker's drain is short.
    let hangup = call_event("hangup-rb", "call.hangup", &call, json!({ "hangup_cause": "normal_clearing" }));
    assert_eq!(s.signer.deliver(url, &hangup).await.0, 200);
    let fixed = json!({ "spec": { "pod": { "env": [] } } });
    tsvcs.patch("calls", &PatchParams::default(), &Patch::Merge(&fixed)).await.expect("a fixed spec");
    let t = wait_status(&s.ns, "calls", 180, "Ready on the fixed spec", |st| {
        st.phase == Phase::Ready && st.rolled_back.is_none() && st.ready_replicas == 2
    })
    .await;
    assert_eq!(t.status.and_then(|st| st.observed_generation), t.metadata.generation);
    s.ns.delete().await;
}

/// A node drain evicts pods through the Eviction API, which honours the PodDisruptionBudget: with
/// two workers, the first eviction is allowed (that worker drains its call), and a second one
/// right after is refused (429) until the first one's replacement is Ready, so the calls are never
/// left without a worker. This is what `kubectl drain` does to each pod of a node.
#[tokio::test]
async fn a_node_drain_evicts_the_workers_one_at_a_time() {
    let s = Scene::new("drain-evict", 2, 60).await;
    // A drain cordons the node first, so an evicted worker's replacement can't start until the
    // drain is over. Here (one node, shared with other tests) a quota of 2 pods does that for this
    // namespace alone: the replacement waits while the evicted worker drains.
    let quota = json!({
        "apiVersion": "v1", "kind": "ResourceQuota",
        "metadata": { "name": "two-pods" }, "spec": { "hard": { "pods": "2" } }
    });
    let quotas = s.ns.api::<ResourceQuota>();
    quotas
        .create(&PostParams::default(), &serde_json::from_value(quota).expect("quota"))
        .await
        .expect("create quota");
    wait_until(Duration::from_secs(20), "the quota counted", || async {
        let used = quotas.get("two-pods").await.ok()?.status?.used?;
        (used.get("pods").map(|q| q.0.as_str()) == Some("2")).then_some(())
    })
    .await;
    let workers = s.workers().await;
    let (first, first_url) = workers[0].clone();
    let (second, _) = workers[1].clone();
    let call = s.live_call(&first_url).await;

    assert_eq!(evict(&s.ns, &first).await, 201, "the budget allows one");
    wait_until(Duration::from_secs(10), "the evicted worker draining", || async {
        s.deleting(&first).await.then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(evict(&s.ns, &second).await, 429, "a second eviction waits for the first's replacement");
    assert_eq!(
        s.call_state(&first_url, &call).await.as_deref(),
        Some("answered"),
        "the evicted worker's call goes on"
    );
    assert!(!s.deleting(&second).await, "the other worker still serves");

    let hangup = call_event("hangup-e", "call.hangup", &call, json!({ "hangup_cause": "normal_clearing" }));
    assert_eq!(s.signer.deliver(&first_url, &hangup).await.0, 200);
    // The drain is over: lift the quota, as `kubectl uncordon` would lift the cordon. Waiting for the
    // quota to free the slot instead is a race: the ReplicaSet controller backs off exponentially
    // after each refused create (5 ms doubling), so after a few seconds of refusals its next try
    // can be a minute away (CI: the replacement was not created within 60 s).
    quotas.delete("two-pods", &Default::default()).await.expect("delete quota");
    s.exited(&first, 30).await;
    wait_until(
        Duration::from_secs(60),
        "the second eviction allowed once the replacement is Ready",
        || async { (evict(&s.ns, &second).await == 201).then_some(()) },
    )
    .await;
    assert_eq!(used(&s.ns, "calls").await, 0, "evictions are not failures");
    s.ns.delete().await;
}

/// POST pods/{name}/eviction, as `kubectl drain` does (policy/v1beta1 on Kubernetes 1.20): 201
/// evicted, 429 refused by the PodDisruptionBudget. Through kubectl, because the kube client
/// retries a 429 until it succeeds.
async fn evict(ns: &TestNamespace, pod: &str) -> u16 {
    let body = json!({
        "apiVersion": "policy/v1beta1",
        "kind": "Eviction",
        "metadata": { "name": pod, "namespace": ns.name },
    });
    let url = format!("/api/v1/namespaces/{}/pods/{pod}/eviction", ns.name);
    match testing::tool("kubectl", &["create", "--raw", &url, "-f", "-"], Some(&body.to_string())) {
        Ok(_) => 201,
        Err(e) if e.contains("disruption budget") => 429,
        Err(e) => panic!("evict {pod}: {e}"),
    }
}
