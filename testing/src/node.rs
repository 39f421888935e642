//! The real node, as a test sees it: the images `scripts/images.sh` imports, the Telnyx mock that
//! pods reach, and faults made from the host the way a worker meets them in production: a signal
//! to the container's process, or a network partition between one pod and Telnyx.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::Api;
pub use libc::{SIGCONT, SIGKILL, SIGSTOP};

/// The worker image as `scripts/images.sh` tags it (the name examples/ uses).
pub const WORKER_IMAGE: &str = "ghcr.io/dialtone-dev/telephony-pod:0.1.0";
/// The operator image (the chart's default repository and appVersion).
pub const OPERATOR_IMAGE: &str = "ghcr.io/dialtone-dev/telephony-operator:0.1.0";
/// The bridge's address: where pods reach services on the host.
pub const GATEWAY: &str = "10.244.0.1";
/// Port of the Telnyx mock (Prism) that `scripts/cluster.sh up` serves on the bridge.
pub const TELNYX_PORT: u16 = 4010;

/// The Telnyx base URL for workers on the local cluster.
pub fn telnyx_url() -> String {
    format!("http://{GATEWAY}:{TELNYX_PORT}/v2")
}

/// The cluster dir: where the kubeconfig is, and the node's containerd socket beside it.
fn cluster_dir() -> PathBuf {
    crate::kubeconfig_path().parent().map(PathBuf::from).unwrap_or_default()
}

/// `ctr` against the node's containerd, in the namespace the kubelet uses.
pub fn ctr(args: &[&str]) -> Result<String, String> {
    let sock = cluster_dir().join("run/containerd.sock");
    let out = Command::new("ctr")
        .arg("--address")
        .arg(&sock)
        .args(["-n", "k8s.io"])
        .args(args)
        .output()
        .map_err(|e| format!("ctr: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// PID of a process `scripts/cluster.sh` started (kubelet, containerd, ...), from its pid file.
pub fn component_pid(name: &str) -> Option<u32> {
    let pid = std::fs::read_to_string(cluster_dir().join("run").join(format!("{name}.pid"))).ok()?;
    pid.trim().parse().ok()
}

/// Host PID of a running container's process (`ctr tasks ls`: TASK PID STATUS).
pub fn container_pid(container_id: &str) -> Option<i32> {
    let tasks = ctr(&["tasks", "ls"]).ok()?;
    tasks.lines().find_map(|l| {
        let cols: Vec<&str> = l.split_whitespace().collect();
        (cols.first() == Some(&container_id) && cols.get(2) == Some(&"RUNNING"))
            .then(|| cols[1].parse().ok())?
    })
}

/// IDs of the containers named `container` of pods in `namespace` that containerd still has.
pub fn containers(namespace: &str, container: &str) -> Vec<String> {
    let filter = format!(
        "labels.\"io.kubernetes.pod.namespace\"=={namespace},labels.\"io.kubernetes.container.name\"=={container}"
    );
    let out = ctr(&["containers", "ls", "-q", &filter]).unwrap_or_else(|e| panic!("ctr containers ls: {e}"));
    out.lines().map(str::to_string).collect()
}

/// The running container of `pod` (its first container): (containerd ID, restart count).
pub async fn running_container(pods: &Api<Pod>, pod: &str, timeout: Duration) -> (String, i32) {
    crate::wait_until(timeout, &format!("a running container in {pod}"), || async {
        let p = pods.get(pod).await.ok()?;
        let cs = p.status?.container_statuses?.into_iter().next()?;
        cs.state?.running?;
        let id = cs.container_id?.strip_prefix("containerd://")?.to_string();
        container_pid(&id).map(|_| (id, cs.restart_count))
    })
    .await
}

/// Sends `signal` from the host to the process of `pod`'s container, once it runs (a container
/// waiting out CrashLoopBackOff has none); returns the restart count before the signal.
pub async fn signal_container(pods: &Api<Pod>, pod: &str, signal: i32) -> i32 {
    let (pid, restarts) = container_process(pods, pod).await;
    signal_process(pid, signal);
    restarts
}

/// The host PID of `pod`'s container process, once it runs, and the restart count: finding it
/// takes two `ctr` calls, so a benchmark finds it first and starts its clock at the signal.
pub async fn container_process(pods: &Api<Pod>, pod: &str) -> (i32, i32) {
    let (id, restarts) = running_container(pods, pod, Duration::from_secs(90)).await;
    let pid = container_pid(&id).unwrap_or_else(|| panic!("no process for container {id}"));
    (pid, restarts)
}

pub fn signal_process(pid: i32, signal: i32) {
    // SAFETY: kill(2) with a PID read from containerd; no memory is shared.
    let rc = unsafe { libc::kill(pid, signal) };
    assert_eq!(rc, 0, "kill -{signal} {pid}: {}", std::io::Error::last_os_error());
}

/// Cuts one pod off from the Telnyx mock: its packets to the mock's port are answered with a TCP
/// reset, as when Telnyx is unreachable. Heals when dropped.
pub struct Partition {
    rule: Vec<String>,
}

impl Partition {
    pub fn from_telnyx(pod_ip: &str) -> Partition {
        let rule: Vec<String> = [
            "INPUT",
            "-s",
            pod_ip,
            "-d",
            GATEWAY,
            "-p",
            "tcp",
            "--dport",
            &TELNYX_PORT.to_string(),
            "-j",
            "REJECT",
            "--reject-with",
            "tcp-reset",
            "-m",
            "comment",
            "--comment",
            "dialtone-node",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        iptables("-I", &rule).unwrap_or_else(|e| panic!("partition {pod_ip}: {e}"));
        Partition { rule }
    }
}

impl Partition {
    /// Drops every packet from pod `from` to pod `to` (on the bridge, through FORWARD): `to` keeps
    /// answering the kubelet (its probes come from the host) and everyone else.
    pub fn between(from: &str, to: &str) -> Partition {
        let rule: Vec<String> =
            ["FORWARD", "-s", from, "-d", to, "-j", "DROP", "-m", "comment", "--comment", "dialtone-node"]
                .iter()
                .map(|s| s.to_string())
                .collect();
        iptables("-I", &rule).unwrap_or_else(|e| panic!("partition {from} → {to}: {e}"));
        Partition { rule }
    }
}

impl Drop for Partition {
    fn drop(&mut self) {
        let _ = iptables("-D", &self.rule);
    }
}

fn iptables(op: &str, rule: &[String]) -> Result<(), String> {
    let out = Command::new("iptables").arg(op).args(rule).output().map_err(|e| e.to_string())?;
    out.status.success().then_some(()).ok_or_else(|| String::from_utf8_lossy(&out.stderr).into_owned())
}
