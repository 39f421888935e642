//! A subscriber of the readiness service's SSE stream (`GET /v1/watch`), as the main app holds
//! one: each status event of one service, with the moment it arrived.

use std::time::{Duration, Instant};

use tokio::sync::mpsc;

/// `(healthy, when)` for every status event of `namespace/name`, until the receiver is dropped.
pub fn follow(readiness: &str, namespace: &str, name: &str) -> mpsc::UnboundedReceiver<(bool, Instant)> {
    let (tx, rx) = mpsc::unbounded_channel();
    let (url, namespace, name) = (format!("{readiness}/v1/watch"), namespace.to_string(), name.to_string());
    tokio::spawn(async move {
        let Ok(mut res) = testing::http().get(url).timeout(Duration::from_secs(3600)).send().await else {
            return;
        };
        let mut buf = String::new();
        while let Ok(Some(chunk)) = res.chunk().await {
            let at = Instant::now();
            buf.push_str(&String::from_utf8_lossy(&chunk));
            while let Some(end) = buf.find("\n\n") {
                let frame: String = buf.drain(..end + 2).collect();
                let data = frame.lines().find_map(|l| l.strip_prefix("data:")).map(str::trim);
                let Some(v) = data.and_then(|d| serde_json::from_str::<serde_json::Value>(d).ok()) else {
                    continue;
                };
                let ours = v["namespace"] == namespace.as_str() && v["name"] == name.as_str();
                if ours && tx.send((v["healthy"] == true, at)).is_err() {
                    return;
                }
            }
        }
    });
    rx
}

/// The first unhealthy event from now on.
pub async fn unhealthy(events: &mut mpsc::UnboundedReceiver<(bool, Instant)>) -> anyhow::Result<Instant> {
    while let Some((healthy, at)) = events.recv().await {
        if !healthy {
            return Ok(at);
        }
    }
    anyhow::bail!("the SSE stream ended")
}

/// Forgets what arrived so far.
pub fn drain(events: &mut mpsc::UnboundedReceiver<(bool, Instant)>) {
    while events.try_recv().is_ok() {}
}
