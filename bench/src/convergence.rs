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
    /// Rounds at each size that has a baseline. The operator's and the baseline's runs alternate
    /// (operator first in odd rounds, baseline first in even ones) and the table shows each one's
    /// median: one run of the same binary at N = 1000 varies by ±15 % on 2 cores (73-94 s).
    #[arg(long, default_value_t = 1)]
    rounds: usize,
    /// Services per namespace: a run of N spreads over ⌈N / this⌉ namespaces (default: one).
    /// kube-controller-manager 1.20's ReplicaSet, Deployment and endpoints controllers list every
    /// object of the namespace on each sync, so a single namespace costs them O(N²).
    #[arg(long, default_value_t = usize::MAX)]
    per_namespace: usize,
}

/// The label that marks one run's TelephonyServices; the operator selects on it.
const RUN_LABEL: &str = "dialtone.dev/bench-run";

/// Requests in flight at once, for both the operator's client and the baseline's.
const CONCURRENCY: usize = 50;

/// The control plane's processes (their pid files' names in `scripts/cluster.sh`), whose CPU time
/// says where a run's time went: 2 cores give 2 CPU seconds per second.
const COMPONENTS: [&str; 5] =
    ["kube-apiserver", "etcd", "kube-controller-manager", "kube-scheduler", "sim-node"];

/// CPU seconds of each of COMPONENTS, then of the process that plays the controller (the
/// operator, or this benchmark's client for the baseline).
fn cpu_now(controller: u32) -> Vec<f64> {
    let pids = COMPONENTS.iter().map(|c| testing::node::component_pid(c).unwrap_or(0));
    pids.chain([controller]).map(crate::stats::cpu_seconds).collect()
}

/// CPU seconds spent since `before`, per process.
fn cpu_since(before: &[f64], controller: u32) -> Vec<f64> {
    cpu_now(controller).iter().zip(before).map(|(a, b)| a - b).collect()
}

struct Run {
    n: usize,
    /// CPU seconds per process during the operator's run and the baseline's (as `cpu_now`).
    cpu: Vec<f64>,
    baseline_cpu: Vec<f64>,
    /// The operator's writes to the API by kind, over the run (`dialtone_api_writes_total`).
    writes: Vec<(String, u64)>,
    operator: Duration,
    baseline: Option<Duration>,
    /// Every round's time, in the order run; `operator` and `baseline` are their medians.
    operator_rounds: Vec<Duration>,
    baseline_rounds: Vec<Duration>,
    rss_mib: f64,
    cpu_ms_per_reconcile: f64,
    reconciles: u64,
}

/// One run's namespaces, its TelephonyServices spread over them in order.
struct Namespaces {
    all: Vec<TestNamespace>,
    per: usize,
    /// The run's `RUN_LABEL` value.
    run: String,
}

impl Namespaces {
    async fn create(prefix: &str, n: usize, per: usize) -> anyhow::Result<Namespaces> {
        let per = per.clamp(1, n.max(1));
        let mut all = vec![];
        for _ in 0..n.div_ceil(per).max(1) {
            let ns = TestNamespace::create(prefix).await;
            let secret = Secret {
                metadata: ObjectMeta { name: Some("telnyx".into()), ..Default::default() },
                string_data: Some([("apiKey".to_string(), "bench-key".to_string())].into()),
                ..Default::default()
            };
            ns.api::<Secret>().create(&PostParams::default(), &secret).await?;
            all.push(ns);
        }
        let run = all[0].name.clone();
        Ok(Namespaces { all, per, run })
    }

    /// The namespace of service `i`.
    fn of(&self, i: usize) -> &TestNamespace {
        &self.all[(i / self.per).min(self.all.len() - 1)]
    }

    fn tsvc(&self, i: usize) -> anyhow::Result<TelephonyService> {
        let spec = serde_json::from_value(serde_json::json!({
            "image": "registry.example.com/dialtone/telephony-pod:0.1.0",
            "telnyx": { "apiKeySecretRef": { "name": "telnyx" }, "connectionId": "bench" }
        }))?;
        let mut t = TelephonyService::new(&format!("svc-{i}"), spec);
        t.metadata.namespace = Some(self.of(i).name.clone());
        t.metadata.labels = Some([(RUN_LABEL.to_string(), self.run.clone())].into());
        Ok(t)
    }

    fn selector(&self) -> String {
        format!("{RUN_LABEL}={}", self.run)
    }
}

