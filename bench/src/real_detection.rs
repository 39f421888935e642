//! Failure detection on the real node: the chart's operator and readiness pods supervise one
//! worker pod; its process is killed from the host (SIGKILL) and timed to (a) the kubelet's pod
//! status write, seen on a watch (the floor: the kubelet notices through its 1 s relist), (b) the
//! TelephonyService status counting the failure, (c) the readiness Service answering 503 (polled
//! every 2 ms through its ClusterIP, as an app would) and its SSE stream saying so: the heartbeat
//! path, and (d) a second readiness service with heartbeats off answering 503: the same kill seen
//! through Kubernetes alone. Then the worker hangs (SIGSTOP), timed to the 503 (`hang`).
//!
//! Also: apply → worker pod Ready, and the resident memory of the node's components and of the
//! operator, readiness and worker pods with `--services` services.

use dialtone_api::names::SERVICE_LABEL;
use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::api::{DeleteParams, ListParams, ObjectMeta, PostParams};
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Api, ResourceExt};
use telephony_operator::crd::{Phase, TelephonyService};
use testing::{node, tool, wait_until, TestNamespace};

use crate::stats::{ms, percentile, rss_mib};
use crate::{hang, sse};

#[derive(clap::Args)]
pub struct Args {
    /// Worker process kills to time (a fresh pod each).
    #[arg(long, default_value_t = 50)]
    kills: usize,
    /// Worker hangs (SIGSTOP, then SIGCONT) to time.
    #[arg(long, default_value_t = 20)]
    hangs: usize,
    /// The telephony-operator binary, for the readiness service with heartbeats off (the baseline).
    #[arg(long, default_value = "target/release/telephony-operator")]
    operator: std::path::PathBuf,
    /// TelephonyServices applied one by one, timed to their worker pod's Ready.
    #[arg(long, default_value_t = 20)]
    applies: usize,
    /// Services running while memory is read.
    #[arg(long, default_value_t = 10)]
    services: usize,
    /// Extra chart values (`helm --set`), e.g. `operator.resources.requests.cpu=500m`.
    #[arg(long = "chart-set")]
    chart_sets: Vec<String>,
}

fn spec() -> serde_json::Value {
    serde_json::json!({
        "image": node::WORKER_IMAGE,
        "telnyx": { "apiKeySecretRef": { "name": "telnyx" }, "connectionId": "bench", "baseUrl": node::telnyx_url() },
        "health": { "periodSeconds": 2, "timeoutSeconds": 1 },
        // Every kill is a counted failure, never a circuit opening.
        "restartBudget": { "maxRestarts": 1000, "windowSeconds": 600 },
        "resources": { "requests": { "cpu": "10m", "memory": "16Mi" }, "limits": { "memory": "64Mi" } }
    })
}

/// A service labelled for the chart's operator (`selector=bench=<label>`).
fn service(name: &str, label: &str) -> anyhow::Result<TelephonyService> {
    let mut t = TelephonyService::new(name, serde_json::from_value(spec())?);
    t.metadata.labels = Some([("bench".to_string(), label.to_string())].into());
    Ok(t)
}

fn used(t: &TelephonyService) -> u32 {
    t.status.as_ref().and_then(|s| s.restart_budget.as_ref()).map_or(0, |b| b.used)
}

/// The kubelet reports the worker container dead (not running), as the operator reads it.
fn dead(p: &Pod) -> bool {
    let statuses = p.status.as_ref().and_then(|s| s.container_statuses.as_ref());
    statuses.is_some_and(|c| c.iter().any(|c| c.state.as_ref().is_some_and(|s| s.running.is_none())))
}

