//! Shared helpers for the operator's end-to-end tests.
#![allow(dead_code)] // each test binary uses a different subset

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Pod, Secret};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, ListParams, ObjectMeta, Patch, PatchParams, PostParams};
use kube::{Client, CustomResourceExt};
use telephony_operator::crd::{TelephonyService, TelephonyServiceStatus};
use testing::{wait_until, TestNamespace};
use tokio::process::{Child, Command};

pub const FAULT: &str = "sim.dialtone.dev/fault";
pub const APPLIED: &str = "sim.dialtone.dev/fault-applied";

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

/// A TelephonyService from JSON `spec` fields merged over a minimal valid spec.
pub fn tsvc(name: &str, spec: serde_json::Value) -> TelephonyService {
    let mut base = serde_json::json!({
        "image": "registry.example.com/dialtone/telephony-pod:0.1.0",
        "telnyx": { "apiKeySecretRef": { "name": "telnyx" }, "connectionId": "conn-e2e" }
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
    let lp = ListParams::default().labels(&format!("dialtone.dev/service={service}"));
    let mut pods = ns.api::<Pod>().list(&lp).await.expect("list pods").items;
    pods.retain(|p| p.metadata.deletion_timestamp.is_none());
    pods
}

fn annotations(p: &Pod) -> std::collections::BTreeMap<String, String> {
    p.metadata.annotations.clone().unwrap_or_default()
}

/// Injects a one-shot fault (`crash`, `oom`) and waits until the simulated node acted on it.
pub async fn inject_once(ns: &TestNamespace, pod: &str, fault: &str) {
    let pods = ns.api::<Pod>();
    let pp = PatchParams::default();
    let clear = serde_json::json!({ "metadata": { "annotations": { FAULT: null } } });
    pods.patch(pod, &pp, &Patch::Merge(&clear)).await.expect("clear fault");
    wait_until(Duration::from_secs(20), "fault-applied cleared", || async {
        let p = pods.get(pod).await.ok()?;
        (!annotations(&p).contains_key(APPLIED)).then_some(())
    })
    .await;
    set_fault(ns, pod, Some(fault)).await;
    wait_until(Duration::from_secs(20), "fault applied", || async {
        let p = pods.get(pod).await.ok()?;
        (annotations(&p).get(APPLIED).map(String::as_str) == Some(fault)).then_some(())
    })
    .await;
}

/// Sets (or removes) the fault annotation on a pod.
pub async fn set_fault(ns: &TestNamespace, pod: &str, fault: Option<&str>) {
    let patch = serde_json::json!({ "metadata": { "annotations": { FAULT: fault } } });
    ns.api::<Pod>().patch(pod, &PatchParams::default(), &Patch::Merge(&patch)).await.expect("set fault");
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

    pub fn start_with(ns: &str, id: &str, args: &[&str]) -> Operator {
        Operator::start_on(ns, id, testing::free_port(), args)
    }

    /// Starts with the admin server (/healthz, /readyz, /metrics) on 127.0.0.1:`admin_port`.
    pub fn start_on(ns: &str, id: &str, admin_port: u16, args: &[&str]) -> Operator {
        let admin = format!("--admin-addr=127.0.0.1:{admin_port}");
        let mut all = vec!["run", "--log-format", "json", "--namespace", ns, &admin];
        all.extend_from_slice(args);
        Operator::spawn(&format!("{ns}-{id}"), id, &testing::kubeconfig_path(), &all, &[])
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
