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
        test_leak();
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

/// Test hook: `DIALTONE_TEST_LEAK_MIB=N` makes the worker grow by 1 MiB every 10 ms up to N MiB
/// and hold it, like a leak, so the e2e tests can see the kubelet OOM-kill a real worker (a
/// memory limit alone can't: below the worker's 1.1 MiB it kills runc's init instead). The
/// operator and the chart never set it.
fn test_leak() {
    let Some(mib) = std::env::var("DIALTONE_TEST_LEAK_MIB").ok().and_then(|v| v.parse::<usize>().ok()) else {
        return;
    };
    tracing::warn!(mib, "DIALTONE_TEST_LEAK_MIB set: leaking memory on purpose");
    tokio::spawn(async move {
        let mut held: Vec<Vec<u8>> = Vec::with_capacity(mib);
        for _ in 0..mib {
            held.push(vec![1u8; 1 << 20]); // written, so resident
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        std::future::pending::<()>().await;
        drop(held);
    });
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
