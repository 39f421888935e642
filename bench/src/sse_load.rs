//! The readiness service under load: many SSE subscribers (`/v1/watch`, as app replicas hold
//! them) and steady GETs while services flap, then a last round that settles every service. Every
//! subscriber must end with every service's final state (no lost update); a subscriber told
//! `resync` reconnects, as the client does. One more subscriber never reads: the service must
//! bound what it holds for it (told `resync` and closed once it falls a channel behind). With
//! `--seconds`, the flapping goes on that long (a soak) and the service's RSS is sampled.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kube::api::{Patch, PatchParams};
use telephony_operator::crd::TelephonyService;
use testing::TestNamespace;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[derive(clap::Args)]
pub struct Args {
    #[arg(long, default_value_t = 1000)]
    subscribers: usize,
    #[arg(long, default_value_t = 100)]
    services: usize,
    /// Flapping rounds (each flips every service), when `--seconds` is 0.
    #[arg(long, default_value_t = 20)]
    rounds: u32,
    /// Flap for this long instead (a soak); RSS is sampled every `--sample-secs`.
    #[arg(long, default_value_t = 0)]
    seconds: u64,
    #[arg(long, default_value_t = 30)]
    sample_secs: u64,
    /// Pause between rounds.
    #[arg(long, default_value_t = 500)]
    round_ms: u64,
    #[arg(long, default_value = "target/release/telephony-operator")]
    operator: String,
}

/// What one subscriber has seen: each service's last `message`.
type Seen = Arc<Mutex<HashMap<String, String>>>;

#[derive(Default)]
struct Counters {
    events: AtomicU64,
    resyncs: AtomicU64,
    gets: AtomicU64,
    bad_gets: AtomicU64,
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    let ns = TestNamespace::create("bench-sse").await;
    crate::crd::install(&ns.client).await?;
    let names = crate::readiness::ready_services(&ns, args.services).await?;
    let (mut child, port) = crate::readiness::start(&args.operator, &ns.name)?;
    let base = format!("http://127.0.0.1:{port}");
    let last = format!("{base}/v1/status/{}/{}", ns.name, names[names.len() - 1]);
    testing::wait_until(Duration::from_secs(60), "readiness serving every service", || async {
        (testing::get(&last).await?.0 == 200).then_some(())
    })
    .await;
    let pid = child.id().unwrap_or(0);
    let rss_idle = crate::stats::rss_mib(pid);
    let (cpu_start, bench_cpu_start) =
        (crate::stats::cpu_seconds(pid), crate::stats::cpu_seconds(std::process::id()));

