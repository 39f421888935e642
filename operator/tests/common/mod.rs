//! Shared helpers for the operator's end-to-end tests.
#![allow(dead_code)] // each test binary uses a different subset

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Pod, Secret};
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::api::{Api, ListParams, ObjectMeta, Patch, PatchParams, PostParams};
use kube::{Client, CustomResourceExt};
use telephony_operator::crd::{TelephonyService, TelephonyServiceStatus};
use testing::{node, wait_until, TestNamespace};
use tokio::process::{Child, Command};

/// Installs (server-side applies) the TelephonyService CRD and waits until it is served.
pub async fn install_crd(client: &Client) {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let crd = telephony_operator::crd::crd_manifest();
    let name = TelephonyService::crd_name();
    crds.patch(name, &PatchParams::apply("dialtone-e2e").force(), &Patch::Apply(&crd))
        .await
        .expect("apply CRD");
    wait_until(Duration::from_secs(30), "CRD established", || async {
        let c = crds.get(name).await.ok()?;
        let established =
            c.status?.conditions?.iter().any(|c| c.type_ == "Established" && c.status == "True");
        established.then_some(())
    })
    .await;
}

/// A namespace with the CRD installed and a Telnyx Secret.
pub async fn setup(prefix: &str) -> TestNamespace {
    let ns = TestNamespace::create(prefix).await;
    install_crd(&ns.client).await;
    create_secret(&ns, "telnyx").await;
    ns
}

pub async fn create_secret(ns: &TestNamespace, name: &str) {
    let secret = Secret {
        metadata: ObjectMeta { name: Some(name.into()), ..Default::default() },
        string_data: Some([("apiKey".to_string(), "KEY-e2e-not-a-real-key".to_string())].into()),
        ..Default::default()
    };
    ns.api::<Secret>().create(&PostParams::default(), &secret).await.expect("create secret");
}

/// A TelephonyService from JSON `spec` fields merged over a minimal valid spec: the real worker
/// image against the Telnyx mock, with probes every 2 s so tests don't wait out 10 s periods.
pub fn tsvc(name: &str, spec: serde_json::Value) -> TelephonyService {
    let mut base = serde_json::json!({
        "image": node::WORKER_IMAGE,
        "telnyx": {
            "apiKeySecretRef": { "name": "telnyx" },
            "connectionId": "conn-e2e",
            "baseUrl": node::telnyx_url()
        },
        "health": { "periodSeconds": 2, "timeoutSeconds": 1 }
    });
    if let (Some(b), Some(extra)) = (base.as_object_mut(), spec.as_object()) {
        for (k, v) in extra {
            b.insert(k.clone(), v.clone());
        }
    }
    let mut t = TelephonyService::new(name, serde_json::from_value(base).expect("valid spec"));
    t.metadata.name = Some(name.into());
    t
}

pub async fn create(ns: &TestNamespace, t: &TelephonyService) {
    ns.api::<TelephonyService>().create(&PostParams::default(), t).await.expect("create TelephonyService");
}

/// Polls the TelephonyService until `pred` holds on its status.
pub async fn wait_status(
    ns: &TestNamespace,
    name: &str,
    secs: u64,
    what: &str,
    pred: impl Fn(&TelephonyServiceStatus) -> bool,
) -> TelephonyService {
    let api = ns.api::<TelephonyService>();
    wait_until(Duration::from_secs(secs), what, || async {
        let t = api.get(name).await.ok()?;
        pred(t.status.as_ref()?).then_some(t)
    })
    .await
}

pub async fn worker_pods(ns: &TestNamespace, service: &str) -> Vec<Pod> {
    let lp = ListParams::default().labels(&format!("{}={service}", telephony_operator::names::SERVICE_LABEL));
    let mut pods = ns.api::<Pod>().list(&lp).await.expect("list pods").items;
    pods.retain(|p| p.metadata.deletion_timestamp.is_none());
    pods
}

