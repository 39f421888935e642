//! One connection to a worker's `GET /v1/heartbeat`, held until it is lost, and why it was lost.
//!
//! Hand-written on a bare socket, not hyper: the readiness service holds one of these per worker
//! pod (2,000 at the target scale), and hyper's client connection starts with 8 KiB buffers each
//! way. This asks HTTP/1.0, so the body is the raw SSE bytes until close (no chunked framing), the
//! head is parsed by `httparse` (hyper's own parser), and a connection costs one 512-byte buffer.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;

/// The head, the hello and the first signal come at once from a live worker: a new stream that
/// says nothing for this long is lost (connecting included: a worker on the pod network accepts
/// in well under a millisecond).
pub const FIRST_SIGNAL: Duration = Duration::from_secs(1);
/// Beats missing for this many periods mark the worker down (hung, or not ready).
pub const MISSED_BEATS: u32 = 3;
/// Longest SSE frame accepted (a hello is ~40 bytes, a beat 12).
const MAX_FRAME: usize = 256;
pub const PATH: &str = "/v1/heartbeat";

/// Why a stream ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lost {
    /// Nothing listens on the worker's port: its process is gone.
    Refused,
    /// No answer to connect: a network partition, or the pod is gone.
    Unreachable,
    /// The stream closed or was reset: the process died or is shutting down.
    Closed,
    /// No beat in time: hung (or not ready). Carries the wait, in ms.
    Silent(u64),
    /// Not a heartbeat stream: an HTTP status other than 200 (0: not HTTP at all).
    Rejected(u16),
}

impl Lost {
    /// The metric label.
    pub fn cause(self) -> &'static str {
        match self {
            Lost::Refused => "refused",
            Lost::Unreachable => "unreachable",
            Lost::Closed => "closed",
            Lost::Silent(_) => "silent",
            Lost::Rejected(_) => "rejected",
        }
    }

    /// For the readiness answer's message.
    pub fn describe(self) -> String {
        match self {
            Lost::Refused => "nothing listens on its port".into(),
            Lost::Unreachable => "the readiness service can't reach it".into(),
            Lost::Closed => "its heartbeat stream closed".into(),
            Lost::Silent(ms) => format!("no heartbeat for {ms} ms"),
            Lost::Rejected(0) => "its heartbeat endpoint does not speak HTTP".into(),
            Lost::Rejected(code) => format!("its heartbeat endpoint answered HTTP {code}"),
        }
    }
}

/// What a worker says on its stream, every period.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Signal {
    /// Alive and ready.
    Beat,
    /// Alive, not ready, and why (its `/readyz` reason).
    Unready(String),
    /// Shutting down: takes no new calls, and this many live ones are finishing.
    Draining(u32),
}

/// Connects to `addr`, calls `on` with what each read carried (its last signal), and returns when
/// the stream is lost: the first signal must come within `first_within`, then a signal every
/// period.
pub async fn hold(addr: SocketAddr, first_within: Duration, mut on: impl FnMut(Signal)) -> Lost {
    let deadline = tokio::time::Instant::now() + first_within;
    let first_wait =
        || deadline.saturating_duration_since(tokio::time::Instant::now()).max(Duration::from_millis(1));
    let mut tcp = match timeout(first_within, TcpStream::connect(addr)).await {
        Ok(Ok(tcp)) => tcp,
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => return Lost::Refused,
        _ => return Lost::Unreachable,
    };
    let _ = tcp.set_nodelay(true);
    let request = format!("GET {PATH} HTTP/1.0\r\nHost: {addr}\r\nAccept: text/event-stream\r\n\r\n");
    if tcp.write_all(request.as_bytes()).await.is_err() {
        return Lost::Closed;
    }
    let mut buf = [0u8; 512];
    let mut filled = 0;
    let body_at = loop {
        match read(&mut tcp, &mut buf[filled..], first_wait()).await {
            Ok(n) => filled += n,
            Err(Lost::Silent(_)) => return silent(first_within),
            Err(lost) => return lost,
        }
        match head(&buf[..filled]) {
            Head::Partial if filled < buf.len() => continue,
            Head::Partial => return Lost::Rejected(0),
            Head::Status(200, at) => break at,
            Head::Status(code, _) => return Lost::Rejected(code),
        }
    };
    let mut frames = Frames::default();
    let (mut period, mut heard) = (None, false);
    let mut chunk = body_at..filled;
    loop {
        match frames.push(&buf[chunk]) {
            Some(pushed) => {
                period = pushed.period.or(period);
                if let Some(signal) = pushed.last {
                    heard = true;
                    on(signal);
                }
            }
            None => return Lost::Rejected(200),
        }
        let wait = match period {
            Some(p) if heard => p * MISSED_BEATS,
            _ => first_wait(),
        };
        filled = match read(&mut tcp, &mut buf, wait).await {
            Ok(n) => n,
            Err(Lost::Silent(_)) if !heard => return silent(first_within),
            Err(lost) => return lost,
        };
        chunk = 0..filled;
    }
}

