//! A TCP proxy between the operators and the apiserver that cuts connections: every cut closes
//! one live connection (a watch stream, a list, a status write) mid-flight, and new connections
//! wait up to `max_delay` before they reach the apiserver. TLS passes through untouched.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;

pub struct Proxy {
    pub port: u16,
    live: Arc<Mutex<HashMap<u64, oneshot::Sender<()>>>>,
    pub cuts: AtomicU64,
}

impl Proxy {
    /// Listens on a free loopback port, forwarding to `upstream` (a loopback port).
    pub async fn start(upstream: u16, max_delay: Duration) -> anyhow::Result<Arc<Proxy>> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let proxy = Arc::new(Proxy {
            port: listener.local_addr()?.port(),
            live: Arc::default(),
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
                        pipe(client, server, cut_rx).await;
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
}

async fn pipe(mut client: TcpStream, mut server: TcpStream, cut: oneshot::Receiver<()>) {
    tokio::select! {
        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
        _ = cut => {}
    }
}