    let counters = Arc::new(Counters::default());
    let subscribers: Vec<Seen> = (0..args.subscribers).map(|_| Seen::default()).collect();
    for seen in &subscribers {
        tokio::spawn(subscribe(format!("{base}/v1/watch"), seen.clone(), counters.clone()));
    }
    let everyone = |want: usize| subscribers.iter().all(|s| s.lock().is_ok_and(|m| m.len() >= want));
    let connected = Instant::now();
    while !everyone(args.services) && connected.elapsed() < Duration::from_secs(120) {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    anyhow::ensure!(everyone(args.services), "not every subscriber got its snapshot in 120 s");
    let rss_subscribed = crate::stats::rss_mib(pid);
    let (flapping_over, over) = tokio::sync::watch::channel(false);
    let slow = tokio::spawn(never_reads(port, over));

    let stop_gets = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let getters: Vec<_> = (0..4)
        .map(|g| {
            tokio::spawn(get_steadily(
                base.clone(),
                ns.name.clone(),
                names.clone(),
                g,
                counters.clone(),
                stop_gets.clone(),
            ))
        })
        .collect();

    let api = ns.api::<TelephonyService>();
    let started = Instant::now();
    let mut samples = vec![(0u64, crate::stats::rss_mib(pid))];
    let mut round = 0u32;
    loop {
        let done = if args.seconds > 0 {
            started.elapsed() >= Duration::from_secs(args.seconds)
        } else {
            round >= args.rounds
        };
        if done {
            break;
        }
        flip(&api, &names, round).await?;
        round += 1;
        if args.seconds > 0 && started.elapsed().as_secs() >= samples.len() as u64 * args.sample_secs {
            samples.push((started.elapsed().as_secs(), crate::stats::rss_mib(pid)));
        }
        tokio::time::sleep(Duration::from_millis(args.round_ms)).await;
    }
    let flapped = started.elapsed();
    // The final state: every service Ready, with a message no round used.
    settle(&api, &names).await?;
    let settled = Instant::now();
    let final_state = |s: &Seen| {
        s.lock()
            .map_or(0, |m| names.iter().filter(|n| m.get(*n).map(String::as_str) == Some("final")).count())
    };
    while subscribers.iter().any(|s| final_state(s) < names.len())
        && settled.elapsed() < Duration::from_secs(60)
    {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let converged = settled.elapsed();
    stop_gets.store(true, Ordering::SeqCst);
    for g in getters {
        let _ = g.await;
    }
    let lost: usize = subscribers.iter().map(|s| names.len() - final_state(s)).sum();
    let rss_end = crate::stats::rss_mib(pid);
    let cpu = crate::stats::cpu_seconds(pid) - cpu_start;
    let bench_cpu = crate::stats::cpu_seconds(std::process::id()) - bench_cpu_start;
    let _ = flapping_over.send(true);
    let slow_outcome = tokio::time::timeout(Duration::from_secs(20), slow).await;
    let _ = child.kill().await;
    ns.delete().await;

    let flips = u64::from(round) * names.len() as u64;
    println!(
        "\n## Readiness under load: {} SSE subscribers, {} services flapping\n",
        args.subscribers, args.services
    );
    println!("| measure | value |");
    println!("| --- | --- |");
    println!(
        "| flapping | {round} rounds ({flips} status changes) in {:.0} s, plus the settling round |",
        flapped.as_secs_f64()
    );
    println!("| events received by the subscribers | {} |", counters.events.load(Ordering::SeqCst));
    println!("| subscribers told `resync` (and reconnected) | {} |", counters.resyncs.load(Ordering::SeqCst));
    println!(
        "| steady GETs during the run | {} ({} not 200/503) |",
        counters.gets.load(Ordering::SeqCst),
        counters.bad_gets.load(Ordering::SeqCst)
    );
    println!("| **lost updates** (subscriber × service not at its final state after 60 s) | **{lost}** |");
    println!(
        "| every subscriber at the final state | {:.2} s after the settling round |",
        converged.as_secs_f64()
    );
    println!("| CPU: the readiness service / the subscribers and writers (this process) | {cpu:.1} s / {bench_cpu:.1} s |");
    println!("| baseline: readiness RSS, idle | {rss_idle:.1} MiB |");
    println!(
        "| RSS with the subscribers connected | {rss_subscribed:.1} MiB ({:.1} KiB per subscriber) |",
        (rss_subscribed - rss_idle) * 1024.0 / args.subscribers.max(1) as f64
    );
    println!("| RSS at the end | {rss_end:.1} MiB |");
    let slow = match slow_outcome {
        Ok(Ok(Ok(s))) => s,
        Ok(Ok(Err(e))) => format!("error: {e}"),
        _ => "no answer in 5 s".into(),
    };
    println!("| a subscriber that never read | {slow} |");
    if samples.len() > 2 {
        let warm = samples[1].1;
        let growth = (rss_end - warm) / warm * 100.0;
        let series: Vec<String> = samples.iter().map(|(t, r)| format!("{t}s {r:.1}")).collect();
        println!(
            "| soak: RSS growth from {} s to the end | {growth:+.1} % (MiB: {}) |",
            samples[1].0,
            series.join(", ")
        );
    }
    anyhow::ensure!(lost == 0, "{lost} lost updates");
    Ok(())
}

/// Every service to the next state of round `round`: even rounds Failed, odd Ready.
async fn flip(api: &kube::Api<TelephonyService>, names: &[String], round: u32) -> anyhow::Result<()> {
    let status = if round.is_multiple_of(2) {
        serde_json::json!({ "status": { "phase": "Failed", "readyReplicas": 0, "message": format!("round {round}") } })
    } else {
        crate::readiness::ready_status(&format!("round {round}"))
    };
    patch_all(api, names, &status).await
}

async fn settle(api: &kube::Api<TelephonyService>, names: &[String]) -> anyhow::Result<()> {
    patch_all(api, names, &crate::readiness::ready_status("final")).await
}

async fn patch_all(
    api: &kube::Api<TelephonyService>,
    names: &[String],
    status: &serde_json::Value,
) -> anyhow::Result<()> {
    let (params, patch) = (PatchParams::default(), Patch::Merge(status));
    for chunk in names.chunks(25) {
        futures::future::try_join_all(chunk.iter().map(|n| api.patch_status(n, &params, &patch))).await?;
    }
    Ok(())
}

/// The two fields of an answer a subscriber follows (parsed without the rest: the subscribers
/// share the 2 cores with the service they measure).
#[derive(serde::Deserialize)]
struct Answer<'a> {
    #[serde(borrow)]
    name: Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow)]
    message: Option<std::borrow::Cow<'a, str>>,
}