fn silent(wait: Duration) -> Lost {
    Lost::Silent(u64::try_from(wait.as_millis()).unwrap_or(u64::MAX))
}

async fn read(tcp: &mut TcpStream, buf: &mut [u8], wait: Duration) -> Result<usize, Lost> {
    match timeout(wait, tcp.read(buf)).await {
        Err(_) => Err(silent(wait)),
        Ok(Ok(0)) | Ok(Err(_)) => Err(Lost::Closed),
        Ok(Ok(n)) => Ok(n),
    }
}

enum Head {
    Partial,
    /// The status code, and where the body starts.
    Status(u16, usize),
}

fn head(bytes: &[u8]) -> Head {
    let mut headers = [httparse::EMPTY_HEADER; 16];
    let mut response = httparse::Response::new(&mut headers);
    match response.parse(bytes) {
        Ok(httparse::Status::Complete(at)) => Head::Status(response.code.unwrap_or(0), at),
        Ok(httparse::Status::Partial) => Head::Partial,
        Err(_) => Head::Status(0, 0),
    }
}

/// What one read of the stream carried.
#[derive(Debug, Default, PartialEq)]
pub struct Pushed {
    /// The last signal (only the latest state matters).
    pub last: Option<Signal>,
    /// From a hello: the worker's beat period.
    pub period: Option<Duration>,
}

/// Splits the SSE byte stream into frames (`…\n\n`), across reads.
#[derive(Default)]
pub struct Frames {
    frame: Vec<u8>,
}

impl Frames {
    /// None when a frame grows past [`MAX_FRAME`]: not a heartbeat stream.
    pub fn push(&mut self, bytes: &[u8]) -> Option<Pushed> {
        let mut pushed = Pushed::default();
        for &b in bytes.iter().filter(|&&b| b != b'\r') {
            if b == b'\n' && self.frame.last() == Some(&b'\n') {
                match parse(&self.frame) {
                    Frame::Signal(signal) => pushed.last = Some(signal),
                    Frame::Hello(p) => pushed.period = Some(p),
                    Frame::Other => {}
                }
                self.frame.clear();
            } else if self.frame.len() == MAX_FRAME {
                return None;
            } else {
                self.frame.push(b);
            }
        }
        Some(pushed)
    }
}

enum Frame {
    Signal(Signal),
    Hello(Duration),
    Other,
}

/// Longest reason kept from an `unready` frame (status messages stay small).
const MAX_REASON: usize = 200;

fn parse(frame: &[u8]) -> Frame {
    let text = String::from_utf8_lossy(frame);
    let field = |name: &str| {
        text.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(':').map(|v| v.trim_start().to_string()))
    };
    match (field("event").as_deref(), field("data")) {
        (None, Some(d)) if d == "beat" => Frame::Signal(Signal::Beat),
        (Some("unready"), Some(d)) => Frame::Signal(Signal::Unready(d.chars().take(MAX_REASON).collect())),
        (Some("draining"), Some(d)) => {
            let calls =
                serde_json::from_str::<serde_json::Value>(&d).ok().and_then(|v| v["activeCalls"].as_u64());
            Frame::Signal(Signal::Draining(calls.map_or(0, |n| u32::try_from(n).unwrap_or(u32::MAX))))
        }
        (Some("hello"), Some(d)) => serde_json::from_str::<serde_json::Value>(&d)
            .ok()
            .and_then(|v| v["periodMs"].as_u64())
            .map(|ms| Frame::Hello(Duration::from_millis(ms.clamp(20, 60_000))))
            .unwrap_or(Frame::Other),
        _ => Frame::Other,
    }
}

