//! Chaos on the control plane (the Sieve and Acto fault classes): while workers crash at a known
//! rate, the leading operator is SIGKILLed at random moments (a standby takes over), the
//! apiserver the operators use is restarted, etcd is restarted, a proxy cuts the operators'
//! connections (watches included) at random, and specs are edited and services deleted and
//! recreated. After each round every service must come back to Ready; at the end the invariants
//! are checked, and the table says what was injected, what was checked, and what broke.

mod events;
mod stale;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use dialtone_api::names::sim::FAULT;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Pod, Secret, Service};
use k8s_openapi::api::events::v1::Event;
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use kube::{Api, ResourceExt};
use telephony_operator::crd::TelephonyService;
use testing::proxy::Proxy;
use testing::TestNamespace;

use crate::stats::{ms, percentile};

#[derive(clap::Args)]
pub struct Args {
    #[arg(long, default_value_t = 50)]
    services: usize,
    /// Rounds; each ends with a SIGKILL of the leading operator.
    #[arg(long, default_value_t = 50)]
    operator_kills: usize,
    #[arg(long, default_value_t = 5)]
    apiserver_restarts: usize,
    #[arg(long, default_value_t = 1)]
    etcd_restarts: usize,
    /// Worker crashes injected per round.
    #[arg(long, default_value_t = 2)]
    crashes_per_round: usize,
    #[arg(long, default_value_t = 4)]
    lease_secs: u64,
    #[arg(long, default_value = "target/release/telephony-operator")]
    operator: String,
}

const LEASE: &str = "chaos";
const INSTANCE: &str = "app.kubernetes.io/instance";

/// One operator replica: its identity (the Lease's holder) and process.
struct Replica {
    id: String,
    child: tokio::process::Child,
}

struct Run {
    args: Args,
    ns: TestNamespace,
    kubeconfig: PathBuf,
    logs: PathBuf,
    replicas: Vec<Replica>,
    spawned: usize,
    /// Confirmed worker crashes per service (the pod's restartCount went up).
    injected: HashMap<String, u32>,
    regained: Vec<Duration>,
    /// Rounds' recoveries to all Ready, without and with an apiserver or etcd restart.
    recovered: Vec<Duration>,
    recovered_after_restart: Vec<Duration>,
    violations: Vec<String>,
    checks: usize,
    /// Replicas that exited on their own (and were restarted).
    exits: usize,
    /// When no operator could write (see `stale`).
    blind: stale::Blind,
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    let ns = TestNamespace::create("chaos").await;
    crate::crd::install(&ns.client).await?;
    let logs = testing::repo_root().join("target").join("chaos");
    std::fs::create_dir_all(&logs)?;
    let spare = cluster(&["spare", "up"]).await?;
    let spare_port = testing::server_port(&std::fs::read_to_string(spare.trim())?)
        .ok_or_else(|| anyhow::anyhow!("no apiserver port in {}", spare.trim()))?;
    let proxy = Proxy::start(spare_port, Duration::from_millis(200)).await?;
    let text = proxy.kubeconfig(&std::fs::read_to_string(spare.trim())?);
    let kubeconfig = logs.join("kubeconfig");
    std::fs::write(&kubeconfig, text)?;

