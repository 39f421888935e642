//! Failure detection latency: inject `crash` into a worker pod through the simulated node, and time
//! from the annotate request and from the pod status write seen on a watch, to (a) the
//! TelephonyService status showing the failure and (b) the readiness service answering 503 (polled
//! every 2 ms, as an app would poll it). Baseline: the in-process design's 30 s health poll.

use dialtone_api::names::sim::FAULT;
use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Patch, PatchParams, PostParams};
use kube::runtime::{watcher, WatchStreamExt};
use kube::ResourceExt;
use telephony_operator::crd::{Phase, TelephonyService};
use testing::{wait_until, TestNamespace};

use crate::stats::{ms, percentile};

#[derive(clap::Args)]
pub struct Args {
    /// Crash injections to time.
    #[arg(long, default_value_t = 20)]
    samples: usize,
    /// The operator binary to run (built with `cargo build --release`).
    #[arg(long, default_value = "target/release/telephony-operator")]
    operator: String,
}

fn restarts(p: &Pod) -> i32 {
    p.status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .map_or(0, |c| c.iter().map(|c| c.restart_count).sum())
}

fn used(t: &TelephonyService) -> u32 {
    t.status.as_ref().and_then(|s| s.restart_budget.as_ref()).map_or(0, |b| b.used)
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    let ns = TestNamespace::create("bench-detect").await;
    crate::crd::install(&ns.client).await?;
    let mut operator = tokio::process::Command::new(&args.operator)
        // The simulated node's pod IPs lead nowhere: never ask its workers anything.
        .args([
            "run",
            "--leader-elect=false",
            "--ask-workers=false",
            "--log-format=json",
            "--admin-addr=127.0.0.1:0",
        ])
        .arg("--namespace")
        .arg(&ns.name)
        .env("KUBECONFIG", testing::kubeconfig_path())
        .env("RUST_LOG", "warn")
        .kill_on_drop(true)
        .spawn()?;

    // A budget large enough that every sample is a counted failure, never a circuit opening.
    let spec = serde_json::json!({
        "image": "registry.example.com/dialtone/telephony-pod:0.1.0",
        "telnyx": { "apiKeySecretRef": { "name": "telnyx" }, "connectionId": "bench" },
        "restartBudget": { "maxRestarts": 1000, "windowSeconds": 600 }
    });
    let secret = k8s_openapi::api::core::v1::Secret {
        metadata: kube::api::ObjectMeta { name: Some("telnyx".into()), ..Default::default() },
        string_data: Some([("apiKey".to_string(), "bench-key".to_string())].into()),
        ..Default::default()
    };
    ns.api::<k8s_openapi::api::core::v1::Secret>().create(&PostParams::default(), &secret).await?;
    let tsvcs = ns.api::<TelephonyService>();
    tsvcs
        .create(&PostParams::default(), &TelephonyService::new("bench", serde_json::from_value(spec)?))
        .await?;
    wait_until(Duration::from_secs(60), "Ready", || async {
        let t = tsvcs.get("bench").await.ok()?;
        (t.status?.phase == Phase::Ready).then_some(())
    })
    .await;
    let pods = ns.api::<Pod>();
    let pod = pods
        .list(&Default::default())
        .await?
        .items
        .into_iter()
        .next()
        .map(|p| p.name_any())
        .unwrap_or_default();

    let port = testing::free_port();
    let _readiness = tokio::process::Command::new(&args.operator)
        .args(["readiness", "--log-format=json", "--namespaces", &ns.name])
        .arg(format!("--addr=127.0.0.1:{port}"))
        // The simulated node's pods run no process: there is no heartbeat to follow.
        .arg("--worker-heartbeat=false")
        .env("KUBECONFIG", testing::kubeconfig_path())
        .env("RUST_LOG", "warn")
        .kill_on_drop(true)
        .spawn()?;
    let status_url = format!("http://127.0.0.1:{port}/v1/status/{}/bench", ns.name);
    let http = testing::http();
    let code = |url: String| {
        let http = http.clone();
        async move { http.get(url).send().await.ok().map(|r| r.status().as_u16()) }
    };

    let mut from_annotate = Vec::new();
    let mut from_pod_write = Vec::new();
    let mut to_503 = Vec::new();
    let by_name = |n: &str| watcher::Config::default().fields(&format!("metadata.name={n}"));
    for i in 0..args.samples {
        let mut tsvc_watch = watcher(tsvcs.clone(), by_name("bench")).applied_objects().boxed();
        let mut pod_watch = watcher(pods.clone(), by_name(&pod)).applied_objects().boxed();
        let before_used = tsvc_watch.try_next().await?.as_ref().map_or(0, used);
        let before_restarts = restarts(&pod_watch.try_next().await?.unwrap_or_default());

        let clear = serde_json::json!({ "metadata": { "annotations": { FAULT: null } } });
        pods.patch(&pod, &PatchParams::default(), &Patch::Merge(&clear)).await?;
        tokio::time::sleep(Duration::from_millis(300)).await;
        // Start from a healthy service, as the app would see it.
        wait_until(Duration::from_secs(30), "readiness 200", || async {
            (code(status_url.clone()).await? == 200).then_some(())
        })
        .await;
        let crash = serde_json::json!({ "metadata": { "annotations": { FAULT: "crash" } } });
        let t0 = Instant::now();
        pods.patch(&pod, &PatchParams::default(), &Patch::Merge(&crash)).await?;
        let pod_written = async {
            while let Some(p) = pod_watch.try_next().await? {
                if restarts(&p) > before_restarts {
                    return Ok::<_, anyhow::Error>(Instant::now());
                }
            }
            anyhow::bail!("pod watch ended")
        };
        let status_updated = async {
            while let Some(t) = tsvc_watch.try_next().await? {
                if used(&t) > before_used {
                    return Ok::<_, anyhow::Error>(Instant::now());
                }
            }
            anyhow::bail!("TelephonyService watch ended")
        };
        let unavailable = async {
            loop {
                if code(status_url.clone()).await == Some(503) {
                    return Ok::<_, anyhow::Error>(Instant::now());
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        };
        let (t_pod, t_status, t_503) = tokio::time::timeout(Duration::from_secs(30), async {
            futures::try_join!(pod_written, status_updated, unavailable)
        })
        .await??;
        from_annotate.push(t_status - t0);
        from_pod_write.push(t_status.saturating_duration_since(t_pod));
        to_503.push(t_503.saturating_duration_since(t_pod));
        eprintln!("sample {:>3}: annotate→status {}", i + 1, ms(t_status - t0));
    }
    let _ = operator.kill().await;
    ns.delete().await;

    println!("\n## Failure detection ({} crash injections)\n", args.samples);
    println!("| measured | p50 | p99 | max |");
    println!("| --- | --- | --- | --- |");
    for (what, s) in [
        ("annotate → TelephonyService status", &from_annotate),
        ("pod status write → TelephonyService status", &from_pod_write),
        ("pod status write → readiness answers 503", &to_503),
    ] {
        println!(
            "| {what} | {} | {} | {} |",
            ms(percentile(s, 50.0)),
            ms(percentile(s, 99.0)),
            ms(percentile(s, 100.0))
        );
    }
    println!(
        "| baseline: in-process health poll every 30 s | 15000.0 ms (mean wait) | 29700.0 ms | 30000.0 ms |"
    );
    Ok(())
}
