//! Property tests of the parsers and checks the worker wrote itself (no crate does these): for any
//! input, they answer without panicking, and what they promise holds. proptest generates the
//! inputs (256 cases per property, about a second in all) and shrinks any failure to its smallest.

use std::net::SocketAddr;

use axum::http::{HeaderMap, HeaderValue};
use proptest::prelude::*;
use telephony_pod::input::{is_call_control_id, is_phone_number, is_sip_uri, CallRequest};
use telephony_pod::telnyx::{parse_errors, retry_after};
use telephony_pod::webhook::{self, owner, PublicKey};
use testing::telnyx::Signer;

/// Strings that look like JSON more often than random text does.
fn jsonish() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "\\{\"errors\":(\\[.{0,40}\\]|\\{.{0,40}\\}|null|1|\"x\")\\}",
        "\\{\"data\":\\{\"id\":.{0,12},\"event_type\":.{0,20},\"payload\":.{0,40}\\}\\}",
    ]
}

proptest! {
    #[test]
    fn telnyx_errors_never_panic_and_stay_short(body in jsonish()) {
        let (code, title, detail) = parse_errors(&body);
        for field in [code, title, detail].into_iter().flatten() {
            prop_assert!(!field.is_empty() && field.chars().count() <= 500);
        }
    }

    #[test]
    fn retry_after_stays_within_an_hour(value in "[ -~]{0,24}") {
        let mut headers = HeaderMap::new();
        if let Ok(v) = HeaderValue::from_str(&value) {
            headers.insert("retry-after", v);
        }
        prop_assert!(retry_after(&headers).as_secs() <= 3600);
    }

    #[test]
    fn webhook_envelopes_never_panic_and_keep_ids_short(body in jsonish()) {
        if let Ok(e) = webhook::parse(body.as_bytes()) {
            prop_assert!(!e.id.is_empty() && e.id.chars().count() <= 256);
        }
    }

    #[test]
    fn only_the_signed_body_at_its_time_is_verified(body in any::<Vec<u8>>(), other in any::<Vec<u8>>(), skew in 0u64..1000) {
        let signer = Signer::default();
        let key = PublicKey::from_base64(&signer.public_key()).expect("a key");
        let now = 1_800_000_000u64;
        let text = String::from_utf8_lossy(&body).into_owned();
        let headers = signer.headers(now as i64, &text);
        let (ts, sig) = (headers[0].1.as_str(), headers[1].1.as_str());
        let at = now + skew;
        prop_assert_eq!(key.verify(Some(ts), Some(sig), text.as_bytes(), at).is_ok(), skew <= 300);
        if other != body {
            prop_assert!(key.verify(Some(ts), Some(sig), &other, now).is_err());
        }
    }

    #[test]
    fn forged_headers_are_refused_without_panicking(ts in "[ -~]{0,30}", sig in "[ -~]{0,120}", body in any::<Vec<u8>>()) {
        let key = PublicKey::from_base64(&Signer::default().public_key()).expect("a key");
        prop_assert!(key.verify(Some(&ts), Some(&sig), &body, 1_800_000_000).is_err());
    }

    #[test]
    fn the_owner_survives_the_round_trip_and_the_apps_state_cannot_pose_as_one(
        ip in any::<[u8; 4]>(), port in 1u16.., app in any::<Option<String>>(),
    ) {
        let me = SocketAddr::from((ip, port));
        let state = owner::client_state(Some(me), app.as_deref()).expect("a state");
        prop_assert_eq!(owner::owner(&state), Some(me));
        // With an address known, the app's own state always comes after ours.
        if let Some(app) = &app {
            let theirs = owner::client_state(Some(me), Some(app)).expect("a state");
            prop_assert_eq!(owner::owner(&theirs), Some(me));
        }
    }

    #[test]
    fn only_a_dialtone_prefix_names_an_owner(raw in prop_oneof![any::<Vec<u8>>(), "dialtone [0-9.:]{0,24}\n.{0,8}".prop_map(String::into_bytes)]) {
        use base64::Engine;
        let state = base64::engine::general_purpose::STANDARD.encode(&raw);
        // The documented format, read independently: `dialtone <ip>:<port>\n` and then anything.
        let expected = raw.strip_prefix(b"dialtone ").and_then(|rest| {
            let end = rest.iter().position(|&b| b == b'\n')?;
            std::str::from_utf8(&rest[..end]).ok()?.parse::<SocketAddr>().ok()
        });
        prop_assert_eq!(owner::owner(&state), expected);
    }

    #[test]
    fn call_requests_validate_without_panicking(to in any::<String>(), from in any::<String>(), t in any::<Option<u32>>(), state in any::<Option<String>>()) {
        let body = serde_json::json!({ "to": to, "from": from, "timeoutSecs": t, "clientState": state });
        let req: CallRequest = serde_json::from_value(body).expect("the shape");
        let ok = req.validate().is_ok();
        let number_or_sip = |s: &str| is_phone_number(s) || is_sip_uri(s);
        let expected = number_or_sip(&to) && number_or_sip(&from)
            && t.is_none_or(|t| (5..=600).contains(&t))
            && state.as_ref().is_none_or(|s| s.len() <= 4096);
        prop_assert_eq!(ok, expected);
    }

    #[test]
    fn e164_numbers_are_exactly_plus_and_7_to_15_digits(n in "\\+[0-9]{0,18}") {
        let digits = n.len() - 1;
        prop_assert_eq!(is_phone_number(&n), (7..=15).contains(&digits) && !n[1..].starts_with('0'));
    }

    #[test]
    fn call_control_ids_are_url_safe(id in any::<String>()) {
        if is_call_control_id(&id) {
            prop_assert!(!id.is_empty() && id.len() <= 256);
            prop_assert!(!id.contains(['/', '?', '#', '%', ' ']));
        }
    }
}