    let mut run = Run {
        args,
        ns,
        kubeconfig,
        logs,
        replicas: vec![],
        spawned: 0,
        injected: HashMap::new(),
        regained: vec![],
        recovered: vec![],
        recovered_after_restart: vec![],
        violations: vec![],
        checks: 0,
        exits: 0,
        blind: stale::Blind::default(),
    };
    run.setup().await?;
    let stop = Arc::new(AtomicBool::new(false));
    let (tsvcs, pods) = (run.ns.api::<TelephonyService>(), run.ns.api::<Pod>());
    let monitor = tokio::spawn(stale::monitor(tsvcs, pods, run.blind.clone(), stop.clone()));
    let cutter = tokio::spawn(cut_at_random(proxy.clone()));
    let rounds = run.args.operator_kills;
    let every = |n: usize| rounds.checked_div(n).map_or(usize::MAX, |e| e.max(1));
    let (api_every, etcd_every) = (every(run.args.apiserver_restarts), every(run.args.etcd_restarts));
    let (mut api_restarts, mut etcd_restarts) = (0, 0);
    for round in 0..rounds {
        let started = Instant::now();
        let mut restarted = false;
        let crashes = run.inject_crashes().await;
        run.edit(round).await?;
        tokio::time::sleep(Duration::from_millis(rand::random_range(0..1500))).await;
        run.kill_leader().await?;
        if round % api_every == api_every / 2 && api_restarts < run.args.apiserver_restarts {
            run.restart(&[&["spare", "down"], &["spare", "up"]]).await?;
            api_restarts += 1;
            restarted = true;
        }
        if round % etcd_every == etcd_every / 2 && etcd_restarts < run.args.etcd_restarts {
            run.restart(&[&["restart-etcd"]]).await?;
            etcd_restarts += 1;
            restarted = true;
        }
        for c in crashes {
            if let Ok(Some(svc)) = c.await {
                *run.injected.entry(svc).or_default() += 1;
            }
        }
        let took = run.recover(started, &format!("round {round}")).await?;
        if restarted {
            run.recovered_after_restart.push(took);
        } else {
            run.recovered.push(took);
        }
        run.check_children(&format!("after round {round}")).await?;
    }
    cutter.abort();
    stop.store(true, Ordering::Relaxed);
    let windows = monitor.await?;
    run.checks += windows.samples;
    run.violations.extend(windows.stale.iter().cloned());
    run.check_counts().await?;
    run.check_events().await?;
    run.check_logs();
    let cuts = proxy.cuts.load(Ordering::Relaxed);
    run.report(api_restarts, etcd_restarts, cuts, &windows);
    for r in &mut run.replicas {
        let _ = r.child.kill().await;
    }
    let _ = cluster(&["spare", "down"]).await;
    let violations = run.violations.len();
    run.ns.delete().await;
    anyhow::ensure!(violations == 0, "{violations} invariant violations");
    Ok(())
}

impl Run {
    async fn setup(&mut self) -> anyhow::Result<()> {
        let secret = Secret {
            metadata: kube::api::ObjectMeta { name: Some("telnyx".into()), ..Default::default() },
            string_data: Some([("apiKey".to_string(), "chaos-key".to_string())].into()),
            ..Default::default()
        };
        self.ns.api::<Secret>().create(&PostParams::default(), &secret).await?;
        self.spawn_replica()?;
        self.spawn_replica()?;
        let api = self.ns.api::<TelephonyService>();
        for i in 0..self.args.services {
            api.create(&PostParams::default(), &service(&format!("svc-{i}"), 0)?).await?;
        }
        self.recover(Instant::now(), "setup").await.map(drop)
    }

    /// Crash-injected services are the first 80 %; the rest are edited, deleted and recreated
    /// (a rollout or a new pod would make "counted exactly once" unprovable by restartCount).
    fn crash_set(&self) -> usize {
        self.args.services * 4 / 5
    }

    fn spawn_replica(&mut self) -> anyhow::Result<()> {
        self.spawned += 1;
        let id = format!("chaos-op-{}", self.spawned);
        let log = std::fs::File::create(self.logs.join(format!("{id}.log")))?;
        let child = tokio::process::Command::new(&self.args.operator)
            .args([
                "run",
                "--namespace",
                &self.ns.name,
                "--leader-elect=true",
                "--lease-namespace",
                &self.ns.name,
            ])
            .args(["--lease-name", LEASE, "--lease-duration", &self.args.lease_secs.to_string()])
            .args(["--ask-workers=false", "--log-format=json", "--admin-addr=127.0.0.1:0"])
            .env("KUBECONFIG", &self.kubeconfig)
            .env("POD_NAME", &id)
            .env("RUST_LOG", "info")
            .stdout(log.try_clone()?)
            .stderr(log)
            .kill_on_drop(true)
            .spawn()?;
        self.replicas.push(Replica { id, child });
        Ok(())
    }

    /// Crashes on random services of the crash set, in the background: each resolves to the
    /// service once its pod's restartCount went up.
    async fn inject_crashes(&self) -> Vec<tokio::task::JoinHandle<Option<String>>> {
        // Distinct services: two crashes of one pod at once would be one restart, confirmed twice.
        let amount = self.args.crashes_per_round.min(self.crash_set());
        rand::seq::index::sample(&mut rand::rng(), self.crash_set(), amount)
            .into_iter()
            .map(|i| tokio::spawn(crash(self.ns.api::<Pod>(), format!("svc-{i}"))))
            .collect()
    }

