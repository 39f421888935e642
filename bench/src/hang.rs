//! A hung worker on the real node: its process is stopped from the host (SIGSTOP), and timed to
//! the readiness answer turning 503 and to the app's SSE subscriber being told, through the
//! heartbeat (3 missed beats). It is resumed (SIGCONT) before the kubelet's probes fail, so the
//! same pod serves every sample.

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;
use testing::{node, TestNamespace};

use crate::real_detection::{ready_worker, until};
use crate::sse;
use crate::stats::ms;

#[derive(Default)]
pub struct Hangs {
    pub unavailable: Vec<Duration>,
    pub told: Vec<Duration>,
}

/// `n` hangs of the worker of `bench`, timed at the readiness service at `readiness`.
pub async fn samples(app: &TestNamespace, readiness: &str, n: usize) -> anyhow::Result<Hangs> {
    let pods = app.api::<Pod>();
    let url = format!("{readiness}/v1/status/{}/bench", app.name);
    let mut events = sse::follow(readiness, &app.name, "bench");
    let mut out = Hangs::default();
    for i in 0..n {
        let pod = ready_worker(&pods, &[&url]).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        sse::drain(&mut events);
        let (pid, _) = node::container_process(&pods, &pod).await;
        let t0 = Instant::now();
        node::signal_process(pid, node::SIGSTOP);
        let seen = tokio::time::timeout(Duration::from_secs(10), async {
            futures::try_join!(until(&url, 503), sse::unhealthy(&mut events))
        })
        .await;
        node::signal_process(pid, node::SIGCONT);
        let (t_503, t_told) = seen??;
        out.unavailable.push(t_503 - t0);
        out.told.push(t_told.saturating_duration_since(t0));
        eprintln!(
            "hang {:>3}: 503 {} told {}",
            i + 1,
            ms(t_503 - t0),
            ms(t_told.saturating_duration_since(t0))
        );
    }
    Ok(out)
}
