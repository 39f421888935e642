use std::process::ExitCode;
use std::time::Duration;

use telephony_pod::config::Config;

fn main() -> ExitCode {
    // Configuration errors: one line naming the variable, non-zero exit (CrashLoop for the operator).
    let config = match Config::from_env() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("telephony-pod: invalid configuration: {e}");
            return ExitCode::from(2);
        }
    };
    init_logging();
    let delay = Duration::from_millis(
        std::env::var("SHUTDOWN_DELAY_MS").ok().and_then(|v| v.parse().ok()).unwrap_or(2000),
    );
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("telephony-pod: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        let addr = std::net::SocketAddr::from(([0, 0, 0, 0], config.port));
        let listener = tokio::net::TcpListener::bind(addr).await?;
        tracing::info!(%addr, service = %config.service, base_url = %config.base_url, "telephony worker listening");
        telephony_pod::serve(config, listener, delay, terminated()).await
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "telephony worker failed");
            ExitCode::FAILURE
        }
    }
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_target(false);
    if std::env::var("LOG_FORMAT").as_deref() == Ok("text") {
        builder.init();
    } else {
        builder.json().flatten_event(true).init();
    }
}

/// SIGTERM (Kubernetes) or Ctrl-C.
async fn terminated() {
    #[cfg(unix)]
    {
        if let Ok(mut term) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}
