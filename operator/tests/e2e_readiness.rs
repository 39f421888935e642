//! The readiness service on the real control plane: answers flip with faults within a second,
//! the SSE stream carries the same transitions, and losing the API makes answers `unknown`.

mod common;

use std::time::Duration;

use common::*;
use kube::ResourceExt;
use telephony_operator::crd::Phase;

/// Collects `(status, healthy)` of `ns/calls` from the SSE stream until dropped.
fn sse_statuses(url: String, ns: String) -> tokio::sync::mpsc::UnboundedReceiver<(String, bool)> {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        let res =
            testing::http().get(format!("{url}/v1/watch")).timeout(Duration::from_secs(120)).send().await;
        let Ok(mut res) = res else { return };
        let mut buf = String::new();
        while let Ok(Some(chunk)) = res.chunk().await {
            buf.push_str(&String::from_utf8_lossy(&chunk));
            while let Some(end) = buf.find("\n\n") {
                let frame: String = buf.drain(..end + 2).collect();
                let data = frame.lines().find_map(|l| l.strip_prefix("data:")).map(str::trim);
                if let Some(v) = data.and_then(|d| serde_json::from_str::<serde_json::Value>(d).ok()) {
                    if v["namespace"] == ns.as_str() && v["name"] == "calls" {
                        let _ = tx.send((
                            v["status"].as_str().unwrap_or_default().to_string(),
                            v["healthy"] == true,
                        ));
                    }
                }
            }
        }
    });
    rx
}

/// What the SSE stream said so far (after 300 ms for the last events to arrive), repeats merged.
async fn transitions(
    events: &mut tokio::sync::mpsc::UnboundedReceiver<(String, bool)>,
) -> Vec<(String, bool)> {
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut seen = Vec::new();
    while let Ok(e) = events.try_recv() {
        if seen.last() != Some(&e) {
            seen.push(e);
        }
    }
    seen
}

#[tokio::test]
async fn answers_flip_with_faults_within_a_second_and_sse_says_the_same() {
    let ns = setup("readiness").await;
    let _op = Operator::start(&ns.name);
    let r = ReadinessProcess::start(&ns.name, &testing::kubeconfig_path(), "10s");
    create(&ns, &tsvc("calls", serde_json::json!({}))).await;
    wait_status(&ns, "calls", 60, "Ready", |s| s.phase == Phase::Ready).await;
    let (_, body) = until_code(&r, &ns.name, 200, 30).await;
    assert_eq!((body["status"].as_str(), body["healthy"].as_bool()), (Some("ready"), Some(true)));
    assert!(body["timestamp"].as_i64().unwrap_or(0) > 0);
    let mut events = sse_statuses(r.url.clone(), ns.name.clone());
    tokio::time::sleep(Duration::from_millis(300)).await;

    // The only worker dies twice in a row (SIGKILL): the kubelet holds the second restart in
    // CrashLoopBackOff for 10 s, so the answer is 503 while it is down, then 200 again. (After a
    // single kill the kubelet may have it Ready again within a second or two.)
    let pod = worker_pods(&ns, "calls").await[0].name_any();
    kill_worker(&ns, &pod).await;
    kill_worker(&ns, &pod).await;
    let (took, body) = until_code(&r, &ns.name, 503, 10).await;
    eprintln!("crash → readiness 503 in {took:?}");
    assert_eq!(body["healthy"], false);
    until_code(&r, &ns.name, 200, 30).await;

    // Telnyx unreachable from the worker: its /readyz fails, the kubelet marks it not ready, and
    // the answer is 503 for as long as that holds.
    let partition = testing::node::Partition::from_telnyx(&pod_ip(&ns, &pod).await);
    let (took, _) = until_code(&r, &ns.name, 503, 10).await;
    eprintln!("notready → readiness 503 in {took:?}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        r.status(&ns.name, "calls").await.map(|s| s.0),
        Some(503),
        "still unavailable while not ready"
    );
    drop(partition);
    until_code(&r, &ns.name, 200, 30).await;

    // The SSE stream carried ready → unavailable → ready, twice.
    let seen = transitions(&mut events).await;
    let flips = seen.windows(2).filter(|w| w[0].1 && !w[1].1).count();
    let recoveries = seen.windows(2).filter(|w| !w[0].1 && w[1].1).count();
    assert!(flips >= 2 && recoveries >= 2, "SSE transitions: {seen:?}");
    assert_eq!(seen.last().map(|e| e.0.as_str()), Some("ready"));

    // Unknown services are a JSON 404; a bad path a 400.
    assert_eq!(r.status(&ns.name, "nope").await.map(|s| s.0), Some(404));
    assert_eq!(
        testing::get(&format!("{}/v1/status/{}/Bad_Name", r.url, ns.name)).await.map(|s| s.0),
        Some(400)
    );
    ns.delete().await;
}

