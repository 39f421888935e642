//! Convergence at scale, and the operator's memory and CPU.
//!
//! N TelephonyServices are created at once, and the clock runs until every one reports Ready.
//! Baseline: the same client creates the same TelephonyServices, Deployments and Services directly,
//! and patches the same Ready statuses once the Deployments are available, with no operator logic.
//! Both wait on the same controller-manager and simulated node, so the ratio is what the operator's
//! logic costs. The operator's RSS is read at 0 services and after each N, and its CPU time is
//! divided by its reconciliations.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use futures::{stream, StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Secret, Service};
use kube::api::{Api, ObjectMeta, Patch, PatchParams, PostParams};
use kube::runtime::{watcher, WatchStreamExt};
use kube::ResourceExt;
use telephony_operator::crd::{Phase, TelephonyService};
use telephony_operator::desired;
use testing::{wait_until, TestNamespace};

#[derive(clap::Args)]
pub struct Args {
    /// Numbers of TelephonyServices to converge, one run each.
    #[arg(long, value_delimiter = ',', default_value = "100,500,1000")]
    sizes: Vec<usize>,
    /// The operator binary to run (built with `cargo build --release`).
    #[arg(long, default_value = "target/release/telephony-operator")]
    operator: String,
    /// Give up on one run after this many seconds.
    #[arg(long, default_value_t = 900)]
    timeout_secs: u64,
    /// Measure the baseline only up to this many services (the largest runs measure the
    /// operator's memory, CPU and time per service; their baseline would double the run).
    #[arg(long, default_value_t = usize::MAX)]
    baseline_up_to: usize,
}

/// Requests in flight at once, for both the operator's client and the baseline's.
const CONCURRENCY: usize = 50;

struct Run {
    n: usize,
    /// The operator's writes to the API by kind, over the run (`dialtone_api_writes_total`).
    writes: Vec<(String, u64)>,
    operator: Duration,
    baseline: Option<Duration>,
    rss_mib: f64,
    cpu_ms_per_reconcile: f64,
    reconciles: u64,
}

fn tsvc(i: usize) -> anyhow::Result<TelephonyService> {
    let spec = serde_json::from_value(serde_json::json!({
        "image": "registry.example.com/dialtone/telephony-pod:0.1.0",
        "telnyx": { "apiKeySecretRef": { "name": "telnyx" }, "connectionId": "bench" }
    }))?;
    Ok(TelephonyService::new(&format!("svc-{i}"), spec))
}

async fn namespace(prefix: &str) -> anyhow::Result<TestNamespace> {
    let ns = TestNamespace::create(prefix).await;
    let secret = Secret {
        metadata: ObjectMeta { name: Some("telnyx".into()), ..Default::default() },
        string_data: Some([("apiKey".to_string(), "bench-key".to_string())].into()),
        ..Default::default()
    };
    ns.api::<Secret>().create(&PostParams::default(), &secret).await?;
    Ok(ns)
}

/// Waits until `n` TelephonyServices in `api` report Ready (from a watch, not by polling).
async fn all_ready(api: Api<TelephonyService>, n: usize, timeout: Duration) -> anyhow::Result<()> {
    let mut ready = HashSet::new();
    let mut events = watcher(api, watcher::Config::default()).applied_objects().boxed();
    tokio::time::timeout(timeout, async {
        while let Some(t) = events.try_next().await? {
            if t.status.as_ref().is_some_and(|s| s.phase == Phase::Ready) {
                ready.insert(t.name_any());
            }
            if ready.len() >= n {
                return Ok(());
            }
        }
        anyhow::bail!("watch ended")
    })
    .await
    .map_err(|_| anyhow::anyhow!("{} of {n} Ready after {timeout:?}", ready.len()))?
}

/// Deletes a run's namespace and waits until it is gone, so the next run starts on a quiet cluster
/// (garbage-collecting a thousand Deployments and their pods takes a while).
async fn drain(ns: TestNamespace) {
    let (client, name) = (ns.client.clone(), ns.name.clone());
    ns.delete().await;
    let namespaces: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(client);
    let deadline = Instant::now() + Duration::from_secs(600);
    while Instant::now() < deadline && namespaces.get_opt(&name).await.ok().flatten().is_some() {
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// (user + system CPU time in ms, RSS in MiB) of a process, from /proc.
fn usage(pid: u32) -> (f64, f64) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may hold spaces): utime is the 12th, stime the 13th.
    let fields: Vec<&str> = stat.rsplit(')').next().unwrap_or_default().split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok()).unwrap_or(0.0);
    let cpu_ms = (ticks(11) + ticks(12)) * 10.0; // USER_HZ is 100 on Linux
    (cpu_ms, crate::stats::rss_mib(pid))
}

