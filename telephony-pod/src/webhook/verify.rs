//! Telnyx's webhook signature: ed25519 over `<telnyx-timestamp>|<raw body>`, with the account's
//! public key (base64 of the raw 32 bytes), and a timestamp within the tolerance of our clock.

use std::fmt;
use std::time::Duration;

use base64::Engine;
use ed25519_dalek::{Signature, VerifyingKey};

/// The official SDKs (Python, Node, Ruby) all reject `|now − telnyx-timestamp| > 300 s`.
pub const TOLERANCE: Duration = Duration::from_secs(300);

/// Why a webhook was refused. None of these carries the key or the body.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    #[error("the {0} header is missing")]
    MissingHeader(&'static str),
    #[error("telnyx-timestamp is not a Unix time in seconds")]
    BadTimestamp,
    #[error(
        "telnyx-timestamp is {skew_secs} s away from this worker's clock (tolerance {tolerance_secs} s)"
    )]
    Stale { skew_secs: u64, tolerance_secs: u64 },
    #[error("telnyx-signature-ed25519 is not a base64 ed25519 signature")]
    MalformedSignature,
    #[error("the signature does not match the body and timestamp")]
    BadSignature,
}

impl Rejection {
    /// The label for `telephony_webhooks_rejected_total{reason}`.
    pub fn reason(&self) -> &'static str {
        match self {
            Rejection::MissingHeader(_) => "missing_header",
            Rejection::BadTimestamp => "bad_timestamp",
            Rejection::Stale { .. } => "stale",
            Rejection::MalformedSignature => "malformed_signature",
            Rejection::BadSignature => "bad_signature",
        }
    }
}

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("the webhook public key must be base64 of a 32-byte ed25519 key")]
pub struct BadKey;

/// The account's public key. Debug never prints it (it is public, but it is configuration the
/// logs have no need of, and it keeps one rule for every key).
#[derive(Clone)]
pub struct PublicKey(VerifyingKey);

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PublicKey(<redacted>)")
    }
}

impl PublicKey {
    pub fn from_base64(text: &str) -> Result<PublicKey, BadKey> {
        let bytes = base64::engine::general_purpose::STANDARD.decode(text.trim()).map_err(|_| BadKey)?;
        let raw: [u8; 32] = bytes.try_into().map_err(|_| BadKey)?;
        VerifyingKey::from_bytes(&raw).map(PublicKey).map_err(|_| BadKey)
    }

    /// Checks one delivery. `now` is Unix seconds (a parameter so tests can move the clock).
    pub fn verify(
        &self,
        timestamp: Option<&str>,
        signature: Option<&str>,
        body: &[u8],
        now: u64,
    ) -> Result<(), Rejection> {
        let timestamp = timestamp.ok_or(Rejection::MissingHeader("telnyx-timestamp"))?.trim();
        let signature = signature.ok_or(Rejection::MissingHeader("telnyx-signature-ed25519"))?;
        let sent: u64 = timestamp.parse().map_err(|_| Rejection::BadTimestamp)?;
        let skew_secs = now.abs_diff(sent);
        if skew_secs > TOLERANCE.as_secs() {
            return Err(Rejection::Stale { skew_secs, tolerance_secs: TOLERANCE.as_secs() });
        }
        let raw = base64::engine::general_purpose::STANDARD
            .decode(signature.trim())
            .map_err(|_| Rejection::MalformedSignature)?;
        let raw: [u8; 64] = raw.try_into().map_err(|_| Rejection::MalformedSignature)?;
        let mut message = Vec::with_capacity(timestamp.len() + 1 + body.len());
        message.extend_from_slice(timestamp.as_bytes());
        message.push(b'|');
        message.extend_from_slice(body);
        self.0.verify_strict(&message, &Signature::from_bytes(&raw)).map_err(|_| Rejection::BadSignature)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::{Signer, SigningKey};

    const NOW: u64 = 1_790_000_000;

    fn keys() -> (SigningKey, PublicKey) {
        let signing = SigningKey::from_bytes(&rand::random::<[u8; 32]>());
        let public = base64::engine::general_purpose::STANDARD.encode(signing.verifying_key().as_bytes());
        (signing, PublicKey::from_base64(&public).unwrap())
    }

    fn sign(key: &SigningKey, ts: &str, body: &[u8]) -> String {
        let mut m = format!("{ts}|").into_bytes();
        m.extend_from_slice(body);
        base64::engine::general_purpose::STANDARD.encode(key.sign(&m).to_bytes())
    }

    #[test]
    fn a_signed_delivery_passes_and_any_change_fails() {
        let (signing, public) = keys();
        let body = br#"{"data":{"event_type":"call.answered"}}"#;
        let ts = NOW.to_string();
        let sig = sign(&signing, &ts, body);
        assert_eq!(public.verify(Some(&ts), Some(&sig), body, NOW), Ok(()));
        let tampered = br#"{"data":{"event_type":"call.hangup"}}"#;
        assert_eq!(public.verify(Some(&ts), Some(&sig), tampered, NOW), Err(Rejection::BadSignature));
        let later = (NOW + 1).to_string();
        assert_eq!(public.verify(Some(&later), Some(&sig), body, NOW), Err(Rejection::BadSignature));
        let (other, _) = keys();
        let forged = sign(&other, &ts, body);
        assert_eq!(public.verify(Some(&ts), Some(&forged), body, NOW), Err(Rejection::BadSignature));
    }

    #[test]
    fn the_timestamp_must_be_within_five_minutes_either_way() {
        let (signing, public) = keys();
        for (sent, ok) in [(NOW - 300, true), (NOW + 300, true), (NOW - 301, false), (NOW + 301, false)] {
            let ts = sent.to_string();
            let sig = sign(&signing, &ts, b"{}");
            let got = public.verify(Some(&ts), Some(&sig), b"{}", NOW);
            assert_eq!(got.is_ok(), ok, "sent {sent}: {got:?}");
        }
        let ts = (NOW - 3600).to_string();
        let e = public.verify(Some(&ts), Some(&sign(&signing, &ts, b"{}")), b"{}", NOW).unwrap_err();
        assert_eq!(
            e.to_string(),
            "telnyx-timestamp is 3600 s away from this worker's clock (tolerance 300 s)"
        );
    }

    #[test]
    fn malformed_headers_are_named() {
        let (_, public) = keys();
        let ts = NOW.to_string();
        assert_eq!(
            public.verify(None, Some("x"), b"", NOW),
            Err(Rejection::MissingHeader("telnyx-timestamp"))
        );
        assert_eq!(
            public.verify(Some(&ts), None, b"", NOW),
            Err(Rejection::MissingHeader("telnyx-signature-ed25519"))
        );
        assert_eq!(public.verify(Some("soon"), Some("x"), b"", NOW), Err(Rejection::BadTimestamp));
        assert_eq!(public.verify(Some("-5"), Some("x"), b"", NOW), Err(Rejection::BadTimestamp));
        assert_eq!(
            public.verify(Some(&ts), Some("not base64!"), b"", NOW),
            Err(Rejection::MalformedSignature)
        );
        assert_eq!(public.verify(Some(&ts), Some("AAAA"), b"", NOW), Err(Rejection::MalformedSignature));
    }

    #[test]
    fn a_bad_key_is_refused_and_a_good_one_never_printed() {
        assert_eq!(PublicKey::from_base64("short").unwrap_err(), BadKey);
        assert_eq!(PublicKey::from_base64("AAAA").unwrap_err(), BadKey);
        let (_, public) = keys();
        assert_eq!(format!("{public:?}"), "PublicKey(<redacted>)");
    }
}