/// The fast path: the readiness service holds a heartbeat stream to each worker. A hung worker
/// (SIGSTOP: its probes have seconds to go) is unavailable after 3 missed beats, while Kubernetes
/// still calls it Ready; a killed one as soon as its socket closes. Each is back once it beats
/// again and the kubelet agrees, and the SSE stream tells both falls.
#[tokio::test]
async fn a_hung_or_killed_worker_is_unavailable_through_its_heartbeat_before_kubernetes_knows() {
    let ns = setup("heartbeat").await;
    let _op = Operator::start(&ns.name);
    let r = ReadinessProcess::start(&ns.name, &testing::kubeconfig_path(), "10s");
    create(
        &ns,
        &tsvc("calls", serde_json::json!({ "health": { "periodSeconds": 2, "heartbeatMillis": 100 } })),
    )
    .await;
    wait_status(&ns, "calls", 60, "Ready", |s| s.phase == Phase::Ready).await;
    until_code(&r, &ns.name, 200, 30).await;
    let mut events = sse_statuses(r.url.clone(), ns.name.clone());
    tokio::time::sleep(Duration::from_millis(300)).await;
    let pods = ns.api::<k8s_openapi::api::core::v1::Pod>();
    let pod = worker_pods(&ns, "calls").await[0].name_any();

    testing::node::signal_container(&pods, &pod, testing::node::SIGSTOP).await;
    let (took, body) = until_code(&r, &ns.name, 503, 5).await;
    eprintln!("hang → readiness 503 in {took:?}: {}", body["message"]);
    let message = body["message"].as_str().unwrap_or_default();
    assert_eq!(message, format!("no worker is available (pod {pod}: no heartbeat for 300 ms)"));
    let kube_ready = pods.get(&pod).await.expect("pod").status.and_then(|s| s.conditions).unwrap_or_default();
    assert!(
        kube_ready.iter().any(|c| c.type_ == "Ready" && c.status == "True"),
        "the kubelet has not noticed yet: {kube_ready:?}"
    );
    testing::node::signal_container(&pods, &pod, testing::node::SIGCONT).await;
    until_code(&r, &ns.name, 200, 10).await;

    kill_worker(&ns, &pod).await;
    let (took, body) = until_code(&r, &ns.name, 503, 5).await;
    eprintln!("kill → readiness 503 in {took:?}: {}", body["message"]);
    until_code(&r, &ns.name, 200, 30).await;

    let seen = transitions(&mut events).await;
    let falls = seen.windows(2).filter(|w| w[0].1 && !w[1].1).count();
    assert!(falls >= 2, "SSE told both falls: {seen:?}");
    let metrics = testing::get(&format!("{}/metrics", r.url)).await.map(|m| m.1).unwrap_or_default();
    // Each fall is counted by its cause. (Exactly once per fall, not per failed reconnect, is a unit
    // test of the board: here a worker starved of CPU by the parallel tests may add a fall.)
    for cause in ["silent", "closed"] {
        let counted = metrics
            .lines()
            .find_map(|l| {
                l.strip_prefix(&format!("dialtone_readiness_heartbeat_lost_total{{cause=\"{cause}\"}} "))
            })
            .and_then(|v| v.trim().parse::<u64>().ok());
        assert!(counted.is_some_and(|n| n >= 1), "the {cause} fall counted: {metrics}");
    }
    ns.delete().await;
}

