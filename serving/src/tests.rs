//! Abuse at the connection level, against a real listener on loopback.

use std::time::{Duration, Instant};

use axum::routing::get;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::*;

async fn start(limits: Limits) -> (std::net::SocketAddr, tokio::sync::oneshot::Sender<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = Router::new().route("/", get(|| async { "ok\n" })).route("/endless", get(endless)).route(
        "/slow",
        get(|| async {
            tokio::time::sleep(Duration::from_millis(300)).await;
            "slow\n"
        }),
    );
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(serve(listener, app, limits, async move {
        let _ = stopped.await;
    }));
    (addr, stop)
}

/// A response that never ends, 16 KiB at a time (an event stream that always has news).
async fn endless() -> axum::body::Body {
    let chunk = axum::body::Bytes::from(vec![b'x'; 16 * 1024]);
    axum::body::Body::from_stream(futures::stream::repeat_with(move || {
        Ok::<_, std::io::Error>(chunk.clone())
    }))
}

fn quick() -> Limits {
    Limits { header_read_timeout: Duration::from_millis(300), ..Limits::default() }
}

/// Everything the server sends until it closes, or until `within`.
async fn read_all(s: &mut TcpStream, within: Duration) -> Option<String> {
    let mut out = vec![];
    tokio::time::timeout(within, s.read_to_end(&mut out)).await.ok()?.ok()?;
    Some(String::from_utf8_lossy(&out).into_owned())
}

#[tokio::test]
async fn a_head_sent_a_byte_at_a_time_is_cut_off_at_the_header_timeout() {
    let (addr, _stop) = start(quick()).await;
    let mut s = TcpStream::connect(addr).await.unwrap();
    let started = Instant::now();
    let mut closed = false;
    for b in b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: ".iter().chain([b'a'; 64].iter()) {
        if s.write_all(&[*b]).await.is_err() {
            closed = true;
            break;
        }
        let mut buf = [0u8; 512];
        if let Ok(Ok(0)) | Ok(Err(_)) =
            tokio::time::timeout(Duration::from_millis(50), s.read(&mut buf)).await
        {
            closed = true;
            break;
        }
    }
    assert!(closed, "still open after {:?}", started.elapsed());
    assert!(started.elapsed() < Duration::from_secs(2), "{:?}", started.elapsed());
}

#[tokio::test]
async fn an_idle_connection_is_closed_and_one_that_sends_nothing_too() {
    let (addr, _stop) = start(quick()).await;
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    let mut buf = [0u8; 256];
    let n = s.read(&mut buf).await.unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    assert_eq!(read_all(&mut s, Duration::from_secs(2)).await.as_deref(), Some(""), "closed when idle");
    let mut silent = TcpStream::connect(addr).await.unwrap();
    assert_eq!(read_all(&mut silent, Duration::from_secs(2)).await.as_deref(), Some(""));
}

#[tokio::test]
async fn oversized_heads_and_too_many_headers_get_431() {
    let (addr, _stop) = start(Limits::default()).await;
    let big = format!("GET / HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n", "a".repeat(20 * 1024));
    let many: String = (0..MAX_HEADERS + 1).map(|i| format!("X-{i}: {i}\r\n")).collect();
    let many = format!("GET / HTTP/1.1\r\nHost: x\r\n{many}\r\n");
    for request in [big, many] {
        let mut s = TcpStream::connect(addr).await.unwrap();
        let _ = s.write_all(request.as_bytes()).await;
        let answer = read_all(&mut s, Duration::from_secs(2)).await.unwrap_or_default();
        assert!(answer.starts_with("HTTP/1.1 431"), "{answer:.80}");
    }
    // A large but allowed head is served.
    let mut s = TcpStream::connect(addr).await.unwrap();
    let ok =
        format!("GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\nX-Big: {}\r\n\r\n", "a".repeat(8 * 1024));
    s.write_all(ok.as_bytes()).await.unwrap();
    assert!(read_all(&mut s, Duration::from_secs(2)).await.unwrap().starts_with("HTTP/1.1 200"));
}

#[tokio::test]
async fn a_half_closed_client_still_gets_its_answer() {
    let (addr, _stop) = start(Limits::default()).await;
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    s.shutdown().await.unwrap();
    let answer = read_all(&mut s, Duration::from_secs(2)).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 200") && answer.ends_with("slow\n"), "{answer}");
}

#[tokio::test]
async fn connections_beyond_the_bound_wait_for_one_to_close() {
    let (addr, _stop) = start(Limits { max_connections: 2, ..Limits::default() }).await;
    let mut held = vec![];
    for _ in 0..2 {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
        let mut buf = [0u8; 256];
        assert!(s.read(&mut buf).await.unwrap() > 0);
        held.push(s);
    }
    let mut third = TcpStream::connect(addr).await.unwrap(); // the kernel's queue takes it
    third.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await.unwrap();
    assert_eq!(read_all(&mut third, Duration::from_millis(300)).await, None, "waits");
    drop(held.pop());
    let answer = read_all(&mut third, Duration::from_secs(2)).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}

#[tokio::test]
async fn shutdown_lets_a_request_in_flight_finish_and_takes_no_new_ones() {
    let (addr, stop) = start(Limits::default()).await;
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    stop.send(()).unwrap();
    let answer = read_all(&mut s, Duration::from_secs(2)).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 200") && answer.ends_with("slow\n"), "{answer}");
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(TcpStream::connect(addr).await.is_err(), "the listener is closed");
}

#[tokio::test]
async fn a_client_that_stops_reading_is_dropped_at_the_write_timeout() {
    let (addr, _stop) =
        start(Limits { write_timeout: Duration::from_millis(300), ..Limits::default() }).await;
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut s = socket.connect(addr).await.unwrap();
    s.write_all(b"GET /endless HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await; // reads nothing: the buffers fill
    let drained = tokio::time::timeout(Duration::from_secs(5), async {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(drained.is_ok(), "the server still writes to a client that stopped reading");
}
