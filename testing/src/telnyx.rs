//! Telnyx as the worker's webhooks see it: deliveries signed as Telnyx signs them (ed25519 over
//! `<timestamp>|<body>`, with a key made per test), and call events shaped as the spec's
//! `Call*Event` schemas.

use base64::Engine;
use ed25519_dalek::{Signer as _, SigningKey};

/// The project's copy of Telnyx's contract (`scripts/telnyx-contract.py` extracts it from
/// `../shared/telnyx/`): what the contract tests and the local cluster's Telnyx mock serve.
pub fn contract_spec() -> std::path::PathBuf {
    crate::repo_root().join("telephony-pod/tests/telnyx/telnyx.openapi.yml")
}

/// Signs webhooks with a key of its own.
pub struct Signer {
    key: SigningKey,
}

impl Default for Signer {
    fn default() -> Self {
        Signer { key: SigningKey::from_bytes(&rand::random::<[u8; 32]>()) }
    }
}

impl Signer {
    /// The public key as Telnyx's portal shows it (base64 of the raw 32 bytes).
    pub fn public_key(&self) -> String {
        base64::engine::general_purpose::STANDARD.encode(self.key.verifying_key().as_bytes())
    }

    /// `telnyx-timestamp` and `telnyx-signature-ed25519` for `body` sent at `timestamp`.
    pub fn headers(&self, timestamp: i64, body: &str) -> Vec<(&'static str, String)> {
        let signature = self.key.sign(format!("{timestamp}|{body}").as_bytes());
        vec![
            ("telnyx-timestamp", timestamp.to_string()),
            (
                "telnyx-signature-ed25519",
                base64::engine::general_purpose::STANDARD.encode(signature.to_bytes()),
            ),
        ]
    }

    /// Delivers `body` to the worker at `base` (`http://host:port`), signed now.
    pub async fn deliver(&self, base: &str, body: &str) -> (u16, serde_json::Value) {
        let mut req = crate::http()
            .post(format!("{base}/v1/webhooks/telnyx"))
            .header("content-type", "application/json")
            .body(body.to_string());
        for (k, v) in self.headers(now(), body) {
            req = req.header(k, v);
        }
        let res = req.send().await.unwrap_or_else(|e| panic!("deliver a webhook to {base}: {e}"));
        let status = res.status().as_u16();
        (status, res.json().await.unwrap_or_default())
    }
}

/// Unix seconds.
pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(0))
}

/// The `client_state` Telnyx echoes for a call the worker at `owner` (`ip:port`) placed, written
/// here from the worker's documented format (README, Webhooks), not from its code:
/// `base64("dialtone <ip>:<port>\n" + the app's state)`.
pub fn owned_by(owner: &str, app_state: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(format!("dialtone {owner}\n{app_state}"))
}

/// A call event shaped as Telnyx's `Call*Event` schemas (`data.payload` per event type), with
/// `extra` payload fields.
pub fn call_event(id: &str, event_type: &str, call_control_id: &str, extra: serde_json::Value) -> String {
    let mut payload = serde_json::json!({
        "call_control_id": call_control_id,
        "call_leg_id": format!("leg-{call_control_id}"),
        "call_session_id": format!("session-{call_control_id}"),
        "connection_id": "conn-test",
        "from": "+15550001111",
        "to": "+15550002222",
        "client_state": "aGF2ZSBhIG5pY2UgZGF5ID1d",
    });
    if let (Some(p), Some(e)) = (payload.as_object_mut(), extra.as_object()) {
        p.extend(e.clone());
    }
    serde_json::json!({ "data": {
        "record_type": "event", "event_type": event_type, "id": id, "payload": payload,
    }})
    .to_string()
}
