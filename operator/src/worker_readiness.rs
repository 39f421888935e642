//! Why a worker is not Ready, in its own words. The kubelet records only "Readiness probe failed:
//! HTTP probe failed with statuscode: 503" (1.20 drops the body), so the operator asks a running
//! but not-Ready worker's `/readyz` itself, and the answer (e.g. "Telnyx check failed: …") goes into
//! the status message and so the readiness answer. A question that fails is just no answer.

use std::time::Duration;

use http_body_util::{BodyExt, Empty, Limited};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;

use crate::liveness::PodObservation;

/// A worker answers /readyz from memory in well under a millisecond; a hung one must not hold up
/// the reconcile.
const TIMEOUT: Duration = Duration::from_millis(500);
/// Longest reason kept (status and Events stay small).
const MAX_REASON: usize = 200;

/// Fills `not_ready_reason` of the running, not-Ready pods (asked concurrently).
pub async fn explain(pods: &mut [PodObservation], port: i32) {
    let asks = pods.iter().map(|p| async move {
        let ip = p.ip.as_deref().filter(|_| p.running && !p.ready && !p.deleting)?;
        ask(ip, u16::try_from(port).ok()?).await
    });
    let reasons = futures::future::join_all(asks).await;
    for (pod, reason) in pods.iter_mut().zip(reasons) {
        pod.not_ready_reason = reason;
    }
}

async fn ask(ip: &str, port: u16) -> Option<String> {
    let question = async {
        let stream = tokio::net::TcpStream::connect((ip, port)).await.ok()?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.ok()?;
        let connection = tokio::spawn(conn);
        let request = hyper::Request::get("/readyz").header("host", ip).body(Empty::<Bytes>::new()).ok()?;
        let response = sender.send_request(request).await.ok()?;
        let not_ready = response.status() == hyper::StatusCode::SERVICE_UNAVAILABLE;
        let body = Limited::new(response.into_body(), 4096).collect().await.ok()?.to_bytes();
        connection.abort();
        if not_ready {
            reason(&body)
        } else {
            None
        }
    };
    tokio::time::timeout(TIMEOUT, question).await.ok().flatten()
}

/// The reason in a worker's 503 body: `{"error": {"message": …}}`, cut to [`MAX_REASON`].
pub fn reason(body: &[u8]) -> Option<String> {
    let v: serde_json::Value = serde_json::from_slice(body).ok()?;
    let message = v["error"]["message"].as_str()?.trim();
    (!message.is_empty()).then(|| message.chars().take(MAX_REASON).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reason_is_the_workers_error_message() {
        let body = br#"{"error":{"code":"not_ready","message":"Telnyx check failed: Telnyx unreachable"}}"#;
        assert_eq!(reason(body).as_deref(), Some("Telnyx check failed: Telnyx unreachable"));
        let long = format!(r#"{{"error":{{"message":"{}"}}}}"#, "x".repeat(500));
        assert_eq!(reason(long.as_bytes()).map(|r| r.len()), Some(200));
        for bad in [&b"ok"[..], b"{}", br#"{"error":{"message":"  "}}"#, b"\xff"] {
            assert_eq!(reason(bad), None);
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