/// SIGKILL from the host to the worker process of `pod` (as the OOM killer or a segfault ends
/// it), once it runs; returns the restart count before the kill.
pub async fn kill_worker(ns: &TestNamespace, pod: &str) -> i32 {
    node::signal_container(&ns.api::<Pod>(), pod, node::SIGKILL).await
}

/// The pod's IP, once it has one.
pub async fn pod_ip(ns: &TestNamespace, pod: &str) -> String {
    let pods = ns.api::<Pod>();
    wait_until(Duration::from_secs(60), "pod IP", || async { pods.get(pod).await.ok()?.status?.pod_ip }).await
}

/// The real operator binary, running as a child process scoped to one namespace.
pub struct Operator {
    child: Child,
    pub log: PathBuf,
}

impl Operator {
    pub fn start(ns: &str) -> Operator {
        Operator::start_with(ns, "op", &["--leader-elect=false"])
    }

    /// With the admin server on a port the kernel picks: a port taken from `free_port` could be
    /// taken again before the child bound it, and the operator then exited at start (one CI-like
    /// run: "Address already in use", the test's service never reconciled).
    pub fn start_with(ns: &str, id: &str, args: &[&str]) -> Operator {
        Operator::start_on(ns, id, 0, args)
    }

    /// Starts with the admin server (/healthz, /readyz, /metrics) on 127.0.0.1:`admin_port`.
    pub fn start_on(ns: &str, id: &str, admin_port: u16, args: &[&str]) -> Operator {
        Operator::start_through(ns, id, &testing::kubeconfig_path(), admin_port, args)
    }

    /// Starts as `start_on` does, reaching the apiserver as `kubeconfig` says (e.g. a proxy).
    pub fn start_through(
        ns: &str,
        id: &str,
        kubeconfig: &std::path::Path,
        admin_port: u16,
        args: &[&str],
    ) -> Operator {
        let admin = format!("--admin-addr=127.0.0.1:{admin_port}");
        let mut all = vec!["run", "--log-format", "json", "--namespace", ns, &admin];
        all.extend_from_slice(args);
        Operator::spawn(&format!("{ns}-{id}"), id, kubeconfig, &all, &[])
    }

    /// Whether the process has exited.
    pub fn exited(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(Some(_)))
    }

    /// `telephony-operator <args>` as POD_NAME `id` with the given kubeconfig and extra environment;
    /// logs to target/e2e-logs/`log`.log.
    pub fn spawn(
        log: &str,
        id: &str,
        kubeconfig: &std::path::Path,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Operator {
        let dir = testing::repo_root().join("target").join("e2e-logs");
        let _ = std::fs::create_dir_all(&dir);
        let log = dir.join(format!("{log}.log"));
        let out = std::fs::OpenOptions::new().create(true).append(true).open(&log).expect("log file");
        let err = out.try_clone().expect("log file");
        let child = Command::new(env!("CARGO_BIN_EXE_telephony-operator"))
            .args(args)
            .env("KUBECONFIG", kubeconfig)
            .env("POD_NAME", id)
            .env("RUST_LOG", "info,telephony_operator=debug")
            .envs(env.iter().copied())
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err))
            .kill_on_drop(true)
            .spawn()
            .expect("start telephony-operator");
        Operator { child, log }
    }

    /// SIGKILL: no graceful anything, like a node dying under it.
    pub async fn kill(mut self) {
        let _ = self.child.kill().await;
    }
}

/// `telephony-operator readiness` as a child process, serving on 127.0.0.1.
pub struct ReadinessProcess {
    _child: Child,
    pub url: String,
}

impl ReadinessProcess {
    pub fn start(ns: &str, kubeconfig: &std::path::Path, stale_after: &str) -> ReadinessProcess {
        let port = testing::free_port();
        let addr = format!("--addr=127.0.0.1:{port}");
        let args =
            ["readiness", "--log-format", "json", &addr, "--namespaces", ns, "--stale-after", stale_after];
        ReadinessProcess::spawn(ns, port, kubeconfig, &args)
    }