/// Waits until the run's `n` TelephonyServices report Ready (from a watch, not by polling).
async fn all_ready(ns: &Namespaces, n: usize, timeout: Duration) -> anyhow::Result<()> {
    let api = Api::<TelephonyService>::all(ns.all[0].client.clone());
    let mut ready = HashSet::new();
    let config = watcher::Config::default().labels(&ns.selector());
    let mut events = watcher(api, config).applied_objects().boxed();
    tokio::time::timeout(timeout, async {
        while let Some(t) = events.try_next().await? {
            if t.status.as_ref().is_some_and(|s| s.phase == Phase::Ready) {
                ready.insert((t.namespace(), t.name_any()));
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

/// Deletes a run's namespaces and waits until they are gone, so the next run starts on a quiet
/// cluster (garbage-collecting a thousand Deployments and their pods takes a while).
async fn drain(ns: Namespaces) {
    let client = ns.all[0].client.clone();
    let names: Vec<String> = ns.all.iter().map(|n| n.name.clone()).collect();
    for n in ns.all {
        n.delete().await;
    }
    let namespaces: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(client);
    let deadline = Instant::now() + Duration::from_secs(600);
    for name in names {
        while Instant::now() < deadline && namespaces.get_opt(&name).await.ok().flatten().is_some() {
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
}

/// (user + system CPU time in ms, RSS in MiB) of a process, from /proc.
fn usage(pid: u32) -> (f64, f64) {
    (crate::stats::cpu_seconds(pid) * 1000.0, crate::stats::rss_mib(pid))
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
    let ns = Namespaces::create("bench-conv-op", n, args.per_namespace).await?;
    let port = testing::free_port();
    let admin = format!("http://127.0.0.1:{port}");
    let mut child = tokio::process::Command::new(&args.operator)
        // The simulated node's pod IPs lead nowhere: never ask its workers anything.
        .args([
            "run",
            "--leader-elect=false",
            "--ask-workers=false",
            "--log-format=json",
            "--selector",
            &ns.selector(),
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

    let cpu_start = cpu_now(pid);
    let started = Instant::now();
    let waiter = all_ready(&ns, n, Duration::from_secs(args.timeout_secs));
    let creates = stream::iter(0..n)
        .map(|i| {
            let (api, t) = (ns.of(i).api::<TelephonyService>(), ns.tsvc(i));
            async move { api.create(&PostParams::default(), &t?).await.map_err(anyhow::Error::from) }
        })
        .buffer_unordered(CONCURRENCY)
        .try_collect::<Vec<_>>();
    tokio::try_join!(waiter, creates)?;
    let took = started.elapsed();
    let cpu = cpu_since(&cpu_start, pid);
    tokio::time::sleep(Duration::from_secs(2)).await; // let the last status writes settle
    let (cpu_after, rss) = usage(pid);
    let count = reconciles(&admin).await;
    let writes = writes(&admin).await;
    let _ = child.kill().await;
    drain(ns).await;
    let run = Run {
        n,
        cpu,
        baseline_cpu: vec![],
        writes,
        operator: took,
        baseline: None,
        operator_rounds: vec![took],
        baseline_rounds: vec![],
        rss_mib: rss,
        cpu_ms_per_reconcile: (cpu_after - cpu_before) / count.max(1) as f64,
        reconciles: count,
    };
    Ok((rss_empty, run))
}

/// The baseline: the same objects and statuses written directly, with no operator logic.
async fn baseline(args: &Args, n: usize) -> anyhow::Result<(Duration, Vec<f64>)> {
    let ns = Namespaces::create("bench-conv-base", n, args.per_namespace).await?;
    let client = ns.all[0].client.clone();
    let pp = PatchParams::apply("dialtone-bench-baseline").force();
    let cpu_start = cpu_now(std::process::id());
    let started = Instant::now();

    // Each Deployment that becomes available gets its TelephonyService's Ready status.
    let ours: HashSet<String> = ns.all.iter().map(|n| n.name.clone()).collect();
    let (watch_api, status_client) = (Api::<Deployment>::all(client.clone()), client.clone());
    let timeout = Duration::from_secs(args.timeout_secs);
    let marker = async move {
        let mut done = HashSet::new();
        let mut events = watcher(watch_api, watcher::Config::default()).applied_objects().boxed();
        tokio::time::timeout(timeout, async {
            while let Some(d) = events.try_next().await? {
                let ready = d.status.as_ref().and_then(|s| s.ready_replicas).unwrap_or(0);
                let owner = d.owner_references().first().map(|o| o.name.clone()).unwrap_or_default();
                let namespace = d.namespace().unwrap_or_default();
                if ready < 1 || owner.is_empty() || !ours.contains(&namespace) {
                    continue;
                }
                if done.insert((namespace.clone(), owner.clone())) {
                    let status = serde_json::json!({ "status": {
                        "phase": "Ready", "observedGeneration": 1, "replicas": 1, "readyReplicas": 1,
                        "ready": "1/1", "restarts": "0/3", "message": "1/1 workers ready",
                    }});
                    let api = Api::<TelephonyService>::namespaced(status_client.clone(), &namespace);
                    api.patch_status(&owner, &PatchParams::default(), &Patch::Merge(&status)).await?;
                    if done.len() >= n {
                        return Ok(());
                    }
                }
            }
            anyhow::bail!("watch ended")
        })
        .await
        .map_err(|_| anyhow::anyhow!("baseline: timed out after {timeout:?}"))?
    };
    let writes = stream::iter(0..n)
        .map(|i| {
            let (at, pp) = (ns.of(i), &pp);
            let t = ns.tsvc(i);
            async move {
                let t = at.api::<TelephonyService>().create(&PostParams::default(), &t?).await?;
                let d = desired::deployment(&t, t.spec.replicas);
                at.api::<Deployment>().patch(&d.name_any(), pp, &Patch::Apply(&d)).await?;
                let s = desired::service(&t);
                at.api::<Service>().patch(&s.name_any(), pp, &Patch::Apply(&s)).await?;
                anyhow::Ok(())
            }
        })
        .buffer_unordered(CONCURRENCY)
        .try_collect::<Vec<_>>();
    tokio::try_join!(marker, writes)?;
    let took = started.elapsed();
    let cpu = cpu_since(&cpu_start, std::process::id());
    drain(ns).await;
    Ok((took, cpu))
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    crate::crd::install(&testing::client().await).await?;

    let mut runs = vec![];
    let mut rss_empty = None;
    for &n in &args.sizes {
        let run = at_size(&args, n, &mut rss_empty).await?;
        eprintln!("N={n}: operator {:?}, baseline {:?}", run.operator_rounds, run.baseline_rounds);
        runs.push(run);
    }
    let rss_empty = rss_empty.unwrap_or_default();

    println!("\n## Convergence at scale (N TelephonyServices created at once, until all are Ready)\n");
    if args.per_namespace < usize::MAX {
        println!("Spread over namespaces of at most {} services each.\n", args.per_namespace);
    } else {
        println!("All in one namespace.\n");
    }
    if args.rounds > 1 {
        println!(
            "Each size with a baseline ran {} rounds, the operator and the baseline alternating; \
             the times are medians, and the last column lists every round in the order run.\n",
            args.rounds
        );
    }
    println!("| N | operator | baseline: direct writes, no operator logic | operator throughput / baseline | operator ms per service | rounds: operator; baseline |");
    println!("| --- | --- | --- | --- | --- | --- |");
    for r in &runs {
        let op = r.operator.as_secs_f64();
        let (base, ratio) = match r.baseline.map(|b| b.as_secs_f64()) {
            Some(b) => (format!("{b:.1} s"), format!("{:.2}×", b / op.max(f64::EPSILON))),
            None => ("not measured".into(), String::new()),
        };
        let each = match r.baseline_rounds.is_empty() {
            true => seconds(&r.operator_rounds),
            false => format!("{}; {}", seconds(&r.operator_rounds), seconds(&r.baseline_rounds)),
        };
        println!("| {} | {op:.1} s | {base} | {ratio} | {:.1} | {each} |", r.n, op * 1000.0 / r.n as f64);
    }
    println!("\n## API writes per service, create to Ready\n");
    println!("The baseline writes 3 per service (Deployment, Service, one status); both also create the TelephonyService. The operator's median round.\n");
    println!("| N | operator writes per service | by kind |");
    println!("| --- | --- | --- |");
    for r in &runs {
        let total: u64 = r.writes.iter().map(|(_, v)| v).sum();
        let per = |v: u64| v as f64 / r.n.max(1) as f64;
        let kinds: Vec<String> = r.writes.iter().map(|(k, v)| format!("{k} {:.2}", per(*v))).collect();
        println!("| {} | {:.2} | {} |", r.n, per(total), kinds.join(", "));
    }
    println!("\n## Where the CPU went, create to Ready (CPU seconds; 2 cores give 2 per second)\n");
    println!("| N | run | wall | apiserver | etcd | controller-manager | scheduler | node | the controller | all / (wall × 2) |");
    println!("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |");
    for r in &runs {
        cpu_row(r.n, "operator", r.operator, &r.cpu);
        if let Some(b) = r.baseline {
            cpu_row(r.n, "baseline", b, &r.baseline_cpu);
        }
    }
    println!("\n## Operator memory and CPU\n");
    println!("RSS 2 s after the last service is Ready, in the operator's median round (the operator's code is most of the RSS at 0).\n");
    println!("| services | RSS | reconciliations | CPU per reconciliation |");
    println!("| --- | --- | --- | --- |");
    println!("| 0 | {rss_empty:.1} MiB | | |");
    for r in &runs {
        println!("| {} | {:.1} MiB | {} | {:.2} ms |", r.n, r.rss_mib, r.reconciles, r.cpu_ms_per_reconcile);
    }
    Ok(())
}

/// The rounds at one size. The operator's figures (CPU, writes, RSS) are its median run's, and
/// the baseline's CPU is the baseline's median run's.
async fn at_size(args: &Args, n: usize, rss_empty: &mut Option<f64>) -> anyhow::Result<Run> {
    let with_baseline = n <= args.baseline_up_to;
    let rounds = if with_baseline { args.rounds.max(1) } else { 1 };
    let (mut ops, mut bases) = (vec![], vec![]);
    for round in 0..rounds {
        let baseline_first = round % 2 == 1;
        if with_baseline && baseline_first {
            bases.push(baseline(args, n).await?);
        }
        let (empty, run) = with_operator(args, n).await?;
        rss_empty.get_or_insert(empty);
        ops.push(run);
        if with_baseline && !baseline_first {
            bases.push(baseline(args, n).await?);
        }
    }
    let operator_rounds: Vec<Duration> = ops.iter().map(|r| r.operator).collect();
    let baseline_rounds: Vec<Duration> = bases.iter().map(|b| b.0).collect();
    let mut run = median_by_time(ops, |r| r.operator).ok_or_else(|| anyhow::anyhow!("no run at N={n}"))?;
    if let Some((took, cpu)) = median_by_time(bases, |b| b.0) {
        (run.baseline, run.baseline_cpu) = (Some(took), cpu);
    }
    (run.operator_rounds, run.baseline_rounds) = (operator_rounds, baseline_rounds);
    Ok(run)
}

/// The middle item by time (the lower middle of an even count).
fn median_by_time<T>(mut items: Vec<T>, time: impl Fn(&T) -> Duration) -> Option<T> {
    items.sort_by_key(&time);
    let middle = items.len().checked_sub(1)? / 2;
    Some(items.swap_remove(middle))
}

/// Every round's time, as "84.3, 79.0, 88.1 s" in the order run.
fn seconds(rounds: &[Duration]) -> String {
    let each: Vec<String> = rounds.iter().map(|d| format!("{:.1}", d.as_secs_f64())).collect();
    format!("{} s", each.join(", "))
}

/// One row of the CPU table: seconds per process and how busy the 2 cores were.
fn cpu_row(n: usize, run: &str, wall: Duration, cpu: &[f64]) {
    let cells: Vec<String> = cpu.iter().map(|c| format!("{c:.1}")).collect();
    let busy = cpu.iter().sum::<f64>() / (wall.as_secs_f64() * 2.0).max(f64::EPSILON);
    println!("| {n} | {run} | {:.1} s | {} | {:.0} % |", wall.as_secs_f64(), cells.join(" | "), busy * 100.0);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_median_round_is_the_middle_one_by_time() {
        let secs = |s: &[u64]| s.iter().map(|&s| Duration::from_secs(s)).collect::<Vec<_>>();
        assert_eq!(median_by_time(secs(&[94, 73, 85]), |d| *d), Some(Duration::from_secs(85)));
        assert_eq!(median_by_time(secs(&[80, 70]), |d| *d), Some(Duration::from_secs(70)));
        assert_eq!(median_by_time(secs(&[80]), |d| *d), Some(Duration::from_secs(80)));
        assert_eq!(median_by_time(Vec::<Duration>::new(), |d| *d), None);
        assert_eq!(seconds(&secs(&[84, 79])), "84.0, 79.0 s");
    }
}