    /// A spec edit racing with the faults (a new image tag: a rollout), and every 10th round a
    /// delete and re-create.
    async fn edit(&self, round: usize) -> anyhow::Result<()> {
        let api = self.ns.api::<TelephonyService>();
        let name = format!("svc-{}", rand::random_range(self.crash_set()..self.args.services));
        if round % 10 == 9 {
            api.delete(&name, &Default::default()).await?;
            let gone = Instant::now();
            while api.get_opt(&name).await?.is_some() && gone.elapsed() < Duration::from_secs(30) {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            api.create(&PostParams::default(), &service(&name, round)?).await?;
        } else {
            let image = format!("registry.example.com/dialtone/telephony-pod:0.1.{round}");
            let patch = serde_json::json!({ "spec": { "image": image } });
            api.patch(&name, &PatchParams::default(), &Patch::Merge(&patch)).await?;
        }
        Ok(())
    }

    /// Restarts replicas that exited on their own, as the kubelet restarts a pod's container (an
    /// operator that loses the Lease exits by design, so that a restart rejoins as a standby).
    fn restart_exited(&mut self) -> anyhow::Result<()> {
        let before = self.replicas.len();
        self.replicas.retain_mut(|r| !matches!(r.child.try_wait(), Ok(Some(_))));
        for _ in self.replicas.len()..before {
            self.exits += 1;
            self.spawn_replica()?;
        }
        Ok(())
    }

    /// SIGKILLs the leader, starts a replacement at once, and times until another replica holds
    /// the Lease.
    async fn kill_leader(&mut self) -> anyhow::Result<()> {
        self.restart_exited()?;
        let leases = self.ns.api::<Lease>();
        let holder = |l: Option<Lease>| l.and_then(|l| l.spec?.holder_identity);
        let Some(leader) = holder(leases.get_opt(LEASE).await?) else {
            self.violations.push("no operator held the Lease before a kill".into());
            return Ok(());
        };
        let Some(i) = self.replicas.iter().position(|r| r.id == leader) else {
            self.violations.push(format!("the Lease's holder {leader} is no live replica"));
            return Ok(());
        };
        let mut dead = self.replicas.remove(i);
        self.blind.open();
        dead.child.start_kill()?;
        let killed = Instant::now();
        self.spawn_replica()?;
        let limit = Duration::from_secs(self.args.lease_secs * 3);
        loop {
            self.restart_exited()?;
            let now = holder(leases.get_opt(LEASE).await.ok().flatten());
            if now.is_some_and(|h| h != leader && self.replicas.iter().any(|r| r.id == h)) {
                break;
            }
            if killed.elapsed() > limit {
                self.violations
                    .push(format!("no new leader {} s after {leader} was killed", limit.as_secs()));
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let took = killed.elapsed();
        self.blind.close();
        self.regained.push(took);
        self.checks += 1;
        if took > self.regain_bound() {
            self.violations.push(format!(
                "leadership regained {} after the kill (bound {})",
                ms(took),
                ms(self.regain_bound())
            ));
        }
        let _ = dead.child.wait().await;
        Ok(())
    }

    /// A restart (`cluster.sh` steps) of what the operators depend on: no operator can write from
    /// its start until a leader has renewed the Lease after it.
    async fn restart(&mut self, steps: &[&[&str]]) -> anyhow::Result<()> {
        self.blind.open();
        for step in steps {
            cluster(step).await?;
        }
        self.await_leader().await
    }

    /// Waits (up to 60 s) until a live replica holds the Lease and has renewed it since, after a
    /// restart of the apiserver or etcd; then the blind interval ends.
    async fn await_leader(&mut self) -> anyhow::Result<()> {
        let leases = self.ns.api::<Lease>();
        let since = k8s_openapi::jiff::Timestamp::now();
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(60) {
            self.restart_exited()?;
            let spec = leases.get_opt(LEASE).await.ok().flatten().and_then(|l| l.spec);
            let holder = spec.as_ref().and_then(|s| s.holder_identity.clone());
            let renewed = spec.and_then(|s| s.renew_time).is_some_and(|t| t.0 > since);
            if renewed && holder.is_some_and(|h| self.replicas.iter().any(|r| r.id == h)) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        self.blind.close();
        Ok(())
    }

    /// How soon a standby must lead: the dead leader's Lease expires within its duration, then
    /// kube-lease-manager waits up to 1 s against collisions before it locks (`watcher_step`),
    /// its requests cross the proxy (up to 0.2 s each to connect), and when the proxy cuts its
    /// watch at that moment it retries once after its 1 s minimum backoff (6.3 s was measured
    /// against a bound without that retry, in 1 of 10 kills).
    fn regain_bound(&self) -> Duration {
        Duration::from_secs(self.args.lease_secs) + Duration::from_millis(2700)
    }

    /// Waits for every service to be Ready with its worker ready, and times it. A slow round says
    /// on standard error, every 5 s, what is still down and why (the status' phase and message).
    async fn recover(&mut self, since: Instant, when: &str) -> anyhow::Result<Duration> {
        let limit = Duration::from_secs(120);
        let mut next_report = Duration::from_secs(10);
        loop {
            self.restart_exited()?;
            let down = self.not_ready().await.unwrap_or_else(|e| vec![format!("(list failed: {e})")]);
            if down.is_empty() {
                return Ok(since.elapsed());
            }
            if since.elapsed() > limit {
                self.violations.push(format!("not Ready {} s after the round: {down:?}", limit.as_secs()));
                return Ok(since.elapsed());
            }
            if since.elapsed() > next_report {
                eprintln!("[chaos] {when}, {} in: {} down: {down:?}", ms(since.elapsed()), down.len());
                next_report += Duration::from_secs(5);
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Services not (yet) Ready, and any that says Ready while no worker of its is ready (a
    /// violation: a stale "Ready").
    async fn not_ready(&mut self) -> anyhow::Result<Vec<String>> {
        let tsvcs = self.ns.api::<TelephonyService>().list(&ListParams::default()).await?.items;
        let pods = self.ns.api::<Pod>().list(&ListParams::default()).await?.items;
        let ready_pods = stale::ready_workers(&pods);
        let mut down = vec![];
        for t in &tsvcs {
            let workers = ready_pods.get(&t.name_any()).copied().unwrap_or(0);
            if !stale::said_ready(t) {
                let status = t.status.as_ref();
                let phase = status.map(|s| s.phase);
                let message = status.and_then(|s| s.message.as_deref()).unwrap_or("");
                let seen = status.and_then(|s| s.observed_generation).unwrap_or(0);
                let generation = t.metadata.generation.unwrap_or(0);
                down.push(format!(
                    "{} ({phase:?}, generation {seen}/{generation}, {workers} ready workers: {message})",
                    t.name_any()
                ));
            } else if workers == 0 {
                // Status can lag a crash by a reconcile; only a Ready that persists is stale.
                down.push(format!("{} (Ready, no ready worker)", t.name_any()));
            }
        }
        Ok(down)
    }

    /// No orphaned or duplicated Deployments or Services: each service owns exactly one of each,
    /// and each owned object's owner exists.
    async fn check_children(&mut self, when: &str) -> anyhow::Result<()> {
        let tsvcs: HashMap<String, String> = self
            .ns
            .api::<TelephonyService>()
            .list(&ListParams::default())
            .await?
            .items
            .into_iter()
            .map(|t| (t.metadata.uid.clone().unwrap_or_default(), t.name_any()))
            .collect();
        let deployments = owners(self.ns.api::<Deployment>().list(&ListParams::default()).await?.items);
        let services = owners(self.ns.api::<Service>().list(&ListParams::default()).await?.items);
        for (kind, owned) in [("Deployment", deployments), ("Service", services)] {
            self.checks += 1;
            for (uid, name) in &tsvcs {
                let n = owned.get(uid).map_or(0, Vec::len);
                if n != 1 {
                    self.violations.push(format!("{when}: {name} owns {n} {kind}s"));
                }
            }
            for (uid, names) in owned.iter().filter(|(uid, _)| !tsvcs.contains_key(*uid)) {
                // Checked once every service is Ready again, by when the kube-controller-manager
                // has collected a deleted service's children; unowned objects (uid "") aren't ours.
                if !uid.is_empty() {
                    self.violations.push(format!("{when}: {kind}s {names:?} belong to no TelephonyService"));
                }
            }
        }
        Ok(())
    }

    /// Every confirmed crash counted exactly once: restartBudget.used equals the restarts of the
    /// service's worker pods, once things settle. A round "recovers" as soon as its workers are
    /// Ready again, which on the simulated node can be before a new leader has looked at them (a
    /// crash the killed leader never saw keeps the old Ready): the counts get up to SETTLE to
    /// catch up. Counts only grow, so an over-count stays one.
    async fn check_counts(&mut self) -> anyhow::Result<()> {
        const SETTLE: Duration = Duration::from_secs(30);
        let started = Instant::now();
        let mut unsettled = None;
        let wrong = loop {
            let wrong = self.miscounted().await?;
            if wrong.is_empty() || started.elapsed() > SETTLE {
                break wrong;
            }
            unsettled.get_or_insert(wrong);
            tokio::time::sleep(Duration::from_millis(500)).await;
        };
        if let Some(first) = unsettled.filter(|_| wrong.is_empty()) {
            eprintln!("[chaos] counts settled {} after the last round: {first:?}", ms(started.elapsed()));
        }
        self.checks += self.crash_set();
        self.violations.extend(wrong);
        Ok(())
    }

    /// Crash-set services whose count is not (yet) their pods' restarts, or below the crashes
    /// injected.
    async fn miscounted(&self) -> anyhow::Result<Vec<String>> {
        let pods = self.ns.api::<Pod>().list(&ListParams::default()).await?.items;
        let tsvcs = self.ns.api::<TelephonyService>().list(&ListParams::default()).await?.items;
        let mut wrong = vec![];
        for i in 0..self.crash_set() {
            let name = format!("svc-{i}");
            let restarts: i32 =
                pods.iter().filter(|p| p.labels().get(INSTANCE) == Some(&name)).map(restarts).sum();
            let status = tsvcs.iter().find(|t| t.name_any() == name).and_then(|t| t.status.as_ref());
            let used = status.and_then(|s| s.restart_budget.as_ref()).map_or(0, |b| b.used);
            let injected = self.injected.get(&name).copied().unwrap_or(0);
            if i64::from(used) != i64::from(restarts) || injected > used {
                wrong.push(format!("{name}: {restarts} restarts, {injected} injected, {used} counted"));
            }
        }
        Ok(wrong)
    }

    /// Every Event matches a real transition (`events`).
    async fn check_events(&mut self) -> anyhow::Result<()> {
        let tally = events::tally(&self.ns.api::<Event>().list(&ListParams::default()).await?.items);
        for t in self.ns.api::<TelephonyService>().list(&ListParams::default()).await?.items {
            let (uid, name) = (t.uid().unwrap_or_default(), t.name_any());
            let crash_only =
                name.trim_start_matches("svc-").parse::<usize>().is_ok_and(|i| i < self.crash_set());
            let failures = t.status.and_then(|s| s.restart_budget).map_or(0, |b| b.used);
            let service = events::Service { uid: &uid, name: &name, crash_only, failures };
            self.checks += 1;
            self.violations.extend(events::check(&tally, &service));
        }
        Ok(())
    }

    fn check_logs(&mut self) {
        for entry in std::fs::read_dir(&self.logs).into_iter().flatten().flatten() {
            let text = std::fs::read_to_string(entry.path()).unwrap_or_default();
            self.checks += 1;
            if text.contains("panicked") {
                self.violations.push(format!("a panic in {}", entry.path().display()));
            }
        }
    }

    fn report(&self, api_restarts: usize, etcd_restarts: usize, cuts: u64, windows: &stale::Windows) {
        let crashes: u32 = self.injected.values().sum();
        println!("\n## Chaos on the control plane ({} services, simulated node)\n", self.args.services);
        println!("| fault | injected |");
        println!("| --- | --- |");
        println!(
            "| SIGKILL of the leading operator (2 replicas; lease {} s) | {} |",
            self.args.lease_secs,
            self.regained.len()
        );
        println!("| restart of the apiserver the operators use | {api_restarts} |");
        println!("| restart of etcd | {etcd_restarts} |");
        println!("| connections cut by the proxy (watches, lists, writes) | {cuts} |");
        println!("| worker crashes (confirmed by restartCount) | {crashes} |");
        println!(
            "| operator replicas that exited by themselves (restarted, as the kubelet would) | {} |",
            self.exits
        );
        println!("| spec edits (rollouts), and deletes with re-creates | {} |", self.args.operator_kills);
        println!();
        println!(
            "| invariant checks | violations | leadership regained p50 / p99 (bound: {}) | recovery to all Ready p50 / max | the same, in rounds with an apiserver or etcd restart (each) |",
            ms(self.regain_bound())
        );
        println!("| --- | --- | --- | --- | --- |");
        let after_restart: Vec<String> = self.recovered_after_restart.iter().map(|d| ms(*d)).collect();
        println!(
            "| {} | **{}** | {} / {} | {} / {} | {} |",
            self.checks,
            self.violations.len(),
            ms(percentile(&self.regained, 50.0)),
            ms(percentile(&self.regained, 99.0)),
            ms(percentile(&self.recovered, 50.0)),
            ms(percentile(&self.recovered, 100.0)),
            after_restart.join(", "),
        );
        println!();
        println!(
            "| a service said Ready while none of its workers was: windows (sampled every 250 ms) | closed within {} (longest) | while no operator could write (longest) | stale |",
            ms(stale::REACTION)
        );
        println!("| --- | --- | --- | --- |");
        println!(
            "| {} | {} ({}) | {} ({}) | **{}** |",
            windows.prompt + windows.blind + windows.stale.len(),
            windows.prompt,
            ms(windows.longest_prompt),
            windows.blind,
            ms(windows.longest_blind),
            windows.stale.len()
        );
        for v in &self.violations {
            println!("\nviolation: {v}");
        }
    }
}

fn service(name: &str, round: usize) -> anyhow::Result<TelephonyService> {
    let spec = serde_json::json!({
        "image": format!("registry.example.com/dialtone/telephony-pod:0.1.{round}"),
        "telnyx": { "apiKeySecretRef": { "name": "telnyx" }, "connectionId": "chaos" },
        // Every crash is counted, none opens the circuit: the count is what is checked.
        "restartBudget": { "maxRestarts": 1000, "windowSeconds": 3600 }
    });
    Ok(TelephonyService::new(name, serde_json::from_value(spec)?))
}

/// Crashes `svc`'s worker once (the simulated node's `crash` fault): the service, once its pod's
/// restartCount went up; None if that could not be seen in 20 s (an apiserver down, say).
async fn crash(pods: Api<Pod>, svc: String) -> Option<String> {
    let selector = ListParams::default().labels(&format!("{INSTANCE}={svc}"));
    let pod = pods
        .list(&selector)
        .await
        .ok()?
        .items
        .into_iter()
        .find(|p| p.metadata.deletion_timestamp.is_none())?;
    let name = pod.name_any();
    let before = restarts(&pod);
    let clear = serde_json::json!({ "metadata": { "annotations": { FAULT: null } } });
    pods.patch(&name, &PatchParams::default(), &Patch::Merge(&clear)).await.ok()?;
    tokio::time::sleep(Duration::from_millis(300)).await; // the node marks the fault cleared
    let set = serde_json::json!({ "metadata": { "annotations": { FAULT: "crash" } } });
    pods.patch(&name, &PatchParams::default(), &Patch::Merge(&set)).await.ok()?;
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(20) {
        if pods.get_opt(&name).await.ok().flatten().is_some_and(|p| restarts(&p) > before) {
            return Some(svc);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    None
}

fn restarts(p: &Pod) -> i32 {
    p.status.iter().flat_map(|s| s.container_statuses.iter().flatten()).map(|c| c.restart_count).sum()
}

fn pod_ready(p: &Pod) -> bool {
    p.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// Owned objects by their controller's uid.
fn owners<K: kube::Resource>(items: Vec<K>) -> HashMap<String, Vec<String>> {
    let mut by: HashMap<String, Vec<String>> = HashMap::new();
    for o in items {
        let uid = o
            .meta()
            .owner_references
            .iter()
            .flatten()
            .find(|r| r.controller == Some(true))
            .map(|r| r.uid.clone());
        by.entry(uid.unwrap_or_default()).or_default().push(o.name_any());
    }
    by
}

/// Cuts one of the operators' connections every 0.2–1 s.
async fn cut_at_random(proxy: Arc<Proxy>) {
    loop {
        tokio::time::sleep(Duration::from_millis(rand::random_range(200..1000))).await;
        proxy.cut_one();
    }
}

/// `scripts/cluster.sh ARGS` on the benchmark's cluster; its standard output.
async fn cluster(args: &[&str]) -> anyhow::Result<String> {
    let out = tokio::process::Command::new(testing::repo_root().join("scripts/cluster.sh"))
        .args(args)
        .output()
        .await?;
    anyhow::ensure!(out.status.success(), "cluster.sh {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}
