//! The readiness service's OpenAPI document, served at `GET /openapi.json`. Like the worker's, it
//! is built from the handlers the router serves (`utoipa-axum` registers a route and documents it
//! in one step), and the answer's shape is `view::StatusView` itself.

use serde::Serialize;
use utoipa::{OpenApi, ToSchema};

use crate::view::StatusView;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "dialtone-readiness",
        description = "Whether telephony is available, from memory: 200 when the app may send calls, \
            503 with `Retry-After` when not (failed, paused, starting, or the watch of the \
            Kubernetes API can't be trusted: `unknown`). Answers carry an ETag (304 on \
            `If-None-Match`); `/v1/watch` pushes every change as SSE. Only GET is served, with no \
            query parameters; every error is `{\"error\": {\"code\": <HTTP status>, \"message\"}}`. \
            Limits: a request head within 30 s, up to 16 KiB and 100 headers (431 beyond), no body is \
            read, 4,096 connections, a write stalled for 30 s closes the connection."
    ),
    tags(
        (name = "status", description = "The app's answers"),
        (name = "operations", description = "Probes, metrics and the dashboard")
    )
)]
pub struct ApiDoc;

/// Every error the readiness service sends.
#[derive(Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Serialize, ToSchema)]
pub struct ErrorDetail {
    /// The HTTP status, repeated.
    pub code: u16,
    /// What was wrong, for people.
    pub message: String,
}

/// Every service this readiness service sees.
#[derive(Serialize, ToSchema)]
pub struct StatusList {
    pub items: Vec<StatusView>,
}

/// The OpenAPI document as JSON, for `GET /openapi.json`.
pub fn json(doc: &utoipa::openapi::OpenApi) -> String {
    doc.to_pretty_json().unwrap_or_else(|_| "{}".into())
}

/// What any route answers to a request it can't take.
#[derive(utoipa::IntoResponses)]
pub enum Refused {
    /// A query string (none is accepted), or a name that is not a Kubernetes name.
    #[response(status = 400)]
    BadRequest(ErrorBody),
}

#[cfg(test)]
mod tests {
    /// The document's pattern and length for a name say what the handler checks, so the names
    /// schemathesis generates as valid are, and its invalid ones get the documented 400.
    #[test]
    fn the_documented_names_are_the_ones_the_handler_takes() {
        let doc = serde_json::to_value(crate::http::documented().1).unwrap();
        let params = doc["paths"]["/v1/status/{namespace}/{name}"]["get"]["parameters"].as_array().unwrap();
        let path: Vec<_> = params.iter().filter(|p| p["in"] == "path").collect();
        assert_eq!(path.len(), 2);
        for p in path {
            let re = regex::Regex::new(p["schema"]["pattern"].as_str().unwrap()).unwrap();
            let max = p["schema"]["maxLength"].as_u64().unwrap() as usize;
            let long_label = "a".repeat(64);
            let long_name = ["a".repeat(63), "b".repeat(63), "c".repeat(63), "d".repeat(62)].join(".");
            let odd =
                ["calls", "shop-prod", "a.b", "a", "0", "-x", "x-", "A", "a_b", "", "a..b", ".a", "a.", "é"];
            let long = [long_label.as_str(), &long_label[1..], long_name.as_str(), &long_name[1..]];
            for s in odd.into_iter().chain(long) {
                let documented = re.is_match(s) && s.chars().count() <= max;
                assert_eq!(documented, crate::names::dns_subdomain(s), "{s:?}");
            }
        }
    }
}
