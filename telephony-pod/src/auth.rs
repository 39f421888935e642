//! Who may use the worker's API. With `DIALTONE_API_TOKEN` set (from `spec.auth.tokenSecretRef`),
//! the app's routes (credentials, tokens, calls, recording, call events) need
//! `Authorization: Bearer <token>`; without it they get 401. The probes, metrics, the heartbeat the
//! readiness service follows, and Telnyx's webhooks (signed, and Telnyx can't carry our token)
//! stay open. The comparison takes the same time wherever the tokens differ.

use std::fmt;

use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use subtle::ConstantTimeEq;

use crate::api::AppState;
use crate::error::ApiError;

/// Shorter tokens are refused at start: this one guards placing calls on the account.
pub const MIN_LEN: usize = 16;

/// The token the app must present; Debug never shows it.
#[derive(Clone)]
pub struct ApiToken(String);

impl ApiToken {
    pub fn new(value: &str) -> Result<ApiToken, String> {
        let value = value.trim();
        if value.len() < MIN_LEN || !value.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(format!("must be at least {MIN_LEN} visible ASCII characters"));
        }
        Ok(ApiToken(value.to_string()))
    }

    /// Whether an `Authorization` header value presents this token.
    pub fn admits(&self, authorization: Option<&HeaderValue>) -> bool {
        let presented = authorization
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
            .map(str::trim)
            .unwrap_or_default();
        // Lengths leak (the token's length is not the secret); the bytes don't.
        presented.len() == self.0.len() && bool::from(presented.as_bytes().ct_eq(self.0.as_bytes()))
    }
}

impl fmt::Debug for ApiToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiToken(<redacted>)")
    }
}

/// Middleware on the app's routes.
pub async fn require_token(State(s): State<AppState>, req: Request, next: Next) -> Response {
    let Some(token) = &s.config.api_token else { return next.run(req).await };
    if token.admits(req.headers().get(header::AUTHORIZATION)) {
        return next.run(req).await;
    }
    let mut res = ApiError::new(
        StatusCode::UNAUTHORIZED,
        "unauthorized",
        "this worker needs Authorization: Bearer <token> (the Secret named by spec.auth.tokenSecretRef)",
    )
    .into_response();
    res.headers_mut()
        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer realm=\"dialtone-worker\""));
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_exact_bearer_token_is_admitted() {
        let t = ApiToken::new("s3cret-token-0123456789").unwrap();
        let h = |v: &str| Some(HeaderValue::from_str(v).unwrap());
        assert!(t.admits(h("Bearer s3cret-token-0123456789").as_ref()));
        assert!(t.admits(h("bearer s3cret-token-0123456789").as_ref()));
        for wrong in [
            "Bearer s3cret-token-012345678",
            "Bearer s3cret-token-0123456789x",
            "Basic czNjcmV0",
            "s3cret-token-0123456789",
            "Bearer ",
        ] {
            assert!(!t.admits(h(wrong).as_ref()), "{wrong}");
        }
        assert!(!t.admits(None));
        assert!(!t.admits(Some(&HeaderValue::from_bytes(b"Bearer \xff").unwrap())));
    }

    #[test]
    fn weak_tokens_are_refused_and_none_is_ever_printed() {
        assert!(ApiToken::new("short").is_err());
        assert!(ApiToken::new("has a space in the middle").is_err());
        let t = ApiToken::new("  s3cret-token-0123456789\n").unwrap();
        assert!(
            t.admits(Some(&HeaderValue::from_static("Bearer s3cret-token-0123456789"))),
            "trimmed, as a Secret file often ends in a newline"
        );
        assert_eq!(format!("{t:?}"), "ApiToken(<redacted>)");
    }
}
