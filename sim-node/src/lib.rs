//! A kwok-style simulated kubelet for Dialtone's tests and demo.
//!
//! No container runtime exists on the machines Dialtone is developed on, so this program stands in
//! for the kubelet (and the scheduler): it registers a Ready `Node`, binds pending pods to it,
//! writes kubelet-like pod status, confirms graceful deletions, and injects faults requested with
//! the `sim.dialtone.dev/fault` pod annotation.

pub mod fault;
pub mod kubelet;
pub mod node;
pub mod runner;

/// How the simulated node presents itself and how fast it acts.
#[derive(Debug, Clone)]
pub struct Config {
    pub node: String,
    pub node_ip: String,
    pub timing: kubelet::Timing,
    /// Pods handled at once.
    pub concurrency: u16,
}

/// Registers the node and runs the simulated kubelet until the process ends.
pub async fn run(client: kube::Client, cfg: Config) -> Result<(), kube::Error> {
    node::register(&client, &cfg).await?;
    tokio::spawn(node::heartbeat(client.clone(), cfg.clone()));
    runner::run(client, cfg).await;
    Ok(())
}
