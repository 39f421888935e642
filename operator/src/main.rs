use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};
use prometheus_client::registry::Registry;
use telephony_operator::admin::{self, Health};
use telephony_operator::controller::{self, Scope, Watches};
use telephony_operator::leader::{self, Election};
use telephony_operator::metrics::Metrics;
use telephony_operator::telemetry::{self, LogFormat};
use tokio::net::TcpListener;
use tokio::sync::watch;

#[derive(Parser)]
#[command(version, about = "Dialtone operator: supervises telephony workers and serves their readiness")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the controller (reconciles TelephonyServices).
    Run(RunArgs),
    /// Serve the readiness API and dashboard for the main app (200 ready / 503 not).
    Readiness(ReadinessArgs),
    /// Print the TelephonyService CRD as YAML.
    Crd {
        /// Print the field reference (Markdown, docs/telephonyservice.md) instead.
        #[arg(long)]
        reference: bool,
    },
}

#[derive(Args)]
struct ReadinessArgs {
    /// Address to serve on.
    #[arg(long, env = "DIALTONE_READINESS_ADDR", default_value = "0.0.0.0:8080")]
    addr: SocketAddr,
    /// Only these namespaces (comma-separated; default: all).
    #[arg(long, env = "DIALTONE_NAMESPACES", value_delimiter = ',')]
    namespaces: Vec<String>,
    /// Answer `unknown` (503) once the watch has been unconfirmed this long: `10s`, `500ms`, `10`.
    #[arg(long, env = "DIALTONE_STALE_AFTER", default_value = "10s", value_parser = parse_duration)]
    stale_after: std::time::Duration,
    /// Browser origins allowed by CORS (comma-separated; default: none).
    #[arg(long, env = "DIALTONE_CORS_ORIGINS", value_delimiter = ',')]
    cors_origin: Vec<String>,
    #[arg(long, env = "DIALTONE_LOG_FORMAT", value_enum, default_value = "json")]
    log_format: LogFormat,
}

fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    let s = s.trim();
    let (number, unit) = match s.find(|c: char| !c.is_ascii_digit() && c != '.') {
        Some(i) => s.split_at(i),
        None => (s, "s"),
    };
    let n: f64 = number.parse().map_err(|_| format!("{s:?} is not a duration like 10s or 500ms"))?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "s" => n,
        "m" => n * 60.0,
        _ => return Err(format!("unknown unit {unit:?} (use ms, s or m)")),
    };
    if !(0.1..=3600.0).contains(&secs) {
        return Err("must be between 100ms and 60m".into());
    }
    Ok(std::time::Duration::from_secs_f64(secs))
}

#[derive(Args)]
struct RunArgs {
    /// Watch only this namespace (default: all namespaces).
    #[arg(long, env = "DIALTONE_NAMESPACE")]
    namespace: Option<String>,
    /// Only TelephonyServices matching this label selector (shard services across operators).
    #[arg(long, env = "DIALTONE_SELECTOR")]
    selector: Option<String>,
    /// Address of the admin server (/healthz, /readyz, /metrics).
    #[arg(long, env = "DIALTONE_ADMIN_ADDR", default_value = "0.0.0.0:8081")]
    admin_addr: SocketAddr,
    /// Compete for a Lease so that only one replica reconciles.
    #[arg(long, env = "DIALTONE_LEADER_ELECT", default_value_t = true, action = clap::ArgAction::Set)]
    leader_elect: bool,
    /// Namespace of the leader Lease (default: the pod's namespace).
    #[arg(long, env = "POD_NAMESPACE", default_value = "default")]
    lease_namespace: String,
    #[arg(long, default_value = "dialtone-operator")]
    lease_name: String,
    /// Seconds after which a silent leader is replaced.
    #[arg(long, default_value_t = 15, value_parser = clap::value_parser!(u64).range(2..=3600))]
    lease_duration: u64,
    #[arg(long, env = "DIALTONE_LOG_FORMAT", value_enum, default_value = "json")]
    log_format: LogFormat,
    /// Ask a running but not-Ready worker's /readyz why, to quote it in the status (needs to reach
    /// the worker pods). Off for the simulated node, whose pod IPs lead nowhere.
    #[arg(long, env = "DIALTONE_ASK_WORKERS", default_value_t = true, action = clap::ArgAction::Set)]
    ask_workers: bool,
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Crd { reference } => {
            // Written, not print!()ed: `telephony-operator crd | head` must not panic on a closed pipe.
            use std::io::Write as _;
            let text = match reference {
                true => telephony_operator::reference::markdown(),
                false => telephony_operator::crd::crd_yaml()?,
            };
            match std::io::stdout().lock().write_all(text.as_bytes()) {
                Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => return Err(e.into()),
                _ => {}
            }
        }
        Command::Run(args) => {
            // Two workers: reconciles mostly wait on the API, and every extra thread is another
            // allocator arena (memory) on a many-core node.
            let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
            rt.block_on(run(args))?;
        }
        Command::Readiness(args) => {
            // One thread: every answer is a lookup in memory, so one core serves more requests
            // than the app can send, and a single thread keeps the memory small (one allocator arena).
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            rt.block_on(readiness(args))?;
        }
    }
    Ok(())
}