/// One app replica's subscription: records each service's last message; on `resync` or a
/// dropped stream, reconnects (bounded: 100 times).
async fn subscribe(url: String, seen: Seen, counters: Arc<Counters>) {
    for _ in 0..100 {
        let Ok(mut res) = testing::http().get(&url).timeout(Duration::from_secs(3600)).send().await else {
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        };
        let mut buf = String::new();
        while let Ok(Some(chunk)) = res.chunk().await {
            buf.push_str(&String::from_utf8_lossy(&chunk));
            while let Some(end) = buf.find("\n\n") {
                let frame: String = buf.drain(..end + 2).collect();
                if frame.starts_with("event: resync") {
                    counters.resyncs.fetch_add(1, Ordering::Relaxed);
                }
                let data = frame.lines().find_map(|l| l.strip_prefix("data:")).map(str::trim);
                let Some(v) = data.and_then(|d| serde_json::from_str::<Answer>(d).ok()) else { continue };
                let (Some(name), Some(message)) = (v.name, v.message) else { continue };
                counters.events.fetch_add(1, Ordering::Relaxed);
                if let Ok(mut m) = seen.lock() {
                    m.insert(name.to_string(), message.to_string());
                }
            }
        }
    }
}

/// Steady GETs of the services in turn, about 100 a second per getter, until told to stop.
async fn get_steadily(
    base: String,
    ns: String,
    names: Vec<String>,
    offset: usize,
    counters: Arc<Counters>,
    stop: Arc<std::sync::atomic::AtomicBool>,
) {
    let (http, mut i) = (testing::http(), offset);
    while !stop.load(Ordering::SeqCst) {
        let url = format!("{base}/v1/status/{ns}/{}", names[i % names.len()]);
        let code = match http.get(&url).send().await {
            Ok(res) => res.status().as_u16(),
            Err(_) => 0,
        };
        counters.gets.fetch_add(1, Ordering::Relaxed);
        if code != 200 && code != 503 {
            counters.bad_gets.fetch_add(1, Ordering::Relaxed);
        }
        i += 1;
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Subscribes with a 4 KiB receive buffer and reads nothing until `over`, then reads what is
/// left: how the service let it go. A stalled write closes the connection after 30 s
/// (`dialtone-serving`'s write timeout); a subscriber that reads again late is told `resync` and
/// its stream ends.
async fn never_reads(port: u16, mut over: tokio::sync::watch::Receiver<bool>) -> anyhow::Result<String> {
    let socket = tokio::net::TcpSocket::new_v4()?;
    socket.set_recv_buffer_size(4096)?;
    let mut s = socket.connect(([127, 0, 0, 1], port).into()).await?;
    s.write_all(b"GET /v1/watch HTTP/1.1\r\nHost: bench\r\n\r\n").await?;
    let _ = over.wait_for(|o| *o).await;
    let (mut all, mut buf) = (Vec::new(), vec![0u8; 64 * 1024]);
    let closed = loop {
        match tokio::time::timeout(Duration::from_secs(2), s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break true,
            Ok(Ok(n)) => all.extend_from_slice(&buf[..n]),
            Err(_) => break false,
        }
        if all.ends_with(b"\r\n0\r\n\r\n") {
            break false;
        }
    };
    let text = String::from_utf8_lossy(&all);
    let kib = all.len() / 1024;
    Ok(match (closed, text.contains("event: resync"), all.ends_with(b"\r\n0\r\n\r\n")) {
        (true, _, _) => format!("closed by the service (its writes stalled); {kib} KiB were in the buffers"),
        (false, true, true) => format!("told `resync`, then its stream ended; {kib} KiB were in the buffers"),
        _ => format!("still open: the buffers held every change ({kib} KiB)"),
    })
}