fn ready(p: &Pod) -> bool {
    p.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    let system = TestNamespace::create("bench-real").await;
    let app = TestNamespace::create("bench-real-app").await;
    let label = app.name.clone();
    let chart = testing::repo_root().join("charts/dialtone").display().to_string();
    let selector = format!("selector=bench={label}");
    // A release of its own (ClusterRoles are cluster-wide: an earlier run's would conflict).
    let release = system.name.replace("e2e-", "r");
    let mut helm =
        vec!["install", &release, &chart, "-n", &system.name, "--wait=legacy", "--timeout", "180s"];
    for set in std::iter::once(&selector).chain(&args.chart_sets) {
        helm.extend(["--set", set]);
    }
    tool("helm", &helm, None)
        .map_err(|e| anyhow::anyhow!("helm install: {e}\n{}", testing::namespace_report(&system.name)))?;
    let readiness_ip = tool(
        "kubectl",
        &[
            "get",
            "svc",
            &format!("{release}-dialtone-readiness"),
            "-n",
            &system.name,
            "-o",
            "jsonpath={.spec.clusterIP}",
        ],
        None,
    )
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    let secret = Secret {
        metadata: ObjectMeta { name: Some("telnyx".into()), ..Default::default() },
        string_data: Some([("apiKey".to_string(), "bench-key".to_string())].into()),
        ..Default::default()
    };
    app.api::<Secret>().create(&PostParams::default(), &secret).await?;

    // Kubernetes alone: a readiness service on the host with heartbeats off, for the same kills.
    let port = testing::free_port();
    let _baseline = tokio::process::Command::new(&args.operator)
        .args(["readiness", "--log-format=json", "--namespaces", &app.name, "--worker-heartbeat=false"])
        .arg(format!("--addr=127.0.0.1:{port}"))
        .env("KUBECONFIG", testing::kubeconfig_path())
        .env("RUST_LOG", "warn")
        .kill_on_drop(true)
        .spawn()?;
    let readiness = Readiness {
        heartbeat: format!("http://{readiness_ip}"),
        kubernetes: format!("http://127.0.0.1:{port}"),
    };
    let kills = kill_samples(&app, &label, &readiness, args.kills).await?;
    let hangs = hang::samples(&app, &readiness.heartbeat, args.hangs).await?;
    app.api::<TelephonyService>().delete("bench", &DeleteParams::default()).await?;
    let applies = apply_samples(&app, &label, args.applies).await?;
    let memory = memory(&app, &system, &label, args.services).await?;
    let _ = tool("helm", &["uninstall", &release, "-n", &system.name, "--wait=legacy"], None);
    app.delete().await;
    system.delete().await;

    let chart =
        if args.chart_sets.is_empty() { "chart defaults".to_string() } else { args.chart_sets.join(", ") };
    println!(
        "\n## Failure detection on the real node ({} kills of the worker process; {chart})\n",
        args.kills
    );
    table(&[
        ("kill → readiness answers 503 (heartbeat)", &kills.unavailable),
        ("kill → the app's SSE subscriber is told (heartbeat)", &kills.told),
        ("kill → readiness answers 503 (heartbeats off: Kubernetes alone)", &kills.unavailable_k8s),
        ("kill → kubelet writes the pod not Ready (baseline: the kubelet)", &kills.not_ready),
        ("kill → kubelet writes the container dead (baseline: the kubelet)", &kills.dead),
        ("kill → TelephonyService status counts it", &kills.status),
        ("kubelet's dead write → status counts it (the operator)", &kills.status_after_pod),
        (
            "kubelet's not-Ready write → 503, heartbeats off (operator + readiness)",
            &kills.unavailable_after_pod,
        ),
    ]);
    println!(
        "\n## A hung worker on the real node ({} SIGSTOPs; heartbeat every 100 ms, down after 3 missed)\n",
        args.hangs
    );
    table(&[
        ("hang → readiness answers 503 (heartbeat)", &hangs.unavailable),
        ("hang → the app's SSE subscriber is told (heartbeat)", &hangs.told),
    ]);
    println!(
        "\nWithout the heartbeat a hang is seen only when the kubelet's probes fail: with this spec \
         (probes every 2 s, timeout 1 s, 3 failures) at least 6 s."
    );
    println!("\n## Apply → worker pod Ready ({} TelephonyServices, one at a time)\n", args.applies);
    table(&[
        ("apply → worker pod Ready", &applies.pod),
        ("apply → TelephonyService Ready", &applies.service),
    ]);
    println!("\n## Resident memory with {} services (one worker each), MiB\n", args.services);
    println!("| process | RSS |");
    println!("| --- | --- |");
    for (what, mib) in memory {
        // NaN: no pod of the kind was running to measure.
        if mib.is_nan() {
            println!("| {what} | not measured |");
        } else {
            println!("| {what} | {mib:.1} |");
        }
    }
    Ok(())
}

/// p50, p99 and max of each row.
pub fn table(rows: &[(&str, &Vec<Duration>)]) {
    println!("| measured | p50 | p99 | max |");
    println!("| --- | --- | --- | --- |");
    for (what, s) in rows {
        let p = |q| ms(percentile(s, q));
        println!("| {what} | {} | {} | {} |", p(50.0), p(99.0), p(100.0));
    }
}

/// The two readiness services the kills are timed with.
struct Readiness {
    /// The chart's, following the workers' heartbeats (its Service's ClusterIP).
    heartbeat: String,
    /// One with heartbeats off, on the host: Kubernetes alone.
    kubernetes: String,
}

#[derive(Default)]
struct Kills {
    not_ready: Vec<Duration>,
    dead: Vec<Duration>,
    status: Vec<Duration>,
    unavailable: Vec<Duration>,
    told: Vec<Duration>,
    unavailable_k8s: Vec<Duration>,
    status_after_pod: Vec<Duration>,
    unavailable_after_pod: Vec<Duration>,
}