async fn run(args: RunArgs) -> anyhow::Result<()> {
    telemetry::init(args.log_format);
    let client = kube::Client::try_default().await.context("connecting to the Kubernetes API")?;
    let scope = Scope { namespace: args.namespace.clone(), selector: args.selector.clone() };
    let health = Health::default();
    let metrics = Metrics::default();
    let watches = Watches::new(&client, &scope, &health);
    let mut registry = Registry::default();
    metrics.register(&mut registry, watches.tsvcs.clone());

    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::spawn(async move {
        shutdown_signal().await;
        let _ = stop_tx.send(true);
    });
    let stopped = |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };

    let listener =
        TcpListener::bind(args.admin_addr).await.with_context(|| format!("binding {}", args.admin_addr))?;
    let app = admin::router(health.clone(), Arc::new(registry));
    let admin_stop = stopped(stop_rx.clone());
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).with_graceful_shutdown(admin_stop).await {
            tracing::error!(error = %e, "admin server failed");
        }
    });
    tracing::info!(admin = %args.admin_addr, namespace = ?scope.namespace, selector = ?scope.selector, "operator starting");
    telephony_operator::heap::spawn_trimmer();

    let mut leading = if args.leader_elect {
        let identity =
            std::env::var("POD_NAME").unwrap_or_else(|_| format!("operator-{:08x}", rand::random::<u32>()));
        let election = Election {
            namespace: args.lease_namespace.clone(),
            lease: args.lease_name.clone(),
            identity: identity.clone(),
            duration_secs: args.lease_duration,
        };
        let rx = leader::elect(client.clone(), election).await.context("starting leader election")?;
        tracing::info!(%identity, lease = %args.lease_name, "waiting to lead");
        Some(rx)
    } else {
        None
    };
    if let Some(rx) = leading.as_mut() {
        tokio::select! {
            res = rx.wait_for(|l| *l) => { res.context("leader election stopped")?; }
            _ = stopped(stop_rx.clone()) => return Ok(()),
        }
        tracing::info!("leading");
    }
    health.set_leading(true);

    let controller =
        controller::run(client, watches, metrics, health.clone(), args.ask_workers, stopped(stop_rx.clone()));
    match leading {
        None => controller.await,
        Some(mut rx) => {
            tokio::select! {
                _ = controller => {}
                _ = rx.wait_for(|l| !*l) => {
                    // Another replica leads now: stop at once rather than reconcile alongside it.
                    health.set_leading(false);
                    anyhow::bail!("lost the leader lease; exiting so a restart rejoins as a standby");
                }
            }
        }
    }
    tracing::info!("stopped");
    Ok(())
}

async fn readiness(args: ReadinessArgs) -> anyhow::Result<()> {
    telemetry::init(args.log_format);
    let client = kube::Client::try_default().await.context("connecting to the Kubernetes API")?;
    let settings = telephony_operator::readiness::Settings {
        addr: args.addr,
        namespaces: args.namespaces,
        stale_after: args.stale_after,
        cors_origins: args.cors_origin,
    };
    telephony_operator::heap::spawn_trimmer();
    telephony_operator::readiness::run(client, settings, shutdown_signal()).await
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(s) => s,
            Err(_) => {
                let _ = ctrl_c.await;
                return;
            }
        };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
    tracing::info!("shutting down");
}
