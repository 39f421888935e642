//! A TCP proxy in front of the apiserver, for fault injection. `cut_one` closes one live
//! connection (a watch stream, a list, a status write) mid-flight; `stall` freezes every
//! connection, open and new, without closing any: requests hang as they do behind a partition.
//! New connections wait up to `max_delay` before they reach the apiserver. TLS passes through.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{oneshot, watch};

pub struct Proxy {
    pub port: u16,
    upstream: u16,
    live: Arc<Mutex<HashMap<u64, oneshot::Sender<()>>>>,
    stalled: watch::Sender<bool>,
    pub cuts: AtomicU64,
}

impl Proxy {
    /// Listens on a free loopback port, forwarding to `upstream` (a loopback port).
    pub async fn start(upstream: u16, max_delay: Duration) -> std::io::Result<Arc<Proxy>> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let proxy = Arc::new(Proxy {
            port: listener.local_addr()?.port(),
            upstream,
            live: Arc::default(),
            stalled: watch::Sender::new(false),
            cuts: AtomicU64::new(0),
        });
        let p = proxy.clone();
        tokio::spawn(async move {
            let mut next = 0u64;
            while let Ok((client, _)) = listener.accept().await {
                next += 1;
                let (cut, cut_rx) = oneshot::channel();
                if let Ok(mut live) = p.live.lock() {
                    live.insert(next, cut);
                }
                let (p, id) = (p.clone(), next);
                tokio::spawn(async move {
                    let wait = max_delay.mul_f64(rand::random::<f64>());
                    tokio::time::sleep(wait).await;
                    if let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)).await {
                        pipe(client, server, cut_rx, p.stalled.subscribe()).await;
                    }
                    if let Ok(mut live) = p.live.lock() {
                        live.remove(&id);
                    }
                });
            }
        });
        Ok(proxy)
    }

    /// Closes one live connection, chosen at random; whether there was one.
    pub fn cut_one(&self) -> bool {
        let Ok(mut live) = self.live.lock() else { return false };
        let ids: Vec<u64> = live.keys().copied().collect();
        let Some(&id) = ids.get(rand::random_range(0..ids.len().max(1))) else { return false };
        let cut = live.remove(&id).map(|c| c.send(()));
        self.cuts.fetch_add(1, Ordering::Relaxed);
        cut.is_some()
    }

    /// From now on nothing crosses the proxy in either direction, and no connection is closed.
    pub fn stall(&self) {
        self.stalled.send_replace(true);
    }

    /// A kubeconfig's text, with its apiserver (the proxy's upstream) reached through this proxy.
    pub fn kubeconfig(&self, kubeconfig: &str) -> String {
        kubeconfig.replace(&format!("127.0.0.1:{}", self.upstream), &format!("127.0.0.1:{}", self.port))
    }
}

/// Forwards until either side closes or the connection is cut; once stalled, holds both sockets
/// open without reading until it is cut.
async fn pipe(
    mut client: TcpStream,
    mut server: TcpStream,
    mut cut: oneshot::Receiver<()>,
    mut stalled: watch::Receiver<bool>,
) {
    tokio::select! {
        biased;
        _ = &mut cut => return,
        _ = stalled.wait_for(|s| *s) => {}
        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => return,
    }
    let _ = cut.await;
}
