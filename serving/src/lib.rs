//! The HTTP server the worker, the readiness service and the operator's admin endpoint share: an
//! axum router on hyper's HTTP/1, with every limit stated and enforced.
//!
//! Hand-written because `axum::serve` sets no timer, so hyper's header timeout never applies (a
//! client that sends its head a byte at a time, "slowloris", holds a connection for ever), and it
//! takes any number of connections. This loop is hyper's own connection builder and hyper-util's
//! graceful shutdown; only the accept loop and its bound are ours.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

/// What one server accepts. Bodies are limited per route by the routers themselves.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// A request head (request line and headers) must arrive within this, or the connection is
    /// closed. It also closes a keep-alive connection idle for as long.
    pub header_read_timeout: Duration,
    /// The largest request head; a larger one gets 431. Also the read buffer's size.
    pub max_head_bytes: usize,
    /// Connections served at once; more wait in the kernel's accept queue until one closes.
    pub max_connections: usize,
    /// A write that can't proceed for this long (the client stopped reading, with the socket's
    /// buffers full) closes the connection: an event stream's dead reader is dropped, not held.
    pub write_timeout: Duration,
}

/// Most headers in one request: hyper's fixed default (a request with more gets 431). Setting
/// it moves the header array to the heap, which hyper measures at 5 % slower.
pub const MAX_HEADERS: usize = 100;

impl Default for Limits {
    /// 30 s for a head: hyper's own default had it a timer, and longer than a pooling client's
    /// usual reuse of an idle connection (a browser sends a head in one packet); 16 KiB heads
    /// (nginx's `large_client_header_buffers` is 8 KiB per line); 1,024 connections; 30 s for a
    /// stalled write (an SSE stream writes at least every 15 s).
    fn default() -> Self {
        Limits {
            header_read_timeout: Duration::from_secs(30),
            max_head_bytes: 16 * 1024,
            max_connections: 1024,
            write_timeout: Duration::from_secs(30),
        }
    }
}

/// Serves `app` on `listener` until `shutdown` resolves; then stops accepting, and returns once
/// the open connections have finished their requests (long-lived streams must end themselves).
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: Limits,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        // A client that shuts its write side after its request still gets the answer.
        .half_close(true)
        .max_buf_size(limits.max_head_bytes.max(MIN_BUF));
    let graceful = GracefulShutdown::new();
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            biased;
            _ = &mut shutdown => break,
            accepted = accept(&listener, &permits) => accepted,
        };
        let Some((stream, permit)) = accepted else { continue };
        let service = TowerToHyperService::new(app.clone());
        let mut stream = tokio_io_timeout::TimeoutStream::new(stream);
        stream.set_write_timeout(Some(limits.write_timeout));
        let conn = graceful.watch(http.serve_connection(TokioIo::new(Box::pin(stream)), service));
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "connection ended with an error");
            }
            drop(permit);
        });
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}

/// hyper's smallest read buffer.
const MIN_BUF: usize = 8192;

/// The next connection, once a permit is free. An accept error (the process is out of file
/// descriptors) waits a moment instead of spinning, and is no connection.
async fn accept(
    listener: &TcpListener,
    permits: &Arc<Semaphore>,
) -> Option<(tokio::net::TcpStream, tokio::sync::OwnedSemaphorePermit)> {
    let permit = permits.clone().acquire_owned().await.ok()?;
    match listener.accept().await {
        Ok((stream, _)) => {
            let _ = stream.set_nodelay(true);
            Some((stream, permit))
        }
        Err(e) => {
            tracing::warn!(error = %e, "accept failed; retrying in 100 ms");
            tokio::time::sleep(Duration::from_millis(100)).await;
            None
        }
    }
}

#[cfg(test)]
mod tests;
