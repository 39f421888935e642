//! `dialtone-bench`: Dialtone's benchmarks against the local control plane. Each prints its figures
//! and the baseline it is compared with, measured in the same run.

mod chaos;
mod convergence;
mod crd;
mod detection;
mod hang;
mod heartbeat;
mod readiness;
mod real_detection;
mod sse;
mod sse_load;
mod stats;
mod worker;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(about = "Dialtone benchmarks (need `scripts/cluster.sh up`)")]
struct Cli {
    #[command(subcommand)]
    bench: Bench,
}

#[derive(Subcommand)]
enum Bench {
    /// Chaos on the control plane: operator kills, apiserver and etcd restarts, cut connections,
    /// racing edits, while workers crash; invariants checked.
    Chaos(chaos::Args),
    /// Failure detection: `crash` injections → TelephonyService status updated.
    Detection(detection::Args),
    /// Failure detection on the real node: worker process kills → kubelet, status, readiness 503;
    /// apply → Ready; memory of the node and the pods.
    RealDetection(real_detection::Args),
    /// Convergence at scale (N services until all Ready) vs direct writes; operator memory and CPU.
    Convergence(convergence::Args),
    /// The readiness service's memory and CPU following N worker heartbeat streams.
    Heartbeat(heartbeat::Args),
    /// Readiness service throughput vs nginx, and its memory with N services.
    Readiness(readiness::Args),
    /// The readiness service with many SSE subscribers and steady GETs while services flap: lost
    /// updates, memory per subscriber, a subscriber that never reads; with --seconds, a soak.
    SseLoad(sse_load::Args),
    /// Latency the worker adds over a direct call to the same mock, and its start-up time.
    Worker(worker::Args),
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().bench {
        Bench::Chaos(args) => chaos::run(args).await,
        Bench::Detection(args) => detection::run(args).await,
        Bench::RealDetection(args) => real_detection::run(args).await,
        Bench::Convergence(args) => convergence::run(args).await,
        Bench::Worker(args) => worker::run(args).await,
        Bench::Readiness(args) => readiness::run(args).await,
        Bench::SseLoad(args) => sse_load::run(args).await,
        Bench::Heartbeat(args) => heartbeat::run(args).await,
    }
}
