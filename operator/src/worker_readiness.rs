//! Why a worker is not Ready, in its own words. The kubelet records only "Readiness probe failed:
//! HTTP probe failed with statuscode: 503" (1.20 drops the body), so the operator asks a running
//! but not-Ready worker's `/readyz` itself, and the answer (e.g. "Telnyx check failed: …") goes into
//! the status message and so the readiness answer. A draining worker (its pod being deleted) is
//! asked too: its 503 says how many live calls it still holds (`activeCalls`), for the status'
//! `drainingCalls`, and once its drain timeout has ended calls, how many (for the `DrainTimeout`
//! Event; it waits for this ask before it exits). A question that fails is just no answer.

use std::time::Duration;

use http_body_util::{BodyExt, Empty, Limited};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;

use crate::liveness::PodObservation;

/// A worker answers /readyz from memory in well under a millisecond; a hung one must not hold up
/// the reconcile.
const TIMEOUT: Duration = Duration::from_millis(500);
/// Marks the question as the operator's: a draining worker that ended calls waits for it (the
/// kubelet's probes don't count). The worker's `readiness::OPERATOR_ASKS`.
const ASKER: &str = "x-dialtone-asker";
/// Longest reason kept (status and Events stay small).
const MAX_REASON: usize = 200;

/// What a not-Ready worker says of itself.
#[derive(Debug, Default, PartialEq)]
pub struct Answer {
    pub reason: Option<String>,
    /// Live calls, as a draining worker counts them.
    pub active_calls: Option<u32>,
}

/// Fills `not_ready_reason` of the running pods that are not Ready or draining (for a draining one,
/// what its drain says), and `active_calls` of the draining ones (asked concurrently).
pub async fn explain(pods: &mut [PodObservation], port: i32) {
    let asks = pods.iter().map(|p| async move {
        let ip = p.ip.as_deref().filter(|_| p.running && (p.deleting || !p.ready))?;
        ask(ip, u16::try_from(port).ok()?).await
    });
    let answers = futures::future::join_all(asks).await;
    for (pod, answer) in pods.iter_mut().zip(answers) {
        let answer = answer.unwrap_or_default();
        if pod.deleting {
            pod.active_calls = answer.active_calls;
        }
        pod.not_ready_reason = answer.reason;
    }
}

async fn ask(ip: &str, port: u16) -> Option<Answer> {
    let question = async {
        let stream = tokio::net::TcpStream::connect((ip, port)).await.ok()?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.ok()?;
        let connection = tokio::spawn(conn);
        let request = hyper::Request::get("/readyz")
            .header("host", ip)
            .header(ASKER, "telephony-operator")
            .body(Empty::<Bytes>::new())
            .ok()?;
        let response = sender.send_request(request).await.ok()?;
        let not_ready = response.status() == hyper::StatusCode::SERVICE_UNAVAILABLE;
        let body = Limited::new(response.into_body(), 4096).collect().await.ok()?.to_bytes();
        connection.abort();
        not_ready.then(|| read(&body))
    };
    tokio::time::timeout(TIMEOUT, question).await.ok().flatten()
}

/// A worker's 503 body: `{"error": {"message": …}, "activeCalls"?: n}`, the reason cut to
/// [`MAX_REASON`].
pub fn read(body: &[u8]) -> Answer {
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(body) else { return Answer::default() };
    let message = v["error"]["message"].as_str().map(str::trim).unwrap_or_default();
    Answer {
        reason: (!message.is_empty()).then(|| message.chars().take(MAX_REASON).collect()),
        active_calls: v["activeCalls"].as_u64().and_then(|n| u32::try_from(n).ok()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reason_is_the_workers_error_message() {
        let reason = |body: &[u8]| read(body).reason;
        let body = br#"{"error":{"code":"not_ready","message":"Telnyx check failed: Telnyx unreachable"}}"#;
        assert_eq!(reason(body).as_deref(), Some("Telnyx check failed: Telnyx unreachable"));
        let long = format!(r#"{{"error":{{"message":"{}"}}}}"#, "x".repeat(500));
        assert_eq!(reason(long.as_bytes()).map(|r| r.len()), Some(200));
        for bad in [&b"ok"[..], b"{}", br#"{"error":{"message":"  "}}"#, b"\xff"] {
            assert_eq!(read(bad), Answer::default());
        }
    }

    #[test]
    fn a_draining_worker_counts_its_live_calls() {
        let body = br#"{"error":{"code":"draining","message":"draining: 2 live calls"},"activeCalls":2}"#;
        assert_eq!(read(body).active_calls, Some(2));
        for odd in [&br#"{"activeCalls":-1}"#[..], br#"{"activeCalls":"2"}"#, br#"{"activeCalls":1e20}"#] {
            assert_eq!(read(odd).active_calls, None);
        }
    }

    #[tokio::test]
    async fn a_worker_that_is_not_there_is_no_answer_in_time() {
        let started = std::time::Instant::now();
        // Nothing listens on port 1 of loopback: refused at once.
        assert_eq!(ask("127.0.0.1", 1).await, None);
        assert!(started.elapsed() < TIMEOUT);
    }
}
