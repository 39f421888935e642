//! No packet of the real node's pod or service ranges can leave the machine: proved by the rules
//! and routes `scripts/cluster.sh up` installs, never by sending anything to an outside address.

use std::process::Command;

fn run(cmd: &str, args: &[&str]) -> String {
    let out = Command::new(cmd).args(args).output().unwrap_or_else(|e| panic!("{cmd}: {e}"));
    assert!(out.status.success(), "{cmd} {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The device the kernel would send a packet for `dst` out of.
fn route_dev(dst: &str) -> String {
    let route = run("ip", &["-o", "route", "get", dst]);
    let mut words = route.split_whitespace();
    words.find(|w| *w == "dev");
    words.next().unwrap_or_default().to_string()
}

#[tokio::test]
async fn pod_and_service_traffic_stays_on_the_machine() {
    // The cluster is up (its API answers) and runs the real node.
    let client = testing::client().await;
    let nodes: kube::Api<k8s_openapi::api::core::v1::Node> = kube::Api::all(client);
    let node = nodes.get("dialtone-node").await.expect("the real node is registered");
    let runtime = node.status.and_then(|s| s.node_info).map(|i| i.container_runtime_version);
    assert!(runtime.as_deref().unwrap_or_default().starts_with("containerd://"), "{runtime:?}");

    // Forwarding: the first rule drops anything from a pod that is not going to another pod.
    let forward = run("iptables", &["-S", "FORWARD"]);
    let first = forward.lines().find(|l| l.starts_with("-A ")).unwrap_or_default();
    assert_eq!(
        first, "-A FORWARD -s 10.244.0.0/24 ! -o dialtone0 -m comment --comment dialtone-node -j DROP",
        "FORWARD:\n{forward}"
    );

    // Routes: pods, the `kubernetes` Service, and a ClusterIP nobody programmed all go to the
    // bridge, never out of the machine's own interfaces (eth0's default route).
    // (10.244.7.7: outside the node's /24, where the simulated node's fake pod IPs live.)
    for dst in ["10.244.0.77", "10.244.7.7", "10.96.0.1", "10.96.200.200", "10.96.255.254"] {
        assert_eq!(route_dev(dst), "dialtone0", "route to {dst}");
    }
    let default_dev = route_dev("192.0.2.123");
    assert_ne!(default_dev, "dialtone0", "only the two ranges are routed to the bridge");

    // Only this machine and its pods reach the apiserver, which listens on every address so pods
    // can: anything else arriving for its port is dropped.
    let port = testing::kubeconfig_port();
    let input = run("iptables", &["-S", "INPUT"]);
    let guard = format!(
        "-A INPUT ! -s 10.244.0.0/24 -p tcp -m tcp --dport {port} -m addrtype ! --src-type LOCAL -m comment --comment dialtone-node -j DROP"
    );
    assert!(input.lines().any(|l| l == guard), "no apiserver guard in INPUT:\n{input}");
}
