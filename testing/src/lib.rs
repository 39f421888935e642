//! Support for Dialtone's end-to-end tests against the local control plane.
//!
//! The kubeconfig comes from `DIALTONE_KUBECONFIG`, else `<repo>/.cluster/kubeconfig` (what
//! `scripts/cluster.sh up` writes). The ambient `KUBECONFIG` is deliberately not used, so a test run
//! never touches a real cluster by accident. When the control plane can't be reached the tests
//! fail with a message saying how to start it: they never skip.

use std::future::Future;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use kube::api::{Api, DeleteParams, ObjectMeta, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};

pub mod node;
pub mod proxy;
pub mod sse;
pub mod telnyx;

/// Path of the kubeconfig the e2e tests use.
pub fn kubeconfig_path() -> PathBuf {
    match std::env::var_os("DIALTONE_KUBECONFIG") {
        Some(p) => PathBuf::from(p),
        None => repo_root().join(".cluster").join("kubeconfig"),
    }
}

/// The workspace root (this crate lives one level below it).
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).parent().map(PathBuf::from).unwrap_or_default()
}

/// A client for the local control plane. Panics with instructions when it is unreachable.
pub async fn client() -> Client {
    let path = kubeconfig_path();
    let hint = "e2e tests need the local control plane: run `scripts/test.sh`, or `scripts/cluster.sh up` \
                first (or set DIALTONE_KUBECONFIG)";
    let kubeconfig = Kubeconfig::read_from(&path)
        .unwrap_or_else(|e| panic!("cannot read kubeconfig {}: {e}. {hint}", path.display()));
    let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .unwrap_or_else(|e| panic!("bad kubeconfig {}: {e}. {hint}", path.display()));
    let client = Client::try_from(config).unwrap_or_else(|e| panic!("cannot build client: {e}. {hint}"));
    if let Err(e) = client.apiserver_version().await {
        panic!("the control plane at {} is unreachable: {e}. {hint}", path.display());
    }
    client
}

/// A test's own namespace on the local control plane.
pub struct TestNamespace {
    pub client: Client,
    pub name: String,
}

impl TestNamespace {
    /// Creates `e2e-<prefix>-<random>` and waits for its default ServiceAccount (pods need it).
    pub async fn create(prefix: &str) -> TestNamespace {
        let client = client().await;
        let name = format!("e2e-{prefix}-{:06x}", rand::random::<u32>() & 0xff_ffff);
        let ns = Namespace {
            metadata: ObjectMeta { name: Some(name.clone()), ..Default::default() },
            ..Default::default()
        };
        Api::<Namespace>::all(client.clone())
            .create(&PostParams::default(), &ns)
            .await
            .unwrap_or_else(|e| panic!("create namespace {name}: {e}"));
        let sa: Api<ServiceAccount> = Api::namespaced(client.clone(), &name);
        wait_until(Duration::from_secs(30), "default ServiceAccount", || async {
            sa.get_opt("default").await.ok().flatten().map(|_| ())
        })
        .await;
        TestNamespace { client, name }
    }

    pub fn api<K>(&self) -> Api<K>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
    {
        Api::namespaced(self.client.clone(), &self.name)
    }

    /// Deletes the namespace (left in place when a test fails, for a look with kubectl).
    pub async fn delete(self) {
        let _ = Api::<Namespace>::all(self.client.clone()).delete(&self.name, &DeleteParams::default()).await;
    }
}

/// Polls `check` every 50 ms until it returns `Some`, or panics after `timeout` naming `what`.
pub async fn wait_until<T, F, Fut>(timeout: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(v) = check().await {
            return v;
        }
        if start.elapsed() > timeout {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Runs the kubectl that `scripts/build-control-plane.sh` cached against the test cluster and
/// returns its standard output; panics with its error output when it fails.
pub fn kubectl(args: &[&str]) -> String {
    tool("kubectl", args, None).unwrap_or_else(|e| panic!("kubectl {args:?} failed: {e}"))
}

/// What a namespace's pods are doing, for a failure message when they are not Ready in time
/// (`helm install --wait` says only "Available: 0/2"): the pods, the namespace's and the node's
/// Events, and each pod's last log lines.
pub fn namespace_report(ns: &str) -> String {
    let run =
        |args: &[&str]| tool("kubectl", args, None).unwrap_or_else(|e| format!("(kubectl {args:?}: {e})"));
    let mut report = format!("pods in {ns}:\n{}", run(&["get", "pods", "-n", ns, "-o", "wide"]));
    report +=
        &format!("\nEvents in {ns}:\n{}", run(&["get", "events", "-n", ns, "--sort-by=.lastTimestamp"]));
    report += &format!("\nnodes:\n{}", run(&["describe", "nodes"]));
    let pods = run(&["get", "pods", "-n", ns, "-o", "name"]);
    for pod in pods.lines().filter(|p| p.starts_with("pod/")) {
        let logs = run(&["logs", "-n", ns, pod, "--all-containers", "--tail=20"]);
        report += &format!("\nlast logs of {pod}:\n{logs}");
    }
    report
}

/// Runs a cached tool (`kubectl`, `helm`) against the test cluster, with `stdin` if given:
/// its standard output, or its error output when it fails.
pub fn tool(name: &str, args: &[&str], stdin: Option<&str>) -> Result<String, String> {
    use std::io::Write as _;
    let bin = cache_dir().join("bin").join(name);
    let mut child = std::process::Command::new(&bin)
        .env("KUBECONFIG", kubeconfig_path())
        .env("HELM_CACHE_HOME", std::env::temp_dir().join("dialtone-helm-cache"))
        .env("HELM_CONFIG_HOME", std::env::temp_dir().join("dialtone-helm-config"))
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("running {}: {e} (run scripts/setup.sh)", bin.display()));
    if let Some(mut pipe) = child.stdin.take() {
        if let Some(input) = stdin {
            let _ = pipe.write_all(input.as_bytes());
        }
    }
    let out = child.wait_with_output().unwrap_or_else(|e| panic!("waiting for {name}: {e}"));
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// A free loopback port (bound, then released) for a server a test starts.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).unwrap_or(0)
}

/// An HTTP client for the project's own servers on loopback.
pub fn http() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder().timeout(Duration::from_secs(5)).build().unwrap_or_default()
}

/// GET `url`: status and body, or None when nothing answers.
pub async fn get(url: &str) -> Option<(u16, String)> {
    let res = http().get(url).send().await.ok()?;
    let status = res.status().as_u16();
    Some((status, res.text().await.ok()?))
}

/// Where the scripts cache tools: `$DIALTONE_CACHE`, else `$XDG_CACHE_HOME/dialtone`, else
/// `~/.cache/dialtone` (the same rule as `scripts/setup.sh`).
pub fn cache_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("DIALTONE_CACHE") {
        return PathBuf::from(dir);
    }
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache"));
    base.join("dialtone")
}

/// The apiserver port of the test cluster's kubeconfig (`server: https://127.0.0.1:PORT`).
pub fn kubeconfig_port() -> u16 {
    let text = std::fs::read_to_string(kubeconfig_path()).unwrap_or_default();
    server_port(&text).unwrap_or_else(|| panic!("no server port in {}", kubeconfig_path().display()))
}

/// The apiserver port of a kubeconfig's text (`server: https://127.0.0.1:PORT`).
pub fn server_port(kubeconfig: &str) -> Option<u16> {
    kubeconfig.lines().find_map(|l| l.trim().strip_prefix("server: https://127.0.0.1:")?.trim().parse().ok())
}