async fn reconciles(admin: &str) -> u64 {
    let body = testing::get(&format!("{admin}/metrics")).await.map(|r| r.1).unwrap_or_default();
    body.lines()
        .find_map(|l| l.strip_prefix("dialtone_reconciliations_total "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

/// `dialtone_api_writes_total` by kind.
async fn writes(admin: &str) -> Vec<(String, u64)> {
    let body = testing::get(&format!("{admin}/metrics")).await.map(|r| r.1).unwrap_or_default();
    body.lines()
        .filter_map(|l| {
            let rest = l.strip_prefix("dialtone_api_writes_total{kind=\"")?;
            let (kind, value) = rest.split_once("\"} ")?;
            Some((kind.to_string(), value.trim().parse().ok()?))
        })
        .collect()
}

/// The operator converging `n` services; returns the time, RSS at 0 services, and the run's figures.
async fn with_operator(args: &Args, n: usize) -> anyhow::Result<(f64, Run)> {
    let ns = namespace("bench-conv-op").await?;
    let port = testing::free_port();
    let admin = format!("http://127.0.0.1:{port}");
    let mut child = tokio::process::Command::new(&args.operator)
        // The simulated node's pod IPs lead nowhere: never ask its workers anything.
        .args([
            "run",
            "--leader-elect=false",
            "--ask-workers=false",
            "--log-format=json",
            "--namespace",
            &ns.name,
        ])
        .arg(format!("--admin-addr=127.0.0.1:{port}"))
        .env("KUBECONFIG", testing::kubeconfig_path())
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()?;
    let pid = child.id().unwrap_or(0);
    wait_until(Duration::from_secs(30), "operator ready", || async {
        (testing::get(&format!("{admin}/readyz")).await?.0 == 200).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (cpu_before, rss_empty) = usage(pid);

    let api = ns.api::<TelephonyService>();
    let started = Instant::now();
    let waiter = tokio::spawn(all_ready(api.clone(), n, Duration::from_secs(args.timeout_secs)));
    stream::iter(0..n)
        .map(|i| {
            let api = api.clone();
            async move { api.create(&PostParams::default(), &tsvc(i)?).await.map_err(anyhow::Error::from) }
        })
        .buffer_unordered(CONCURRENCY)
        .try_collect::<Vec<_>>()
        .await?;
    waiter.await??;
    let took = started.elapsed();
    tokio::time::sleep(Duration::from_secs(2)).await; // let the last status writes settle
    let (cpu_after, rss) = usage(pid);
    let count = reconciles(&admin).await;
    let writes = writes(&admin).await;
    let _ = child.kill().await;
    drain(ns).await;
    let run = Run {
        n,
        writes,
        operator: took,
        baseline: None,
        rss_mib: rss,
        cpu_ms_per_reconcile: (cpu_after - cpu_before) / count.max(1) as f64,
        reconciles: count,
    };
    Ok((rss_empty, run))
}

/// The baseline: the same objects and statuses written directly, with no operator logic.
async fn baseline(args: &Args, n: usize) -> anyhow::Result<Duration> {
    let ns = namespace("bench-conv-base").await?;
    let tsvcs = ns.api::<TelephonyService>();
    let deployments = ns.api::<Deployment>();
    let services = ns.api::<Service>();
    let pp = PatchParams::apply("dialtone-bench-baseline").force();
    let started = Instant::now();

    // Each Deployment that becomes available gets its TelephonyService's Ready status.
    let watch_api = deployments.clone();
    let status_api = tsvcs.clone();
    let timeout = Duration::from_secs(args.timeout_secs);
    let marker = tokio::spawn(async move {
        let mut done = HashSet::new();
        let mut events = watcher(watch_api, watcher::Config::default()).applied_objects().boxed();
        tokio::time::timeout(timeout, async {
            while let Some(d) = events.try_next().await? {
                let ready = d.status.as_ref().and_then(|s| s.ready_replicas).unwrap_or(0);
                let owner = d.owner_references().first().map(|o| o.name.clone()).unwrap_or_default();
                if ready >= 1 && !owner.is_empty() && done.insert(owner.clone()) {
                    let status = serde_json::json!({ "status": {
                        "phase": "Ready", "observedGeneration": 1, "replicas": 1, "readyReplicas": 1,
                        "ready": "1/1", "restarts": "0/3", "message": "1/1 workers ready",
                    }});
                    status_api.patch_status(&owner, &PatchParams::default(), &Patch::Merge(&status)).await?;
                    if done.len() >= n {
                        return Ok(());
                    }
                }
            }
            anyhow::bail!("watch ended")
        })
        .await
        .map_err(|_| anyhow::anyhow!("baseline: timed out after {timeout:?}"))?
    });
    stream::iter(0..n)
        .map(|i| {
            let (tsvcs, deployments, services, pp) =
                (tsvcs.clone(), deployments.clone(), services.clone(), &pp);
            async move {
                let t = tsvcs.create(&PostParams::default(), &tsvc(i)?).await?;
                let d = desired::deployment(&t, t.spec.replicas);
                deployments.patch(&d.name_any(), pp, &Patch::Apply(&d)).await?;
                let s = desired::service(&t);
                services.patch(&s.name_any(), pp, &Patch::Apply(&s)).await?;
                anyhow::Ok(())
            }
        })
        .buffer_unordered(CONCURRENCY)
        .try_collect::<Vec<_>>()
        .await?;
    marker.await??;
    let took = started.elapsed();
    drain(ns).await;
    Ok(took)
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    crate::crd::install(&testing::client().await).await?;

    let mut runs = vec![];
    let mut rss_empty = 0.0;
    for &n in &args.sizes {
        let (empty, mut run) = with_operator(&args, n).await?;
        if runs.is_empty() {
            rss_empty = empty;
        }
        if n <= args.baseline_up_to {
            run.baseline = Some(baseline(&args, n).await?);
        }
        eprintln!("N={n}: operator {:?}, baseline {:?}", run.operator, run.baseline);
        runs.push(run);
    }

    println!("\n## Convergence at scale (N TelephonyServices created at once, until all are Ready)\n");
    println!("| N | operator | baseline: direct writes, no operator logic | operator throughput / baseline | operator ms per service |");
    println!("| --- | --- | --- | --- | --- |");
    for r in &runs {
        let op = r.operator.as_secs_f64();
        let (base, ratio) = match r.baseline.map(|b| b.as_secs_f64()) {
            Some(b) => (format!("{b:.1} s"), format!("{:.2}×", b / op.max(f64::EPSILON))),
            None => ("not measured".into(), String::new()),
        };
        println!("| {} | {op:.1} s | {base} | {ratio} | {:.1} |", r.n, op * 1000.0 / r.n as f64);
    }
    println!("\n## API writes per service, create to Ready\n");
    println!("The baseline writes 3 per service (Deployment, Service, one status); both also create the TelephonyService.\n");
    println!("| N | operator writes per service | by kind |");
    println!("| --- | --- | --- |");
    for r in &runs {
        let total: u64 = r.writes.iter().map(|(_, v)| v).sum();
        let per = |v: u64| v as f64 / r.n.max(1) as f64;
        let kinds: Vec<String> = r.writes.iter().map(|(k, v)| format!("{k} {:.2}", per(*v))).collect();
        println!("| {} | {:.2} | {} |", r.n, per(total), kinds.join(", "));
    }
    println!("\n## Operator memory and CPU\n");
    println!("RSS 2 s after the last service is Ready (the operator's code is most of the RSS at 0).\n");
    println!("| services | RSS | reconciliations | CPU per reconciliation |");
    println!("| --- | --- | --- | --- |");
    println!("| 0 | {rss_empty:.1} MiB | | |");
    for r in &runs {
        println!("| {} | {:.1} MiB | {} | {:.2} ms |", r.n, r.rss_mib, r.reconciles, r.cpu_ms_per_reconcile);
    }
    Ok(())
}