/// The name of the Ready worker of `bench`, once every readiness answer in `urls` is 200.
pub async fn ready_worker(pods: &Api<Pod>, urls: &[&str]) -> String {
    wait_until(Duration::from_secs(120), "a Ready worker and readiness 200", || async {
        let list = pods.list(&ListParams::default().labels(&format!("{SERVICE_LABEL}=bench"))).await.ok()?;
        let p = list.items.into_iter().find(|p| ready(p) && p.metadata.deletion_timestamp.is_none())?;
        for url in urls {
            (code(url).await? == 200).then_some(())?;
        }
        Some(p.name_any())
    })
    .await
}

/// The HTTP status of a readiness answer (None: no answer). One client for every poll: building
/// one (its TLS roots) takes tens of milliseconds, and its kept-alive connection keeps asking the
/// same readiness replica.
pub async fn code(url: &str) -> Option<u16> {
    static CLIENT: std::sync::OnceLock<reqwest::Client> = std::sync::OnceLock::new();
    let client = CLIENT.get_or_init(testing::http);
    client.get(url).send().await.ok().map(|r| r.status().as_u16())
}

/// Polls `url` every 2 ms until it answers `want`; when.
pub async fn until(url: &str, want: u16) -> anyhow::Result<Instant> {
    loop {
        if code(url).await == Some(want) {
            return Ok(Instant::now());
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

async fn kill_samples(
    app: &TestNamespace,
    label: &str,
    readiness: &Readiness,
    n: usize,
) -> anyhow::Result<Kills> {
    let tsvcs = app.api::<TelephonyService>();
    tsvcs.create(&PostParams::default(), &service("bench", label)?).await?;
    let pods = app.api::<Pod>();
    let path = format!("/v1/status/{}/bench", app.name);
    let (url, url_k8s) =
        (format!("{}{path}", readiness.heartbeat), format!("{}{path}", readiness.kubernetes));
    let mut events = sse::follow(&readiness.heartbeat, &app.name, "bench");
    let mut out = Kills::default();
    for i in 0..n {
        // A fresh pod each time: the kubelet holds a second restart of one container in
        // CrashLoopBackOff (10 s, doubling), which would time the back-off, not the detection.
        let pod = ready_worker(&pods, &[&url, &url_k8s]).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        sse::drain(&mut events);
        let by_name = |n: &str| watcher::Config::default().fields(&format!("metadata.name={n}"));
        let mut tsvc_watch = watcher(tsvcs.clone(), by_name("bench")).applied_objects().boxed();
        let mut pod_watch = watcher(pods.clone(), by_name(&pod)).applied_objects().boxed();
        let before = tsvc_watch.try_next().await?.as_ref().map_or(0, used);
        pod_watch.try_next().await?;

        let (pid, _) = node::container_process(&pods, &pod).await;
        let t0 = Instant::now();
        node::signal_process(pid, node::SIGKILL);
        // The kubelet's writes: the first not Ready (its readiness probe, or the death), and the
        // first saying the container is dead (its 1 s relist); often two writes, in that order.
        let pod_written = async {
            let mut not_ready = None;
            while let Some(p) = pod_watch.try_next().await? {
                let now = Instant::now();
                if !ready(&p) {
                    not_ready.get_or_insert(now);
                }
                if dead(&p) {
                    return Ok::<_, anyhow::Error>((not_ready.unwrap_or(now), now));
                }
            }
            anyhow::bail!("pod watch ended")
        };
        let counted = async {
            while let Some(t) = tsvc_watch.try_next().await? {
                if used(&t) > before {
                    return Ok::<_, anyhow::Error>(Instant::now());
                }
            }
            anyhow::bail!("TelephonyService watch ended")
        };
        let ((t_not_ready, t_dead), t_status, t_503, t_told, t_503_k8s) =
            tokio::time::timeout(Duration::from_secs(30), async {
                futures::try_join!(
                    pod_written,
                    counted,
                    until(&url, 503),
                    sse::unhealthy(&mut events),
                    until(&url_k8s, 503)
                )
            })
            .await??;
        out.not_ready.push(t_not_ready - t0);
        out.dead.push(t_dead - t0);
        out.status.push(t_status - t0);
        out.unavailable.push(t_503 - t0);
        out.told.push(t_told.saturating_duration_since(t0));
        out.unavailable_k8s.push(t_503_k8s - t0);
        out.status_after_pod.push(t_status.saturating_duration_since(t_dead));
        out.unavailable_after_pod.push(t_503_k8s.saturating_duration_since(t_not_ready));
        eprintln!(
            "kill {:>3}: 503 {} told {} | kubelet not ready {} dead {} | status {} | 503 without heartbeat {}",
            i + 1,
            ms(t_503 - t0),
            ms(t_told.saturating_duration_since(t0)),
            ms(t_not_ready - t0),
            ms(t_dead - t0),
            ms(t_status - t0),
            ms(t_503_k8s - t0)
        );
        pods.delete(&pod, &DeleteParams { grace_period_seconds: Some(0), ..Default::default() }).await?;
    }
    Ok(out)
}

#[derive(Default)]
struct Applies {
    pod: Vec<Duration>,
    service: Vec<Duration>,
}

async fn apply_samples(app: &TestNamespace, label: &str, n: usize) -> anyhow::Result<Applies> {
    let tsvcs = app.api::<TelephonyService>();
    let pods = app.api::<Pod>();
    let mut out = Applies::default();
    for i in 0..n {
        let name = format!("apply-{i}");
        let t0 = Instant::now();
        tsvcs.create(&PostParams::default(), &service(&name, label)?).await?;
        let selector = format!("{SERVICE_LABEL}={name}");
        let pod_ready = wait_until(Duration::from_secs(120), "worker pod Ready", || async {
            let list = pods.list(&ListParams::default().labels(&selector)).await.ok()?;
            list.items.iter().any(ready).then(Instant::now)
        });
        let service_ready = wait_until(Duration::from_secs(120), "TelephonyService Ready", || async {
            (tsvcs.get(&name).await.ok()?.status?.phase == Phase::Ready).then(Instant::now)
        });
        let (p, s) = tokio::join!(pod_ready, service_ready);
        out.pod.push(p - t0);
        out.service.push(s - t0);
        eprintln!("apply {:>3}: pod Ready {} service Ready {}", i + 1, ms(p - t0), ms(s - t0));
        tsvcs.delete(&name, &DeleteParams::default()).await?;
    }
    Ok(out)
}

/// RSS of the node's processes (pid files of `scripts/cluster.sh`) and of the pods' processes
/// (their containers' PIDs from containerd), with `services` services of one worker each.
async fn memory(
    app: &TestNamespace,
    system: &TestNamespace,
    label: &str,
    services: usize,
) -> anyhow::Result<Vec<(String, f64)>> {
    let tsvcs = app.api::<TelephonyService>();
    for i in 0..services {
        tsvcs.create(&PostParams::default(), &service(&format!("held-{i}"), label)?).await?;
    }
    // Only these run: the applied ones were deleted after their timing.
    let pods = app.api::<Pod>();
    wait_until(Duration::from_secs(120), "only the held services' workers", || async {
        let list = pods.list(&ListParams::default()).await.ok()?;
        (list.items.len() == services).then_some(())
    })
    .await;
    wait_until(Duration::from_secs(180), "every service Ready", || async {
        let list = tsvcs.list(&ListParams::default()).await.ok()?;
        let ready = list.items.iter().filter(|t| t.status.as_ref().is_some_and(|s| s.phase == Phase::Ready));
        (ready.count() >= services).then_some(())
    })
    .await;
    // Settled: 2 s after the last service is Ready.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut rows = vec![];
    for name in ["kubelet", "containerd", "kube-proxy", "kube-scheduler", "kube-apiserver", "etcd"] {
        if let Some(pid) = node::component_pid(name) {
            rows.push((name.to_string(), rss_mib(pid)));
        }
    }
    // Each pod whose first container containerd runs; one that it doesn't (restarting, or its
    // status not written yet) is left out, and the row says how many were measured.
    let pod_rss = |api: Api<Pod>, selector: &'static str| async move {
        let list = api.list(&ListParams::default().labels(selector)).await.ok()?;
        let running = list.items.into_iter().filter_map(|p| {
            let id = p.status?.container_statuses?.first()?.container_id.clone()?;
            let pid = node::container_pid(id.trim_start_matches("containerd://"))?;
            Some(rss_mib(u32::try_from(pid).ok()?))
        });
        Some(running.collect::<Vec<_>>())
    };
    let system_pods: Api<Pod> = system.api();
    for (what, api, selector) in [
        (
            "operator pod (leader and standby, each)",
            system_pods.clone(),
            "app.kubernetes.io/component=operator",
        ),
        ("readiness pod (each)", system_pods, "app.kubernetes.io/component=readiness"),
        ("worker pod (each)", app.api::<Pod>(), "app.kubernetes.io/component=worker"),
    ] {
        let each = pod_rss(api, selector).await.unwrap_or_default();
        let max = each.iter().cloned().fold(0.0, f64::max);
        let mean = each.iter().sum::<f64>() / each.len() as f64;
        rows.push((format!("{what}: mean of {}, max {max:.1}", each.len()), mean));
    }
    Ok(rows)
}
