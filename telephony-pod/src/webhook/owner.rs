//! Which worker placed a call, carried by the call itself. Telnyx sends every webhook of a call to
//! one URL (the workers' Service), so with several workers the one that hears a hangup is often not
//! the one holding the call; that one would then wait out its drain for a call long over. Telnyx
//! echoes a dial's `client_state` in each of the call's webhooks, so the worker puts its own
//! address in front of the app's state:
//!
//! `client_state = base64("dialtone <ip>:<port>\n" + the app's client_state)`
//!
//! A worker that knows its own address (`POD_IP`, from the downward API) prefixes every dial, so an
//! app's own state can't pose as an address; one that doesn't neither prefixes nor forwards. The
//! app never sees the prefix (the worker doesn't echo `client_state`), and the address is trusted
//! only as far as the signature over the body it came in.

use std::net::SocketAddr;

use base64::Engine;

const PREFIX: &str = "dialtone ";

/// The `client_state` of a dial: this worker's address (when known) before the app's state.
pub fn client_state(owner: Option<SocketAddr>, app: Option<&str>) -> Option<String> {
    let text = match (owner, app) {
        (None, None) => return None,
        (None, Some(app)) => app.to_string(),
        (Some(addr), app) => format!("{PREFIX}{addr}\n{}", app.unwrap_or_default()),
    };
    Some(base64::engine::general_purpose::STANDARD.encode(text))
}

/// The address of the worker that placed the call, from the `client_state` Telnyx echoed.
pub fn owner(client_state: &str) -> Option<SocketAddr> {
    let raw = base64::engine::general_purpose::STANDARD.decode(client_state.trim()).ok()?;
    let rest = raw.strip_prefix(PREFIX.as_bytes())?;
    let end = rest.iter().position(|&b| b == b'\n')?;
    std::str::from_utf8(&rest[..end]).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(s: &str) -> String {
        String::from_utf8(base64::engine::general_purpose::STANDARD.decode(s).unwrap()).unwrap()
    }

    #[test]
    fn the_owner_comes_back_from_the_echoed_state_and_the_apps_state_is_kept() {
        let me: SocketAddr = "10.244.0.7:8080".parse().unwrap();
        let state = client_state(Some(me), Some("order-42")).unwrap();
        assert_eq!(decode(&state), "dialtone 10.244.0.7:8080\norder-42");
        assert_eq!(owner(&state), Some(me));
        let v6: SocketAddr = "[fd00::5]:9000".parse().unwrap();
        assert_eq!(owner(&client_state(Some(v6), None).unwrap()), Some(v6));
    }

    #[test]
    fn without_an_address_the_apps_state_goes_as_it_was() {
        assert_eq!(client_state(None, None), None);
        let state = client_state(None, Some("dialtone 1.2.3.4:5\n")).unwrap();
        assert_eq!(decode(&state), "dialtone 1.2.3.4:5\n");
    }

    #[test]
    fn anything_else_names_no_owner() {
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        for s in [
            "aGF2ZSBhIG5pY2UgZGF5ID1d".to_string(), // the spec's example: "have a nice day =]"
            "not base64!".into(),
            b64("dialtone example.com:80\n"),
            b64("dialtone 10.0.0.1:8080"),
            b64("dialtone 10.0.0.1\n"),
            b64("Dialtone 10.0.0.1:8080\n"),
            String::new(),
        ] {
            assert_eq!(owner(&s), None, "{s}");
        }
    }
}
