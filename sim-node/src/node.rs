//! The simulated Node object: registered Ready, with a heartbeat like a kubelet's.

use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::{Node, NodeAddress, NodeCondition, NodeSpec, NodeStatus, NodeSystemInfo};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, ObjectMeta, Patch, PatchParams, PostParams};
use kube::Client;

use crate::Config;

/// Creates the Node if needed and marks it Ready.
pub async fn register(client: &Client, cfg: &Config) -> Result<(), kube::Error> {
    let nodes: Api<Node> = Api::all(client.clone());
    if nodes.get_opt(&cfg.node).await?.is_none() {
        let node = Node {
            metadata: ObjectMeta {
                name: Some(cfg.node.clone()),
                labels: Some(
                    [
                        ("kubernetes.io/hostname".to_string(), cfg.node.clone()),
                        ("kubernetes.io/os".to_string(), "linux".to_string()),
                        ("node.dialtone.dev/simulated".to_string(), "true".to_string()),
                    ]
                    .into(),
                ),
                ..Default::default()
            },
            spec: Some(NodeSpec::default()),
            status: None,
        };
        match nodes.create(&PostParams::default(), &node).await {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 409 => {}
            Err(e) => return Err(e),
        }
    }
    write_status(&nodes, cfg).await
}

/// Keeps the Ready condition's heartbeat fresh, as a kubelet does.
pub async fn heartbeat(client: Client, cfg: Config) {
    let nodes: Api<Node> = Api::all(client);
    let mut tick = tokio::time::interval(Duration::from_secs(20));
    loop {
        tick.tick().await;
        if let Err(e) = write_status(&nodes, &cfg).await {
            tracing::warn!(error = %e, "node heartbeat failed");
        }
    }
}

async fn write_status(nodes: &Api<Node>, cfg: &Config) -> Result<(), kube::Error> {
    let now = Time(Timestamp::now());
    let q = |s: &str| Quantity(s.to_string());
    let capacity: std::collections::BTreeMap<String, Quantity> =
        [("cpu".to_string(), q("64")), ("memory".to_string(), q("256Gi")), ("pods".to_string(), q("2000"))]
            .into();
    let status = NodeStatus {
        capacity: Some(capacity.clone()),
        allocatable: Some(capacity),
        conditions: Some(vec![NodeCondition {
            type_: "Ready".into(),
            status: "True".into(),
            reason: Some("KubeletReady".into()),
            message: Some("simulated kubelet is posting ready status".into()),
            last_heartbeat_time: Some(now.clone()),
            last_transition_time: Some(now),
        }]),
        addresses: Some(vec![
            NodeAddress { type_: "InternalIP".into(), address: cfg.node_ip.clone() },
            NodeAddress { type_: "Hostname".into(), address: cfg.node.clone() },
        ]),
        node_info: Some(NodeSystemInfo {
            architecture: "amd64".into(),
            operating_system: "linux".into(),
            kubelet_version: "v1.20.2-sim".into(),
            kube_proxy_version: "v1.20.2-sim".into(),
            container_runtime_version: "sim://1".into(),
            os_image: "Dialtone simulated node".into(),
            kernel_version: "sim".into(),
            ..Default::default()
        }),
        ..Default::default()
    };
    let patch = serde_json::json!({ "status": status });
    nodes.patch_status(&cfg.node, &PatchParams::default(), &Patch::Merge(&patch)).await.map(|_| ())
}
