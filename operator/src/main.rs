use std::sync::Arc;

use anyhow::Context as _;
use clap::Parser;
use prometheus_client::registry::Registry;
use telephony_operator::admin::{self, Health};
use telephony_operator::cli::{Cli, Command, ReadinessArgs, RunArgs};
use telephony_operator::controller::{self, Scope, Watches};
use telephony_operator::leader::{self, Election};
use telephony_operator::metrics::Metrics;
use telephony_operator::telemetry;
use tokio::net::TcpListener;
use tokio::sync::watch;

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
    telemetry::init(args.log.log_format);
    let client = kube::Client::try_default().await.context("connecting to the Kubernetes API")?;
    let scope = Scope { namespace: args.scope.namespace.clone(), selector: args.scope.selector.clone() };
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

    let listener = TcpListener::bind(args.admin.admin_addr)
        .await
        .with_context(|| format!("binding {}", args.admin.admin_addr))?;
    let app = admin::router(health.clone(), Arc::new(registry));
    let admin_stop = stopped(stop_rx.clone());
    tokio::spawn(async move {
        let limits = dialtone_serving::Limits::default();
        if let Err(e) = dialtone_serving::serve(listener, app, limits, admin_stop).await {
            tracing::error!(error = %e, "admin server failed");
        }
    });
    tracing::info!(admin = %args.admin.admin_addr, namespace = ?scope.namespace, selector = ?scope.selector, "operator starting");
    telephony_operator::heap::spawn_trimmer();

    let mut leading = if args.lease.leader_elect {
        let identity =
            std::env::var("POD_NAME").unwrap_or_else(|_| format!("operator-{:08x}", rand::random::<u32>()));
        let election = Election {
            namespace: args.lease.lease_namespace.clone(),
            lease: args.lease.lease_name.clone(),
            identity: identity.clone(),
            duration_secs: args.lease.lease_duration,
        };
        let leadership = leader::elect(client.clone(), election).await;
        tracing::info!(%identity, lease = %args.lease.lease_name, "waiting to lead");
        Some(leadership)
    } else {
        None
    };
    if let Some(l) = leading.as_mut() {
        tokio::select! {
            res = l.acquired() => res?,
            _ = stopped(stop_rx.clone()) => return Ok(()),
        }
        tracing::info!("leading");
    }
    health.set_leading(true);

    let controller = controller::run(
        client,
        watches,
        metrics,
        health.clone(),
        args.workers.ask_workers,
        stopped(stop_rx.clone()),
    );
    match leading {
        None => controller.await,
        Some(mut l) => {
            tokio::select! {
                _ = controller => {}
                lost = l.lost() => {
                    // Another replica leads, or may from now on: stop at once rather than
                    // reconcile alongside it.
                    health.set_leading(false);
                    anyhow::bail!("{lost}; exiting so a restart rejoins as a standby");
                }
            }
        }
    }
    tracing::info!("stopped");
    Ok(())
}

async fn readiness(args: ReadinessArgs) -> anyhow::Result<()> {
    telemetry::init(args.log.log_format);
    let client = kube::Client::try_default().await.context("connecting to the Kubernetes API")?;
    let settings = dialtone_readiness::Settings {
        addr: args.addr,
        namespaces: args.namespaces,
        stale_after: args.stale_after,
        cors_origins: args.cors_origin,
        worker_heartbeat: args.worker_heartbeat,
    };
    telephony_operator::heap::spawn_trimmer();
    dialtone_readiness::run(client, settings, shutdown_signal()).await
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
