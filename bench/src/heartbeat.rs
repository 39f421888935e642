//! The readiness service's memory and CPU while it follows N worker heartbeat streams. N worker
//! processes don't fit on 2 cores, so the pods are API objects only (a scheduler name no scheduler
//! serves: no node runs them) whose status this benchmark writes: IP 127.0.0.1 and the port of a
//! generator in this process that plays N workers, a beat every 100 ms on each connection.
//! Baseline: the same readiness process before the pods exist, in the same run.

use std::process::Stdio;
use std::time::{Duration, Instant};

use dialtone_api::names::{app, MANAGER, SERVICE_LABEL};
use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Patch, PatchParams, PostParams};
use testing::{wait_until, TestNamespace};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::stats::rss_mib;

#[derive(clap::Args)]
pub struct Args {
    /// Worker pods (one heartbeat stream each).
    #[arg(long, default_value_t = 2000)]
    streams: usize,
    /// CPU is measured over this many seconds with every stream beating.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    #[arg(long, default_value = "target/release/telephony-operator")]
    operator: String,
}

const HELLO: &[u8] =
    b"HTTP/1.0 200 OK\r\ncontent-type: text/event-stream\r\n\r\nevent: hello\ndata: {\"periodMs\":100}\n\n";

/// Plays any number of workers on one loopback port: each connection gets a hello, then beats.
async fn generator() -> anyhow::Result<u16> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut request = [0u8; 512];
                let _ = s.read(&mut request).await;
                if s.write_all(HELLO).await.is_err() {
                    return;
                }
                let mut tick = tokio::time::interval(Duration::from_millis(100));
                loop {
                    tick.tick().await;
                    if s.write_all(b"data: beat\n\n").await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    Ok(port)
}

fn pod(i: usize, port: u16) -> anyhow::Result<Pod> {
    Ok(serde_json::from_value(serde_json::json!({
        "metadata": {
            "name": format!("worker-{i}"),
            "labels": { app::MANAGED_BY: MANAGER, SERVICE_LABEL: format!("svc-{i}") },
        },
        "spec": {
            "schedulerName": "dialtone-bench-none",
            "containers": [{ "name": "worker", "image": "none", "ports": [{ "name": "http", "containerPort": port }] }],
        },
    }))?)
}

async fn beating(metrics_url: &str) -> Option<usize> {
    let (_, text) = testing::get(metrics_url).await?;
    text.lines().find_map(|l| l.strip_prefix("dialtone_readiness_heartbeat_beating ")?.trim().parse().ok())
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    let ns = TestNamespace::create("bench-heartbeat").await;
    let port = generator().await?;
    let addr = testing::free_port();
    let mut readiness = tokio::process::Command::new(&args.operator)
        .args(["readiness", "--log-format=json", "--namespaces", &ns.name])
        .arg(format!("--addr=127.0.0.1:{addr}"))
        .env("KUBECONFIG", testing::kubeconfig_path())
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .kill_on_drop(true)
        .spawn()?;
    let pid = readiness.id().ok_or_else(|| anyhow::anyhow!("readiness exited"))?;
    let url = format!("http://127.0.0.1:{addr}");
    wait_until(Duration::from_secs(30), "readiness synced", || async {
        (testing::get(&format!("{url}/readyz")).await?.0 == 200).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let idle = rss_mib(pid);

    let pods = ns.api::<Pod>();
    let started = Instant::now();
    let writes = futures::stream::iter(0..args.streams).map(|i| {
        let pods = pods.clone();
        async move {
            let p = pods.create(&PostParams::default(), &pod(i, port)?).await?;
            let status = serde_json::json!({ "status": {
                "podIP": "127.0.0.1", "podIPs": [{ "ip": "127.0.0.1" }],
                "conditions": [{ "type": "Ready", "status": "True" }],
            } });
            let name = p.metadata.name.unwrap_or_default();
            pods.patch_status(&name, &PatchParams::default(), &Patch::Merge(&status)).await?;
            anyhow::Ok(())
        }
    });
    let results: Vec<anyhow::Result<()>> = writes.buffer_unordered(32).collect().await;
    results.into_iter().collect::<anyhow::Result<Vec<()>>>()?;
    let written = started.elapsed();
    let metrics = format!("{url}/metrics");
    wait_until(Duration::from_secs(120), "every stream beating", || async {
        (beating(&metrics).await? == args.streams).then_some(())
    })
    .await;
    let all_beating = started.elapsed();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let cpu_before = crate::stats::cpu_seconds(pid);
    tokio::time::sleep(Duration::from_secs(args.seconds)).await;
    let cpu = (crate::stats::cpu_seconds(pid) - cpu_before) / args.seconds as f64;
    let full = rss_mib(pid);
    let _ = readiness.kill().await;
    ns.delete().await;

    println!(
        "\n## The readiness service following {} worker heartbeat streams (a beat every 100 ms each)\n",
        args.streams
    );
    println!("| measured | value |");
    println!("| --- | --- |");
    println!("| readiness RSS, idle (baseline: no worker pods) | {idle:.1} MiB |");
    println!("| readiness RSS, {} streams beating | {full:.1} MiB |", args.streams);
    println!("| added by the streams | {:+.1} MiB |", full - idle);
    println!(
        "| readiness CPU, {} streams beating ({} s) | {:.1}% of one core |",
        args.streams,
        args.seconds,
        cpu * 100.0
    );
    println!(
        "| pods written → every stream beating | {:.1} s (the writes alone: {:.1} s) |",
        all_beating.as_secs_f64(),
        written.as_secs_f64()
    );
    Ok(())
}
