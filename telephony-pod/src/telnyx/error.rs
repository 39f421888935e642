//! What can go wrong upstream, parsed tolerantly from whatever Telnyx (or a proxy) answers.

use std::time::Duration;

use reqwest::header::HeaderMap;
use reqwest::StatusCode;

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum UpstreamError {
    #[error("Telnyx rate limit reached; retry after {}s", retry_after.as_secs().max(1))]
    RateLimited { retry_after: Duration, code: Option<String> },
    #[error("Telnyx rejected the request ({status}): {detail}")]
    Rejected { status: u16, code: Option<String>, title: String, detail: String },
    #[error("Telnyx failed ({status}): {detail}")]
    Server { status: u16, detail: String },
    #[error("Telnyx did not answer in time")]
    Timeout,
    #[error("Telnyx is unreachable")]
    Unreachable,
    #[error("Telnyx sent an unexpected answer: {0}")]
    Malformed(String),
}

impl UpstreamError {
    /// Label for the upstream-errors metric.
    pub fn kind(&self) -> &'static str {
        match self {
            UpstreamError::RateLimited { .. } => "rate_limited",
            UpstreamError::Rejected { .. } => "rejected",
            UpstreamError::Server { .. } => "server",
            UpstreamError::Timeout => "timeout",
            UpstreamError::Unreachable => "unreachable",
            UpstreamError::Malformed(_) => "malformed",
        }
    }

    /// Telnyx's error code, when it sent one.
    pub fn code(&self) -> Option<&str> {
        match self {
            UpstreamError::RateLimited { code, .. } | UpstreamError::Rejected { code, .. } => code.as_deref(),
            _ => None,
        }
    }

    pub fn from_reqwest(e: &reqwest::Error) -> UpstreamError {
        if e.is_timeout() {
            UpstreamError::Timeout
        } else if e.is_connect() || e.is_request() {
            UpstreamError::Unreachable
        } else {
            UpstreamError::Malformed("the response could not be read".into())
        }
    }

    /// Builds the error for a non-success answer.
    pub fn from_response(status: StatusCode, headers: &HeaderMap, body: &str) -> UpstreamError {
        let (code, title, detail) = parse_errors(body);
        let detail = detail
            .or_else(|| title.clone())
            .unwrap_or_else(|| status.canonical_reason().unwrap_or("error").to_string());
        if status == StatusCode::TOO_MANY_REQUESTS {
            return UpstreamError::RateLimited { retry_after: retry_after(headers), code };
        }
        if status.is_server_error() {
            return UpstreamError::Server { status: status.as_u16(), detail };
        }
        UpstreamError::Rejected {
            status: status.as_u16(),
            code,
            title: title.unwrap_or_else(|| status.canonical_reason().unwrap_or("error").to_string()),
            detail,
        }
    }
}

/// `{"errors": [{"code", "title", "detail"}]}`, `{"errors": {...}}` or problem+json: the first
/// error's code, title and detail, whichever exist. A body that isn't JSON gives nothing.
pub fn parse_errors(body: &str) -> (Option<String>, Option<String>, Option<String>) {
    let Ok(v) = serde_json::from_str::<serde_json::Value>(body) else { return (None, None, None) };
    let first = match v.get("errors") {
        Some(serde_json::Value::Array(items)) => items.first().cloned(),
        Some(obj @ serde_json::Value::Object(_)) => Some(obj.clone()),
        _ => Some(v.clone()), // problem+json: title/detail at the top
    };
    let Some(e) = first else { return (None, None, None) };
    let text = |k: &str| match e.get(k) {
        Some(serde_json::Value::String(s)) if !s.is_empty() => Some(s.chars().take(500).collect()),
        Some(n @ serde_json::Value::Number(_)) => Some(n.to_string()),
        _ => None,
    };
    (text("code"), text("title").or_else(|| text("status")), text("detail"))
}

/// How long Telnyx asks us to wait: `Retry-After`, else `x-ratelimit-reset` (seconds), else 1 s.
pub fn retry_after(headers: &HeaderMap) -> Duration {
    let secs = |name: &str| headers.get(name)?.to_str().ok()?.trim().parse::<f64>().ok();
    let s = secs("retry-after").or_else(|| secs("x-ratelimit-reset")).unwrap_or(1.0);
    Duration::from_secs_f64(s.clamp(0.0, 3600.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_error_shapes_and_problem_json_are_understood() {
        let list = r#"{"errors":[{"code":"90018","title":"Call has already ended","detail":"This call is no longer active"}]}"#;
        assert_eq!(
            parse_errors(list),
            (
                Some("90018".into()),
                Some("Call has already ended".into()),
                Some("This call is no longer active".into())
            )
        );
        let object = r#"{"errors":{"status":"Account Level Limit Reached"}}"#;
        assert_eq!(parse_errors(object).1.as_deref(), Some("Account Level Limit Reached"));
        let numeric = r#"{"errors":[{"code":10011,"title":"Too many requests"}]}"#;
        assert_eq!(parse_errors(numeric).0.as_deref(), Some("10011"));
        let problem =
            r#"{"type":"about:blank","title":"Unauthorized","status":401,"detail":"Missing token"}"#;
        assert_eq!(parse_errors(problem).2.as_deref(), Some("Missing token"));
        assert_eq!(parse_errors("<html>bad gateway</html>"), (None, None, None));
        assert_eq!(parse_errors(r#"{"errors":[]}"#), (None, None, None));
    }

    #[test]
    fn statuses_map_to_kinds() {
        let h = HeaderMap::new();
        assert!(matches!(
            UpstreamError::from_response(StatusCode::BAD_GATEWAY, &h, ""),
            UpstreamError::Server { status: 502, .. }
        ));
        let e = UpstreamError::from_response(
            StatusCode::UNPROCESSABLE_ENTITY,
            &h,
            r#"{"errors":[{"code":"90018","title":"t"}]}"#,
        );
        assert_eq!(e.code(), Some("90018"));
        assert_eq!(e.kind(), "rejected");
    }

    #[test]
    fn rate_limit_wait_comes_from_headers() {
        let mut h = HeaderMap::new();
        h.insert("x-ratelimit-reset", "7".parse().unwrap());
        assert_eq!(retry_after(&h), Duration::from_secs(7));
        h.insert("retry-after", "2".parse().unwrap());
        assert_eq!(retry_after(&h), Duration::from_secs(2));
        assert_eq!(retry_after(&HeaderMap::new()), Duration::from_secs(1));
        let e = UpstreamError::from_response(
            StatusCode::TOO_MANY_REQUESTS,
            &h,
            r#"{"errors":[{"code":"10011"}]}"#,
        );
        assert_eq!(
            e,
            UpstreamError::RateLimited { retry_after: Duration::from_secs(2), code: Some("10011".into()) }
        );
    }
}
