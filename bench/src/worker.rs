//! Worker overhead: the latency the worker adds over a direct call to the same mock Telnyx, and its
//! start-up time to ready. The mock is a minimal in-process server, so the figures are the
//! worker's own cost (validation, JSON, the upstream hop), not a remote API's.

use std::process::Stdio;
use std::time::{Duration, Instant};

use axum::routing::{get, post};
use axum::{Json, Router};
use tokio::net::TcpListener;

use crate::stats::{ms, percentile};

#[derive(clap::Args)]
pub struct Args {
    /// Requests per path (direct and through the worker).
    #[arg(long, default_value_t = 1000)]
    requests: usize,
    /// Worker start-ups to time.
    #[arg(long, default_value_t = 5)]
    starts: usize,
    /// The worker binary (built with `cargo build --release`).
    #[arg(long, default_value = "target/release/telephony-pod")]
    worker: String,
}

async fn mock() -> anyhow::Result<String> {
    let dial = || async {
        Json(serde_json::json!({ "data": {
            "call_control_id": "v3:bench", "call_leg_id": "leg", "call_session_id": "session", "record_type": "call"
        }}))
    };
    let list =
        || async { Json(serde_json::json!({ "data": [], "meta": { "total_pages": 1, "page_number": 1 } })) };
    let app = Router::new().route("/v2/calls", post(dial)).route("/v2/telephony_credentials", get(list));
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(format!("http://{addr}/v2"))
}

fn spawn_worker(bin: &str, base: &str, port: u16) -> anyhow::Result<tokio::process::Child> {
    Ok(tokio::process::Command::new(bin)
        .env("TELNYX_API_KEY", "bench-key")
        .env("TELNYX_CONNECTION_ID", "bench")
        .env("TELNYX_BASE_URL", base)
        .env("PORT", port.to_string())
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()?)
}

async fn until_ready(port: u16) -> anyhow::Result<()> {
    let url = format!("http://127.0.0.1:{port}/readyz");
    let client = testing::http();
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if let Ok(r) = client.get(&url).send().await {
            if r.status().is_success() {
                return Ok(());
            }
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    anyhow::bail!("worker not ready after 30 s")
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    let base = mock().await?;

    let mut starts = Vec::new();
    for _ in 0..args.starts {
        let port = testing::free_port();
        let t0 = Instant::now();
        let mut child = spawn_worker(&args.worker, &base, port)?;
        until_ready(port).await?;
        starts.push(t0.elapsed());
        let _ = child.kill().await;
    }

    let port = testing::free_port();
    let mut child = spawn_worker(&args.worker, &base, port)?;
    until_ready(port).await?;
    let client = testing::http();
    let worker_url = format!("http://127.0.0.1:{port}/v1/calls");
    let direct_url = format!("{base}/calls");
    let worker_body = serde_json::json!({ "to": "+15551234567", "from": "+15557654321" });
    let direct_body = serde_json::json!({
        "connection_id": "bench", "to": "+15551234567", "from": "+15557654321", "command_id": "x"
    });
    // Warm up both paths, then interleave so both see the same machine conditions.
    for _ in 0..50 {
        client.post(&direct_url).json(&direct_body).send().await?;
        client.post(&worker_url).json(&worker_body).send().await?;
    }
    let (mut direct, mut through) = (Vec::new(), Vec::new());
    for _ in 0..args.requests {
        let t = Instant::now();
        let r = client.post(&direct_url).json(&direct_body).send().await?;
        anyhow::ensure!(r.status().is_success(), "mock answered {}", r.status());
        r.bytes().await?;
        direct.push(t.elapsed());
        let t = Instant::now();
        let r = client.post(&worker_url).json(&worker_body).send().await?;
        anyhow::ensure!(r.status().as_u16() == 201, "worker answered {}", r.status());
        r.bytes().await?;
        through.push(t.elapsed());
    }
    let _ = child.kill().await;

    println!("\n## Worker overhead ({} sequential requests per path, keep-alive, loopback)\n", args.requests);
    println!("| path | p50 | p99 |");
    println!("| --- | --- | --- |");
    println!(
        "| baseline: direct POST /v2/calls to the mock | {} | {} |",
        ms(percentile(&direct, 50.0)),
        ms(percentile(&direct, 99.0))
    );
    println!(
        "| POST /v1/calls through the worker | {} | {} |",
        ms(percentile(&through, 50.0)),
        ms(percentile(&through, 99.0))
    );
    let added = |p: f64| percentile(&through, p).saturating_sub(percentile(&direct, p));
    println!("| added by the worker | {} | {} |", ms(added(50.0)), ms(added(99.0)));
    println!("\n## Worker start-up to ready ({} starts)\n", args.starts);
    println!("| p50 | max |");
    println!("| --- | --- |");
    println!("| {} | {} |", ms(percentile(&starts, 50.0)), ms(percentile(&starts, 100.0)));
    Ok(())
}
