//! Readiness throughput: wrk on loopback against `GET /v1/status/{ns}/{name}` and, with the same
//! settings in the same run, against nginx (one worker) serving the same JSON as a static file.
//! Also the readiness service's memory with N services in its cache.

use std::process::Stdio;
use std::time::Duration;

use kube::api::{Patch, PatchParams, PostParams};
use telephony_operator::crd::TelephonyService;
use testing::{wait_until, TestNamespace};

#[derive(clap::Args)]
pub struct Args {
    /// TelephonyServices in the readiness service's cache.
    #[arg(long, default_value_t = 1000)]
    services: usize,
    /// wrk duration per target, seconds.
    #[arg(long, default_value_t = 10)]
    seconds: u32,
    /// wrk connections: each level is measured on both targets.
    #[arg(long, value_delimiter = ',', default_value = "10,50")]
    connections: Vec<u32>,
    #[arg(long, default_value = "target/release/telephony-operator")]
    operator: String,
}

struct Wrk {
    rps: f64,
    p50: String,
    p99: String,
}

fn wrk(url: &str, a: &Args, connections: u32) -> anyhow::Result<Wrk> {
    let out = std::process::Command::new("wrk")
        .args(["-t", "1", "-c", &connections.to_string(), "-d", &format!("{}s", a.seconds), "--latency", url])
        .output()?;
    anyhow::ensure!(out.status.success(), "wrk failed: {}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    anyhow::ensure!(!text.contains("Non-2xx"), "non-2xx answers from {url}:\n{text}");
    let field = |prefix: &str| {
        text.lines()
            .find_map(|l| l.trim().strip_prefix(prefix).map(|r| r.trim().to_string()))
            .unwrap_or_default()
    };
    Ok(Wrk { rps: field("Requests/sec:").parse().unwrap_or(0.0), p50: field("50%"), p99: field("99%") })
}

/// The status every service starts with: Ready, one worker.
pub fn ready_status(message: &str) -> serde_json::Value {
    serde_json::json!({ "status": {
        "phase": "Ready", "observedGeneration": 1, "replicas": 1, "readyReplicas": 1, "ready": "1/1",
        "restarts": "0/3", "message": message, "endpoint": "http://x-worker.bench.svc:8080",
        "restartBudget": { "used": 0, "max": 3, "windowSeconds": 600 }
    }})
}

/// `n` TelephonyServices `svc-0`.. with a Ready status, written directly (no operator): what is
/// measured is the readiness service alone.
pub async fn ready_services(ns: &TestNamespace, n: usize) -> anyhow::Result<Vec<String>> {
    let api = ns.api::<TelephonyService>();
    let spec: telephony_operator::crd::TelephonyServiceSpec = serde_json::from_value(serde_json::json!({
        "image": "registry.example.com/dialtone/telephony-pod:0.1.0",
        "telnyx": { "apiKeySecretRef": { "name": "telnyx" }, "connectionId": "bench" }
    }))?;
    let status = ready_status("1/1 workers ready");
    let names: Vec<String> = (0..n).map(|i| format!("svc-{i}")).collect();
    for chunk in names.chunks(50) {
        futures::future::try_join_all(chunk.iter().map(|n| {
            let (api, spec, status) = (api.clone(), spec.clone(), status.clone());
            async move {
                api.create(&PostParams::default(), &TelephonyService::new(n, spec)).await?;
                api.patch_status(n, &PatchParams::default(), &Patch::Merge(&status)).await
            }
        }))
        .await?;
    }
    Ok(names)
}

/// The readiness service (`operator readiness`) on a free loopback port, over `namespace`,
/// without heartbeats (there are no worker pods).
pub fn start(operator: &str, namespace: &str) -> anyhow::Result<(tokio::process::Child, u16)> {
    let port = testing::free_port();
    let child = tokio::process::Command::new(operator)
        .args([
            "readiness",
            "--log-format=json",
            "--namespaces",
            namespace,
            &format!("--addr=127.0.0.1:{port}"),
            "--worker-heartbeat=false",
        ])
        .env("KUBECONFIG", testing::kubeconfig_path())
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .kill_on_drop(true)
        .spawn()?;
    Ok((child, port))
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    let ns = TestNamespace::create("bench-ready").await;
    crate::crd::install(&ns.client).await?;

    let names = ready_services(&ns, args.services).await?;
    let (mut child, port) = start(&args.operator, &ns.name)?;
    let last = format!("http://127.0.0.1:{port}/v1/status/{}/{}", ns.name, names[names.len() - 1]);
    wait_until(Duration::from_secs(60), "readiness serving every service", || async {
        (testing::get(&last).await?.0 == 200).then_some(())
    })
    .await;
    let url = format!("http://127.0.0.1:{port}/v1/status/{}/svc-0", ns.name);
    let body = testing::get(&url).await.map(|r| r.1).unwrap_or_default();
    let pid = child.id().unwrap_or(0);
    let rss_idle = crate::stats::rss_mib(pid);

    // nginx, one worker, serving the same bytes.
    let dir = std::env::temp_dir().join(format!("dialtone-bench-nginx-{port}"));
    std::fs::create_dir_all(dir.join("logs"))?;
    std::fs::write(dir.join("status.json"), &body)?;
    let nginx_port = testing::free_port();
    let conf = format!(
        "worker_processes 1; master_process off; daemon off; pid {d}/nginx.pid; error_log {d}/logs/error.log; user root;\n\
         events {{ worker_connections 1024; }}\n\
         http {{ access_log off; sendfile on; keepalive_requests 1000000; types {{ application/json json; }}\n\
           server {{ listen 127.0.0.1:{nginx_port}; root {d}; location / {{ default_type application/json; }} }} }}\n",
        d = dir.display()
    );
    std::fs::write(dir.join("nginx.conf"), conf)?;
    let mut nginx = tokio::process::Command::new("nginx")
        .args(["-c", &dir.join("nginx.conf").display().to_string(), "-p", &dir.display().to_string()])
        .kill_on_drop(true)
        .spawn()?;
    let nginx_url = format!("http://127.0.0.1:{nginx_port}/status.json");
    wait_until(Duration::from_secs(10), "nginx", || async {
        (testing::get(&nginx_url).await?.0 == 200).then_some(())
    })
    .await;

    let mut results = Vec::new();
    for &c in &args.connections {
        let ours = tokio::task::block_in_place(|| wrk(&url, &args, c))?;
        let theirs = tokio::task::block_in_place(|| wrk(&nginx_url, &args, c))?;
        results.push((c, ours, theirs));
    }
    let rss_loaded = crate::stats::rss_mib(pid);
    let _ = nginx.kill().await;
    let _ = child.kill().await;
    let _ = std::fs::remove_dir_all(&dir);
    ns.delete().await;

    println!(
        "\n## Readiness throughput (wrk -t1 -d{}s, loopback, {} services cached)\n",
        args.seconds, args.services
    );
    println!("| connections | target | requests/s | p50 | p99 |");
    println!("| --- | --- | --- | --- | --- |");
    for (c, ours, theirs) in &results {
        println!(
            "| {c} | baseline: nginx, 1 worker, the same JSON as a static file | {:.0} | {} | {} |",
            theirs.rps, theirs.p50, theirs.p99
        );
        println!(
            "| {c} | readiness service `GET /v1/status/{{ns}}/{{name}}` | {:.0} | {} | {} |",
            ours.rps, ours.p50, ours.p99
        );
        println!("| {c} | ratio (readiness / nginx) | {:.2}× | | |", ours.rps / theirs.rps.max(1.0));
    }
    println!("\n## Readiness memory\n");
    println!("| services cached | RSS idle | RSS after the load |");
    println!("| --- | --- | --- |");
    println!("| {} | {:.1} MiB | {:.1} MiB |", args.services, rss_idle, rss_loaded);
    Ok(())
}
