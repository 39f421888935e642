//! Dialtone's telephony worker: everything telephony that used to run inside the web app (WebRTC
//! credentials and tokens, placing and ending calls through Telnyx), isolated in its own pod.

pub mod api;
pub mod auth;
pub mod calls;
pub mod config;
pub mod credentials;
pub mod drain;
pub mod error;
pub mod health;
pub mod heartbeat;
pub mod input;
pub mod metrics;
pub mod openapi;
pub mod readiness;
pub mod secret;
pub mod telnyx;
pub mod webhook;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;

use crate::api::AppState;
use crate::calls::Calls;
use crate::config::Config;
use crate::credentials::Credentials;
use crate::drain::Drain;
use crate::metrics::Metrics;
use crate::readiness::Readiness;
use crate::telnyx::Telnyx;

/// Serves the API on `listener` until `shutdown` resolves, then drains: readiness turns false
/// and new calls are refused, traffic keeps flowing for `shutdown_delay` (so endpoints can drop
/// this pod) and live calls may finish up to the drain timeout; then new connections stop, and
/// in-flight requests get up to `shutdown_grace` to finish.
pub async fn serve(
    config: Config,
    listener: TcpListener,
    shutdown_delay: Duration,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    // rustls needs a process-wide crypto provider; ring is the one we build with.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let metrics = Metrics::default();
    let registry = Arc::new(metrics.registry());
    let telnyx = Arc::new(Telnyx::new(&config, metrics.clone())?);
    let credentials = Arc::new(Credentials::new(
        telnyx.clone(),
        config.connection_id.clone(),
        config.tag(),
        config.credential_ttl,
        config.max_credentials,
        metrics.clone(),
    ));
    let readiness = Arc::new(Readiness::default());
    let calls = Arc::new(Calls::new(metrics.clone()));
    let grace = config.shutdown_grace;
    let plan = Drain {
        delay: shutdown_delay,
        timeout: config.drain_timeout,
        calls_end_visibly: config.webhook_key.is_some(),
        termination_log: config.termination_log.clone(),
    };
    let state = AppState {
        config: Arc::new(config),
        telnyx: telnyx.clone(),
        credentials: credentials.clone(),
        readiness: readiness.clone(),
        calls: calls.clone(),
        seen: Arc::default(),
        metrics,
        registry,
    };
    let checker =
        tokio::spawn(health::check_telnyx(telnyx.clone(), readiness.clone(), state.config.health_period));
    let sweeper = tokio::spawn(sweep(credentials, state.config.sweep_period));

    let drainer = readiness.clone();
    tokio::spawn(async move {
        shutdown.await;
        drainer.shut_down();
        drain::run(plan, &calls, &telnyx, &drainer).await;
        drainer.stop();
    });
    let stopping = readiness.clone();
    // The default limits (serving/src/lib.rs): 1,024 connections are plenty for the app, Telnyx's
    // webhooks, the readiness service's heartbeat stream and the kubelet's probes.
    let limits = dialtone_serving::Limits::default();
    let server =
        dialtone_serving::serve(
            listener,
            api::router(state),
            limits,
            async move { stopping.stopped().await },
        );
    let mut server = tokio::spawn(server);
    // The grace period starts when we stop accepting; until then the server runs unbounded.
    tokio::select! {
        res = &mut server => { res??; }
        _ = async {
            readiness.stopped().await;
            tokio::time::sleep(grace).await;
        } => {
            tracing::warn!(grace_s = grace.as_secs(), "in-flight requests did not finish within the grace period");
            server.abort();
        }
    }
    checker.abort();
    sweeper.abort();
    tracing::info!("stopped");
    Ok(())
}

async fn sweep(credentials: Arc<Credentials>, period: Duration) {
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        match credentials.sweep().await {
            Ok(r) => tracing::info!(deleted = r.deleted, kept = r.kept, "credential sweep"),
            Err(e) => tracing::warn!(error = %e, "credential sweep failed; will try again"),
        }
    }
}
