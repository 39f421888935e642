//! A Server-Sent Events reader for tests: each frame as (event, id, data), in a channel.

use std::time::Duration;

use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver};

/// One frame: the event name (`message` when unnamed), its id, its data.
pub type Frame = (String, Option<String>, String);

/// Follows `url` (with `Last-Event-ID` when given); the channel closes when the stream ends.
pub async fn follow(url: &str, last_event_id: Option<&str>) -> UnboundedReceiver<Frame> {
    // A stream outlives the client's 5 s request timeout.
    let mut req = crate::http().get(url).timeout(Duration::from_secs(600));
    if let Some(id) = last_event_id {
        req = req.header("last-event-id", id);
    }
    let mut res = req.send().await.unwrap_or_else(|e| panic!("follow {url}: {e}"));
    assert_eq!(res.status().as_u16(), 200, "follow {url}");
    let (tx, rx) = unbounded_channel();
    tokio::spawn(async move {
        let mut buf = String::new();
        while let Ok(Some(chunk)) = res.chunk().await {
            buf.push_str(&String::from_utf8_lossy(&chunk));
            while let Some(end) = buf.find("\n\n") {
                let block: String = buf.drain(..end + 2).collect();
                let (mut event, mut id, mut data) = ("message".to_string(), None, String::new());
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("event: ") {
                        event = v.into();
                    } else if let Some(v) = line.strip_prefix("id: ") {
                        id = Some(v.to_string());
                    } else if let Some(v) = line.strip_prefix("data: ") {
                        data.push_str(v);
                    }
                }
                if !data.is_empty() && tx.send((event, id, data)).is_err() {
                    return;
                }
            }
        }
    });
    rx
}

/// The next frame within `within`; panics naming `what` otherwise (or when the stream ended).
pub async fn next(rx: &mut UnboundedReceiver<Frame>, within: Duration, what: &str) -> Frame {
    tokio::time::timeout(within, rx.recv())
        .await
        .unwrap_or_else(|_| panic!("no {what} within {within:?}"))
        .unwrap_or_else(|| panic!("the stream ended before {what}"))
}