/// `spec.failover`, as the app sees it. The primary's only worker is killed and that exhausts its
/// budget (0 failures allowed): the answer is available via the backup at once, and a call placed
/// at the endpoint it gives is placed by the backup's worker; `FailedOver` is announced. A reset
/// brings the primary back, but calls stay with the backup for the hold-down, then come back with
/// `FailedBack`. With the primary scaled to 0 and the backup gone too, a plain 503 (no loop).
#[tokio::test]
async fn a_primary_that_fails_over_to_its_backup_comes_back_after_the_hold_down() {
    let ns = setup("failover").await;
    let _op = Operator::start(&ns.name);
    let r = ReadinessProcess::start(&ns.name, &testing::kubeconfig_path(), "10s");
    create(&ns, &tsvc("calls-b", serde_json::json!({}))).await;
    let primary = serde_json::json!({
        "failover": { "service": "calls-b", "holdDownSeconds": 5 },
        "restartBudget": { "maxRestarts": 0 },
    });
    create(&ns, &tsvc("calls", primary)).await;
    wait_status(&ns, "calls-b", 90, "backup Ready", |s| s.phase == Phase::Ready).await;
    wait_status(&ns, "calls", 90, "primary Ready", |s| s.phase == Phase::Ready).await;
    let (_, body) = until_code(&r, &ns.name, 200, 30).await;
    assert_eq!(body["via"], "primary", "{body}");
    assert_eq!(body["failover"]["name"], "calls-b");
    assert_eq!(body["failover"]["healthy"], true, "{body}");
    let primary_endpoint = body["endpoint"].clone();

    // The primary's only worker is killed: its budget is spent, and the app's calls go to the backup.
    let pod = worker_pods(&ns, "calls").await[0].name_any();
    kill_worker(&ns, &pod).await;
    let body = testing::wait_until(Duration::from_secs(5), "via backup", || async {
        let (code, body) = r.status(&ns.name, "calls").await?;
        (code == 200 && body["via"] == "backup").then_some(body)
    })
    .await;
    let backup_endpoint = format!("http://calls-b-worker.{}.svc:8080", ns.name);
    assert_eq!(body["endpoint"], backup_endpoint.as_str(), "{body}");
    assert!(body["message"].as_str().is_some_and(|m| m.contains("calls go to the backup")), "{body}");
    let t = wait_status(&ns, "calls", 30, "Failed, calls on the backup", |s| {
        s.phase == Phase::Failed && s.failover.as_ref().is_some_and(|f| f.active)
    })
    .await;
    assert!(t.status.is_some_and(|s| s.replicas == 0));
    let over = wait_events(&ns, "FailedOver").await;
    assert!(
        over[0].note.as_deref().unwrap_or_default().contains(&format!("{}/calls-b", ns.name)),
        "{over:?}"
    );
    // A call at the endpoint the answer gives (its Service, as the app's cluster DNS would find it).
    let svc = ns.api::<k8s_openapi::api::core::v1::Service>().get("calls-b-worker").await.expect("Service");
    let ip = svc.spec.and_then(|s| s.cluster_ip).expect("ClusterIP");
    let dial = testing::http()
        .post(format!("http://{ip}:8080/v1/calls"))
        .json(&serde_json::json!({ "to": "+15551234567", "from": "+15557654321" }))
        .send()
        .await
        .expect("dial via the backup");
    assert_eq!(dial.status().as_u16(), 201, "the backup placed the call");

    // Reset: the primary comes back, and is held down for 5 s before its calls return.
    let tsvcs = ns.api::<telephony_operator::crd::TelephonyService>();
    let reset = serde_json::json!({ "metadata": { "annotations": {
        telephony_operator::names::RESET_RESTART_BUDGET: "1" } } });
    tsvcs
        .patch("calls", &kube::api::PatchParams::default(), &kube::api::Patch::Merge(&reset))
        .await
        .expect("reset");
    wait_status(&ns, "calls", 60, "primary Ready, held down", |s| {
        s.phase == Phase::Ready
            && s.failover.as_ref().is_some_and(|f| f.active && f.primary_up_since.is_some())
    })
    .await;
    let (code, body) = r.status(&ns.name, "calls").await.expect("answer");
    assert_eq!((code, body["via"].as_str()), (200, Some("backup")), "held down: {body}");
    assert!(events(&ns, "FailedBack").await.is_empty(), "not before the hold-down");
    let body = testing::wait_until(Duration::from_secs(20), "via primary after the hold-down", || async {
        let (code, body) = r.status(&ns.name, "calls").await?;
        (code == 200 && body["via"] == "primary").then_some(body)
    })
    .await;
    assert_eq!(body["endpoint"], primary_endpoint);
    let back = wait_events(&ns, "FailedBack").await;
    assert!(back[0].note.as_deref().unwrap_or_default().contains("Ready for 5s"), "{back:?}");
    assert_eq!(events(&ns, "FailedOver").await.len(), 1, "one switch, one Event");

    // Scaled to 0: via the backup; and with the backup gone too, a plain 503.
    let zero = serde_json::json!({ "spec": { "replicas": 0 } });
    tsvcs
        .patch("calls", &kube::api::PatchParams::default(), &kube::api::Patch::Merge(&zero))
        .await
        .expect("scale");
    testing::wait_until(Duration::from_secs(30), "scaled to 0: via backup", || async {
        let (code, body) = r.status(&ns.name, "calls").await?;
        (code == 200 && body["via"] == "backup" && body["status"] == "pending").then_some(())
    })
    .await;
    tsvcs.delete("calls-b", &Default::default()).await.expect("delete the backup");
    let (_, body) = until_code(&r, &ns.name, 503, 30).await;
    assert_eq!(
        (body["via"].as_str(), body["failover"]["status"].as_str()),
        (Some("primary"), Some("unknown")),
        "{body}"
    );
    ns.delete().await;
}

