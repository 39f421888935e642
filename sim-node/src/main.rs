use std::time::Duration;

use anyhow::Context as _;
use clap::Parser;
use sim_node::{kubelet::Timing, Config};

/// A simulated kubelet: binds pods to a Ready fake node and writes their status.
/// Inject faults with `kubectl annotate pod NAME sim.dialtone.dev/fault=crash|oom|crashloop|notready|imagepull`.
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    /// Name of the simulated Node.
    #[arg(long, env = "SIM_NODE_NAME", default_value = "sim-node")]
    node: String,
    /// InternalIP reported for the node (never contacted).
    #[arg(long, default_value = "10.0.0.1")]
    node_ip: String,
    /// Bound pod → containers running, in milliseconds.
    #[arg(long, default_value_t = 500)]
    start_ms: u64,
    /// Container running → Ready, in milliseconds (also the not-ready blip after a crash).
    #[arg(long, default_value_t = 1000)]
    ready_ms: u64,
    /// First CrashLoopBackOff delay in milliseconds (doubles per restart).
    #[arg(long, default_value_t = 10_000)]
    crashloop_base_ms: u64,
    /// CrashLoopBackOff cap in milliseconds.
    #[arg(long, default_value_t = 300_000)]
    crashloop_max_ms: u64,
    /// Pods handled at once.
    #[arg(long, default_value_t = 64)]
    concurrency: u16,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let args = Args::parse();
    let timing = Timing {
        start: Duration::from_millis(args.start_ms),
        ready: Duration::from_millis(args.ready_ms),
        crashloop_base: Duration::from_millis(args.crashloop_base_ms),
        crashloop_max: Duration::from_millis(args.crashloop_max_ms),
        ..Timing::default()
    };
    let cfg = Config { node: args.node, node_ip: args.node_ip, timing, concurrency: args.concurrency };
    let client =
        kube::Client::try_default().await.context("connecting to the Kubernetes API (KUBECONFIG)")?;
    tracing::info!(node = %cfg.node, "simulated node starting");
    tokio::select! {
        res = sim_node::run(client, cfg) => res.context("simulated node stopped")?,
        _ = tokio::signal::ctrl_c() => tracing::info!("interrupted, stopping"),
    }
    Ok(())
}
