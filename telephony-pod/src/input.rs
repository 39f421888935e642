//! Validation of what clients send: every field checked, every problem named.

use serde::Deserialize;

use crate::error::ApiError;

/// A WebRTC login for one user of the app.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CredentialRequest {
    /// 1-64 letters, digits, `.`, `_` and `-`; the same username gets the same credential.
    #[schema(min_length = 1, max_length = 64, pattern = "^[A-Za-z0-9._-]+$")]
    pub username: String,
}

/// A call to place.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct CallRequest {
    /// E.164 (`+15551234567`) or a `sip:` URI.
    #[schema(max_length = 256, pattern = r"^(\+[1-9][0-9]{6,14}|sip:[!-?A-~]+@[!-,\-/-9<-~][!-~]*)$")]
    pub to: String,
    /// E.164 or a `sip:` URI.
    #[schema(max_length = 256, pattern = r"^(\+[1-9][0-9]{6,14}|sip:[!-?A-~]+@[!-,\-/-9<-~][!-~]*)$")]
    pub from: String,
    /// Ring timeout in seconds.
    #[serde(default, deserialize_with = "whole_seconds")]
    #[schema(minimum = 5, maximum = 600)]
    pub timeout_secs: Option<u32>,
    /// Free text (≤ 4096 bytes); sent to Telnyx base64-encoded, as it requires.
    #[serde(default)]
    #[schema(max_length = 4096)]
    pub client_state: Option<String>,
}

/// JSON has one number type: `30.0` is as whole as `30` (JSON Schema's `integer` says so too).
fn whole_seconds<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<u32>, D::Error> {
    let n: Option<f64> = Option::deserialize(d)?;
    match n {
        None => Ok(None),
        Some(n) if n.fract() == 0.0 && (0.0..=f64::from(u32::MAX)).contains(&n) => Ok(Some(n as u32)),
        Some(n) => {
            Err(serde::de::Error::custom(format!("timeoutSecs: {n} is not a whole number of seconds")))
        }
    }
}

impl CredentialRequest {
    pub fn validate(&self) -> Result<(), ApiError> {
        let u = &self.username;
        let ok =
            (1..=64).contains(&u.len()) && u.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c));
        if ok {
            Ok(())
        } else {
            Err(ApiError::invalid("username", "must be 1-64 characters of letters, digits, '.', '_' and '-'"))
        }
    }
}

impl CallRequest {
    pub fn validate(&self) -> Result<(), ApiError> {
        for (field, value) in [("to", &self.to), ("from", &self.from)] {
            if !is_phone_number(value) && !is_sip_uri(value) {
                return Err(ApiError::invalid(
                    field,
                    "must be an E.164 number (+ and 7-15 digits) or a sip: URI",
                ));
            }
        }
        if let Some(t) = self.timeout_secs {
            if !(5..=600).contains(&t) {
                return Err(ApiError::invalid("timeoutSecs", "must be from 5 to 600"));
            }
        }
        if self.client_state.as_ref().is_some_and(|s| s.len() > 4096) {
            return Err(ApiError::invalid("clientState", "must be at most 4096 bytes"));
        }
        Ok(())
    }
}

/// E.164: `+`, a non-zero first digit, 7 to 15 digits in all.
pub fn is_phone_number(s: &str) -> bool {
    let Some(digits) = s.strip_prefix('+') else { return false };
    (7..=15).contains(&digits.len()) && digits.chars().all(|c| c.is_ascii_digit()) && !digits.starts_with('0')
}

/// `sip:user@host[:port][;params]`, printable ASCII, no spaces.
pub fn is_sip_uri(s: &str) -> bool {
    let Some(rest) = s.strip_prefix("sip:") else { return false };
    let Some((user, host)) = rest.split_once('@') else { return false };
    s.len() <= 256
        && !user.is_empty()
        && !host.is_empty()
        && s.chars().all(|c| c.is_ascii_graphic())
        && !host.starts_with([';', ':', '.'])
}

/// Telnyx call control ids: printable ASCII without URL delimiters, at most 256 characters.
pub fn is_call_control_id(s: &str) -> bool {
    (1..=256).contains(&s.len()) && s.chars().all(|c| c.is_ascii_alphanumeric() || ":-_.=~".contains(c))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phone_numbers_and_sip_uris() {
        for ok in ["+15551234567", "+4930123456", "+1234567"] {
            assert!(is_phone_number(ok), "{ok}");
        }
        for bad in
            ["15551234567", "+0123456789", "+123456", "+1234567890123456", "+1555 123", "+1555-1234", "+"]
        {
            assert!(!is_phone_number(bad), "{bad}");
        }
        assert!(is_sip_uri("sip:agent-42@sip.telnyx.com"));
        assert!(is_sip_uri("sip:alice@example.com:5061;transport=tls"));
        for bad in ["sip:", "sip:@host", "sip:user@", "alice@example.com", "sip:a b@c"] {
            assert!(!is_sip_uri(bad), "{bad}");
        }
    }

    #[test]
    fn usernames() {
        let v = |u: &str| CredentialRequest { username: u.into() }.validate().is_ok();
        assert!(v("agent-42") && v("a.b_c") && v(&"x".repeat(64)));
        assert!(!v("") && !v(&"x".repeat(65)) && !v("bad name") && !v("ümlaut") && !v("a/b"));
    }

    #[test]
    fn call_fields_are_checked_and_named() {
        let call = |to: &str, t: Option<u32>| CallRequest {
            to: to.into(),
            from: "+15557654321".into(),
            timeout_secs: t,
            client_state: None,
        };
        assert!(call("+15551234567", Some(30)).validate().is_ok());
        assert!(call("sip:bob@example.com", None).validate().is_ok());
        assert_eq!(call("5551234", None).validate().unwrap_err().field.as_deref(), Some("to"));
        assert_eq!(
            call("+15551234567", Some(1)).validate().unwrap_err().field.as_deref(),
            Some("timeoutSecs")
        );
    }

    #[test]
    fn call_control_ids() {
        assert!(is_call_control_id("v3:MdI91X4lWFEs7IgbBEOT9M4AigoY08M0WWZFISt1Yw2axZ_IiE4pqg"));
        assert!(!is_call_control_id("a/b") && !is_call_control_id("") && !is_call_control_id("a b"));
    }
}