    /// `telephony-operator <args>` serving on `port`, with the given kubeconfig; logs to
    /// target/e2e-logs/`log`-readiness.log.
    pub fn spawn(log: &str, port: u16, kubeconfig: &std::path::Path, args: &[&str]) -> ReadinessProcess {
        let dir = testing::repo_root().join("target").join("e2e-logs");
        let _ = std::fs::create_dir_all(&dir);
        let out = std::fs::File::create(dir.join(format!("{log}-readiness.log"))).expect("log file");
        let err = out.try_clone().expect("log file");
        let child = Command::new(env!("CARGO_BIN_EXE_telephony-operator"))
            .args(args)
            .env("KUBECONFIG", kubeconfig)
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err))
            .kill_on_drop(true)
            .spawn()
            .expect("start readiness service");
        ReadinessProcess { _child: child, url: format!("http://127.0.0.1:{port}") }
    }

    /// HTTP status and JSON body of `GET /v1/status/{ns}/{name}`.
    pub async fn status(&self, ns: &str, name: &str) -> Option<(u16, serde_json::Value)> {
        let (code, body) = testing::get(&format!("{}/v1/status/{ns}/{name}", self.url)).await?;
        Some((code, serde_json::from_str(&body).ok()?))
    }
}

/// Waits for the readiness answer of `ns/calls` to be `want`: how long it took, and the body.
pub async fn until_code(
    r: &ReadinessProcess,
    ns: &str,
    want: u16,
    secs: u64,
) -> (Duration, serde_json::Value) {
    let t0 = Instant::now();
    let body = wait_until(Duration::from_secs(secs), &format!("readiness {want}"), || async {
        r.status(ns, "calls").await.filter(|(c, _)| *c == want).map(|(_, b)| b)
    })
    .await;
    if want == 503 {
        let secs = body["retryAfter"].as_u64().unwrap_or(0);
        assert!((1..=3600).contains(&secs), "a 503 says when to come back: {body}");
    }
    (t0.elapsed(), body)
}

/// The TelephonyService's condition of `type_`.
pub fn condition<'a>(t: &'a TelephonyService, type_: &str) -> &'a Condition {
    t.status.as_ref().and_then(|s| s.conditions.iter().find(|c| c.type_ == type_)).expect("condition")
}

pub async fn events(ns: &TestNamespace, reason: &str) -> Vec<Event> {
    let all = ns.api::<Event>().list(&ListParams::default()).await.expect("list events").items;
    all.into_iter().filter(|e| e.reason.as_deref() == Some(reason)).collect()
}

/// Events are published right after the status they describe: wait for them.
pub async fn wait_events(ns: &TestNamespace, reason: &str) -> Vec<Event> {
    wait_until(Duration::from_secs(10), &format!("{reason} event"), || async {
        Some(events(ns, reason).await).filter(|e| !e.is_empty())
    })
    .await
}

/// The failures counted so far (`status.restartBudget.used`).
pub async fn used(ns: &TestNamespace, name: &str) -> u32 {
    let t = ns.api::<TelephonyService>().get(name).await.expect("get TelephonyService");
    t.status.and_then(|s| s.restart_budget).map(|b| b.used).unwrap_or(0)
}

/// Waits until `n` failures are counted, then checks that the count stays there for `settle`:
/// each fault is counted exactly once, whatever the kubelet reports after it.
pub async fn counted_exactly(
    ns: &TestNamespace,
    name: &str,
    n: u32,
    secs: u64,
    settle: Duration,
) -> TelephonyService {
    let t = wait_status(ns, name, secs, &format!("{n} failure(s) counted"), |s| {
        s.restart_budget.as_ref().is_some_and(|b| b.used >= n)
    })
    .await;
    tokio::time::sleep(settle).await;
    assert_eq!(used(ns, name).await, n, "counted exactly {n}");
    t
}
