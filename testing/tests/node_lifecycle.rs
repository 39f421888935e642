//! `scripts/cluster.sh` and the host: a real node killed with everything it started (as CI kills a
//! session) is cleaned up by the next `up`, even from another cluster dir (CI clones elsewhere), and
//! `down` leaves no process, mount, bridge, veth, network namespace, iptables rule, cgroup or
//! sysctl change behind.
//!
//! It brings up clusters of its own, so it runs alone, after the test cluster is down:
//! `scripts/test.sh` runs it (`cargo test -p testing --test node_lifecycle`); it is not part of
//! `cargo test --workspace`.

use std::path::{Path, PathBuf};
use std::process::Command;

const PROCESSES: &[&str] = &[
    "etcd",
    "kube-apiserver",
    "kube-controller",
    "kube-scheduler",
    "kubelet",
    "kube-proxy",
    "containerd",
    "containerd-shim",
    "pause",
    "runc",
];
const SYSCTLS: &[&str] = &[
    "net.ipv4.ip_forward",
    "net.ipv4.conf.all.route_localnet",
    "vm.overcommit_memory",
    "kernel.panic",
    "kernel.panic_on_oops",
];

fn sh(script: &str) -> String {
    let out = Command::new("sh").arg("-c").arg(script).output().expect("sh");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// What a real node changes on the host, as sorted lines.
fn host_state() -> Vec<String> {
    let mut state = vec![];
    for line in sh("ps -eo comm=").lines() {
        if PROCESSES.iter().any(|p| line.trim().starts_with(p)) {
            state.push(format!("process {}", line.trim()));
        }
    }
    for line in std::fs::read_to_string("/proc/mounts").unwrap_or_default().lines() {
        if ["kubelet", "containerd", "netns", "cni", "dialtone"].iter().any(|w| line.contains(w)) {
            state.push(format!("mount {line}"));
        }
    }
    for link in sh("ip -o link show | awk -F': ' '{print $2}'").lines() {
        if link.starts_with("dialtone") || link.starts_with("veth") || link.starts_with("cni") {
            state.push(format!("link {link}"));
        }
    }
    state.extend(sh("ip netns list 2>/dev/null").lines().map(|n| format!("netns {n}")));
    for table in ["filter", "nat", "mangle"] {
        for rule in sh(&format!("iptables -t {table} -S")).lines() {
            if ["KUBE-", "CNI-", "dialtone"].iter().any(|w| rule.contains(w)) {
                state.push(format!("iptables {table} {rule}"));
            }
        }
    }
    state.extend(
        sh("ip route show | grep -E 'dialtone|10\\.96\\.|10\\.244\\.'").lines().map(|r| format!("route {r}")),
    );
    state.extend(sh("ls -d /sys/fs/cgroup/*/kubepods 2>/dev/null").lines().map(|d| format!("cgroup {d}")));
    for key in SYSCTLS {
        state.push(format!("sysctl {key}={}", sh(&format!("sysctl -n {key}")).trim()));
    }
    for dir in ["/var/lib/kubelet", "/var/lib/cni", "/var/log/pods", "/run/containerd", "/run/dialtone-node"]
    {
        if Path::new(dir).exists() {
            state.push(format!("dir {dir}"));
        }
    }
    state.sort();
    state
}

/// `scripts/cluster.sh ARGS` with a cluster dir and ports of its own.
fn cluster(dir: &Path, args: &[&str]) -> (bool, String) {
    let out = Command::new("bash")
        .arg(testing::repo_root().join("scripts/cluster.sh"))
        .args(args)
        .env("DIALTONE_CLUSTER_DIR", dir)
        .env("DIALTONE_NODE", "real")
        .env("DIALTONE_APISERVER_PORT", "36443")
        .env("DIALTONE_ETCD_PORT", "32379")
        .output()
        .expect("cluster.sh");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

fn kubectl(dir: &Path, args: &[&str]) -> String {
    let out = Command::new(testing::cache_dir().join("bin/kubectl"))
        .env("KUBECONFIG", dir.join("kubeconfig"))
        .args(args)
        .output()
        .expect("kubectl");
    assert!(out.status.success(), "kubectl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A pod (the pause image, which every node has) running on the node.
fn run_a_pod(dir: &Path) {
    let pod = r#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"sleeper","namespace":"default"},
      "spec":{"containers":[{"name":"sleeper","image":"localhost/pause:3.4","imagePullPolicy":"Never"}]}}"#;
    let file = dir.join("pod.json");
    std::fs::write(&file, pod).expect("write pod");
    kubectl(dir, &["apply", "-f", &file.display().to_string()]);
    kubectl(dir, &["wait", "--for=condition=Ready", "pod/sleeper", "--timeout=90s"]);
}

/// SIGKILL to every process `up` started: what CI does to a session before it runs.
fn kill_everything(dir: &Path) {
    let mut pids = vec![];
    for entry in std::fs::read_dir(dir.join("run")).expect("run dir").flatten() {
        let Some(pid) = std::fs::read_to_string(entry.path()).ok().and_then(|p| p.trim().parse::<i32>().ok())
        else {
            continue;
        };
        // SAFETY: kill(2) of a process group this test's cluster started.
        unsafe {
            libc::kill(-pid, libc::SIGKILL);
            libc::kill(pid, libc::SIGKILL);
        }
        pids.push(pid);
    }
    // SIGKILL is not instant (a busy kubelet's threads take a while under load): wait until each
    // is gone or a zombie, as after a real kill.
    let dead = |pid: &i32| {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        stat.rsplit_once(')').is_none_or(|(_, rest)| rest.trim_start().starts_with('Z'))
    };
    let started = std::time::Instant::now();
    while !pids.iter().all(dead) && started.elapsed() < std::time::Duration::from_secs(20) {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

fn scratch(name: &str) -> PathBuf {
    let dir = testing::repo_root().join("target").join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

#[test]
fn a_killed_node_is_cleaned_by_the_next_up_and_down_leaves_the_host_as_it_was() {
    let before = host_state();
    assert!(
        !before.iter().any(|l| l.starts_with("link dialtone") || l.starts_with("process kubelet")),
        "a real node is running: stop it first (scripts/cluster.sh down)\n{before:#?}"
    );
    let first = scratch("node-lifecycle-a");
    let (ok, log) = cluster(&first, &["up"]);
    assert!(ok, "first up failed:\n{log}");
    run_a_pod(&first);
    kill_everything(&first);
    let killed = host_state();
    assert!(killed.iter().any(|l| l.starts_with("link dialtone0")), "the killed node left its bridge");

    // A fresh clone (another cluster dir) comes up over the leftovers.
    let second = scratch("node-lifecycle-b");
    let (ok, log) = cluster(&second, &["up"]);
    assert!(ok, "up after a killed run failed:\n{log}");
    assert!(log.contains("left behind by a run that was killed"), "{log}");
    let mounts = std::fs::read_to_string("/proc/mounts").unwrap_or_default();
    assert!(!mounts.contains(&first.display().to_string()), "mounts of the killed node remain:\n{mounts}");
    run_a_pod(&second);

    let (ok, log) = cluster(&second, &["down"]);
    assert!(ok, "down failed:\n{log}");
    let after = host_state();
    let added: Vec<&String> = after.iter().filter(|l| !before.contains(l)).collect();
    let removed: Vec<&String> = before.iter().filter(|l| !after.contains(l)).collect();
    assert!(
        added.is_empty() && removed.is_empty(),
        "host changed by up/down: added {added:#?}, removed {removed:#?}"
    );
}