#[tokio::test]
async fn answers_are_unknown_when_the_api_is_lost_and_recover_after() {
    let ns = setup("stale").await;
    let _op = Operator::start(&ns.name);
    let cluster = testing::repo_root().join("scripts/cluster.sh");
    let spare = |action: &str| {
        let out = std::process::Command::new("bash")
            .arg(&cluster)
            .args(["spare", action])
            .output()
            .expect("cluster.sh");
        assert!(out.status.success(), "spare {action}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    let kubeconfig = std::path::PathBuf::from(spare("up"));
    // The readiness service talks to the spare apiserver only; everything else keeps the main one.
    let r = ReadinessProcess::start(&ns.name, &kubeconfig, "2s");
    create(&ns, &tsvc("calls", serde_json::json!({}))).await;
    wait_status(&ns, "calls", 60, "Ready", |s| s.phase == Phase::Ready).await;
    until_code(&r, &ns.name, 200, 30).await;
    assert_eq!(testing::get(&format!("{}/readyz", r.url)).await.map(|s| s.0), Some(200));

    // Stop it in the background (a graceful stop takes seconds) and watch the answers meanwhile.
    let stopping = tokio::task::spawn_blocking({
        let cluster = cluster.clone();
        move || std::process::Command::new("bash").arg(&cluster).args(["spare", "down"]).status()
    });
    let (_, body) = until_code(&r, &ns.name, 503, 30).await;
    let unknown_at = jiff::Timestamp::now().as_millisecond();
    assert_eq!(body["status"], "unknown");
    let unconfirmed_for = unknown_at - body["timestamp"].as_i64().unwrap_or(0);
    eprintln!("unknown once unconfirmed for {unconfirmed_for} ms (stale-after 2s)");
    assert!(
        unconfirmed_for >= 1900,
        "unknown only after --stale-after without confirmation: {unconfirmed_for} ms"
    );
    assert!(stopping.await.expect("join").expect("cluster.sh").success());
    assert_eq!(testing::get(&format!("{}/readyz", r.url)).await.map(|s| s.0), Some(503));

    spare("up");
    let (_, body) = until_code(&r, &ns.name, 200, 60).await;
    assert_eq!(body["status"], "ready");
    spare("down");
    ns.delete().await;
}

#[tokio::test]
async fn the_dashboard_shows_services_and_changes_live_in_a_browser() {
    use tokio::io::AsyncBufReadExt;

    let ns = setup("dashboard").await;
    let _op = Operator::start(&ns.name);
    let r = ReadinessProcess::start(&ns.name, &testing::kubeconfig_path(), "10s");
    create(&ns, &tsvc("calls", serde_json::json!({ "replicas": 2 }))).await;
    create(&ns, &tsvc("sms", serde_json::json!({}))).await;
    wait_status(&ns, "calls", 60, "Ready", |s| s.phase == Phase::Ready && s.ready_replicas == 2).await;
    wait_status(&ns, "sms", 60, "Ready", |s| s.phase == Phase::Ready).await;

    let modules = testing::cache_dir().join("playwright-core/node_modules");
    assert!(modules.join("playwright-core").exists(), "playwright-core missing: run scripts/setup.sh");
    assert!(std::path::Path::new("/usr/bin/chromium").exists(), "chromium missing: run scripts/setup.sh");
    let logs = testing::repo_root().join("target/e2e-logs");
    let script = testing::repo_root().join("operator/tests/browser/dashboard.cjs");
    let mut browser = tokio::process::Command::new("node")
        .arg(&script)
        .arg(format!("{}/", r.url))
        .arg(format!("{}/calls", ns.name))
        .arg(logs.join("dashboard-before.png"))
        .arg(logs.join("dashboard.png"))
        .env("NODE_PATH", &modules)
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("node");
    let mut lines = tokio::io::BufReader::new(browser.stdout.take().expect("stdout")).lines();
    let first = tokio::time::timeout(Duration::from_secs(60), lines.next_line()).await.expect("page loaded");
    assert_eq!(first.expect("read").as_deref(), Some("READY"), "the page shows calls as ready");

    // A fault on the cluster: Telnyx becomes unreachable for both workers of `calls`.
    let mut partitions = vec![];
    for p in worker_pods(&ns, "calls").await {
        partitions.push(testing::node::Partition::from_telnyx(&pod_ip(&ns, &p.name_any()).await));
    }
    let changed =
        tokio::time::timeout(Duration::from_secs(60), lines.next_line()).await.expect("page changed");
    let changed = changed.expect("read").unwrap_or_default();
    assert!(changed.starts_with("CHANGED ") && !changed.ends_with("ready"), "{changed}");
    drop(partitions);
    let status = browser.wait().await.expect("node exit");
    assert!(status.success(), "browser script failed");
    assert!(logs.join("dashboard.png").exists());
    ns.delete().await;
}
