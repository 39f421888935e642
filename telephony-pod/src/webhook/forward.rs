//! Hands a webhook to the worker that placed its call (see `owner`): the same raw body and
//! Telnyx's signature headers, so that worker verifies it as if Telnyx had sent it there. A
//! forwarded webhook is never forwarded again (`FORWARDED_BY`), so two workers can't bounce one.

use std::net::SocketAddr;
use std::sync::OnceLock;
use std::time::Duration;

use axum::body::Bytes;
use axum::http::HeaderMap;

/// Set on a forwarded webhook: the forwarding worker's address.
pub const FORWARDED_BY: &str = "x-dialtone-forwarded-by";
/// Telnyx's headers the owner needs to verify the body.
const SIGNED: [&str; 3] = ["telnyx-timestamp", "telnyx-signature-ed25519", "content-type"];
/// A peer answers from memory in about a millisecond; one that takes this long is gone or hung,
/// and the event is applied here instead.
const TIMEOUT: Duration = Duration::from_secs(2);

fn client() -> &'static reqwest::Client {
    static CLIENT: OnceLock<reqwest::Client> = OnceLock::new();
    // No proxy: peers are pod IPs, and an HTTP(S)_PROXY meant for Telnyx must not see them.
    CLIENT.get_or_init(|| reqwest::Client::builder().timeout(TIMEOUT).no_proxy().build().unwrap_or_default())
}

/// Delivers to `owner`; `Err` says why it could not (the owner gone, or its refusal).
pub async fn to_owner(
    owner: SocketAddr,
    me: SocketAddr,
    headers: &HeaderMap,
    body: Bytes,
) -> Result<(), String> {
    let mut req =
        client().post(format!("http://{owner}/v1/webhooks/telnyx")).header(FORWARDED_BY, me.to_string());
    for name in SIGNED {
        if let Some(v) = headers.get(name) {
            req = req.header(name, v.clone());
        }
    }
    let res = req.body(body).send().await.map_err(|e| e.without_url().to_string())?;
    let status = res.status();
    if status.is_success() {
        Ok(())
    } else {
        Err(format!("the owner answered {}", status.as_u16()))
    }
}