#[cfg(test)]
mod properties;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_are_found_across_reads_and_line_endings() {
        let mut f = Frames::default();
        let hello = f.push(b"event: hello\ndata: {\"periodMs\":100}\n\nda").unwrap();
        assert_eq!(hello, Pushed { last: None, period: Some(Duration::from_millis(100)) });
        assert_eq!(f.push(b"ta: beat\n").unwrap().last, None, "half a frame is no beat");
        assert_eq!(f.push(b"\ndata: beat\n\ndata: beat\r\n\r\n").unwrap().last, Some(Signal::Beat));
        assert_eq!(f.push(b": comment\n\ndata: other\n\n").unwrap(), Pushed::default());
        let draining = f.push(b"event: draining\ndata: {\"activeCalls\":3}\n\n").unwrap();
        assert_eq!(draining.last, Some(Signal::Draining(3)));
        let unready = f.push(b"data: beat\n\nevent: unready\ndata: Telnyx check failed\n\n").unwrap();
        assert_eq!(
            unready.last,
            Some(Signal::Unready("Telnyx check failed".into())),
            "the latest state wins"
        );
        let clamped = f.push(b"event: hello\ndata: {\"periodMs\":1}\n\n").unwrap();
        assert_eq!(clamped.period, Some(Duration::from_millis(20)));
    }

    #[test]
    fn an_endless_frame_is_not_a_heartbeat_stream() {
        let mut f = Frames::default();
        assert!(f.push(&[b'x'; MAX_FRAME + 1]).is_none());
    }

    #[test]
    fn heads() {
        let ok = b"HTTP/1.0 200 OK\r\ncontent-type: text/event-stream\r\n\r\nevent";
        assert!(matches!(head(ok), Head::Status(200, 52)));
        assert!(matches!(head(b"HTTP/1.1 404 Not Found\r\n\r\n"), Head::Status(404, _)));
        assert!(matches!(head(b"HTTP/1.1 200 OK\r\ncontent-"), Head::Partial));
        assert!(matches!(head(b"SSH-2.0-OpenSSH\r\n"), Head::Status(0, _)));
    }

    /// A loopback server playing a worker: `script` is written, then the socket is held open.
    async fn worker(script: &'static [u8], close: bool) -> SocketAddr {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut req = [0u8; 512];
            let _ = s.read(&mut req).await;
            s.write_all(script).await.unwrap();
            if !close {
                tokio::time::sleep(Duration::from_secs(30)).await;
            }
        });
        addr
    }

    const BEATING: &[u8] =
        b"HTTP/1.0 200 OK\r\n\r\nevent: hello\ndata: {\"periodMs\":50}\n\ndata: beat\n\ndata: beat\n\n";

    #[tokio::test]
    async fn a_closed_stream_is_lost_at_once_and_a_silent_one_after_three_periods() {
        let mut signals = vec![];
        let started = std::time::Instant::now();
        assert_eq!(hold(worker(BEATING, true).await, FIRST_SIGNAL, |s| signals.push(s)).await, Lost::Closed);
        assert_eq!(signals, [Signal::Beat]);
        assert!(started.elapsed() < Duration::from_millis(100), "{:?}", started.elapsed());

        let started = std::time::Instant::now();
        assert_eq!(hold(worker(BEATING, false).await, FIRST_SIGNAL, |_| {}).await, Lost::Silent(150));
        let took = started.elapsed();
        assert!((Duration::from_millis(150)..Duration::from_millis(400)).contains(&took), "{took:?}");
    }

    #[tokio::test]
    async fn refused_and_rejected_say_so() {
        let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
        assert_eq!(hold(free, FIRST_SIGNAL, |_| {}).await, Lost::Refused);
        let old = worker(b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n", false).await;
        assert_eq!(hold(old, FIRST_SIGNAL, |_| {}).await, Lost::Rejected(404));
        let mute = worker(b"HTTP/1.0 200 OK\r\n\r\nevent: hello\ndata: {\"periodMs\":50}\n\n", false).await;
        assert_eq!(
            hold(mute, Duration::from_millis(80), |_| {}).await,
            Lost::Silent(80),
            "a hello is not a signal"
        );
        assert_eq!(Lost::Rejected(404).describe(), "its heartbeat endpoint answered HTTP 404");
    }
}
