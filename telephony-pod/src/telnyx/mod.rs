//! The slice of the Telnyx v2 API the worker uses: telephony credentials, their tokens, dial and
//! hangup. Retries (exponential backoff with jitter, honouring rate-limit headers) only where a
//! repeat is harmless: reads, deletes, token minting, and commands carrying a `command_id`.

mod error;

pub use error::{parse_errors, retry_after, UpstreamError};

use std::time::{Duration, Instant};

use reqwest::{Method, RequestBuilder};
use serde::{Deserialize, Serialize};

use crate::config::Config;
use crate::metrics::{KindLabel, Metrics, OperationLabel};
use crate::secret::ApiKey;

/// Longest wait a rate limit may impose inside one request; longer ones are returned to the caller.
const MAX_INLINE_WAIT: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Credential {
    pub id: String,
    #[serde(default)]
    pub sip_username: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub expires_at: Option<String>,
    #[serde(default)]
    pub expired: Option<bool>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Page {
    pub data: Vec<Credential>,
    #[serde(default)]
    pub meta: Option<PageMeta>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct PageMeta {
    #[serde(default)]
    pub total_pages: Option<u32>,
    #[serde(default)]
    pub page_number: Option<u32>,
}

#[derive(Debug, Clone, Serialize)]
pub struct NewCredential<'a> {
    pub connection_id: &'a str,
    pub name: &'a str,
    pub tag: &'a str,
    pub expires_at: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Dial<'a> {
    pub connection_id: &'a str,
    pub to: &'a str,
    pub from: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeout_secs: Option<u32>,
    /// Base64, as Telnyx requires.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_state: Option<String>,
    /// Makes a retried dial harmless: Telnyx ignores a repeated command_id.
    pub command_id: String,
}

/// `StartRecordingRequest`: `format` and `channels` are required.
#[derive(Debug, Clone, Serialize)]
pub struct RecordStart<'a> {
    pub format: &'a str,
    pub channels: &'a str,
    pub command_id: String,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Call {
    pub call_control_id: String,
    #[serde(default)]
    pub call_leg_id: Option<String>,
    #[serde(default)]
    pub call_session_id: Option<String>,
}

#[derive(Deserialize)]
struct Data<T> {
    data: T,
}

pub struct Telnyx {
    http: reqwest::Client,
    base: String,
    key: ApiKey,
    max_attempts: u32,
    metrics: Metrics,
}

impl Telnyx {
    pub fn new(config: &Config, metrics: Metrics) -> Result<Telnyx, reqwest::Error> {
        let http = reqwest::Client::builder()
            .connect_timeout(config.connect_timeout)
            .timeout(config.request_timeout)
            .user_agent(concat!("dialtone-telephony-pod/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Telnyx {
            http,
            base: config.base_url.as_str().trim_end_matches('/').to_string(),
            key: config.api_key.clone(),
            max_attempts: config.max_attempts,
            metrics,
        })
    }

    pub async fn create_credential(&self, c: &NewCredential<'_>) -> Result<Credential, UpstreamError> {
        // Not retried: a repeat could create a second credential.
        let body = self
            .send("create_credential", false, || self.req(Method::POST, "/telephony_credentials").json(c))
            .await?;
        Ok(json::<Data<Credential>>(&body)?.data)
    }

    /// A WebRTC login token (a raw JWT, `text/plain`).
    pub async fn mint_token(&self, credential_id: &str) -> Result<String, UpstreamError> {
        let path = format!("/telephony_credentials/{}/token", encode(credential_id));
        let body = self.send("mint_token", true, || self.req(Method::POST, &path)).await?;
        let token = body.trim().to_string();
        if token.split('.').count() != 3 {
            return Err(UpstreamError::Malformed("the token is not a JWT".into()));
        }
        Ok(token)
    }

    /// One page of this worker's credentials (`filter[tag]`), optionally only expired ones.
    pub async fn list_credentials(
        &self,
        tag: &str,
        name: Option<&str>,
        expired_only: bool,
        page: u32,
    ) -> Result<Page, UpstreamError> {
        let mut query: Vec<(&str, String)> = vec![
            ("filter[tag]", tag.to_string()),
            ("page[number]", page.to_string()),
            ("page[size]", "250".into()),
        ];
        if let Some(n) = name {
            query.push(("filter[name]", n.to_string()));
        }
        if expired_only {
            query.push(("filter[status]", "expired".into()));
        }
        let body = self
            .send("list_credentials", true, || self.req(Method::GET, "/telephony_credentials").query(&query))
            .await?;
        json(&body)
    }

    /// A cheap authenticated call for the readiness check.
    pub async fn check(&self) -> Result<(), UpstreamError> {
        let query = [("page[size]", "1")];
        self.send("check", false, || self.req(Method::GET, "/telephony_credentials").query(&query))
            .await
            .map(|_| ())
    }

    pub async fn delete_credential(&self, id: &str) -> Result<(), UpstreamError> {
        let path = format!("/telephony_credentials/{}", encode(id));
        match self.send("delete_credential", true, || self.req(Method::DELETE, &path)).await {
            Ok(_) | Err(UpstreamError::Rejected { status: 404, .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }

    pub async fn dial(&self, d: &Dial<'_>) -> Result<Call, UpstreamError> {
        let body = self.send("dial", true, || self.req(Method::POST, "/calls").json(d)).await?;
        Ok(json::<Data<Call>>(&body)?.data)
    }

    pub async fn hangup(&self, call_control_id: &str, command_id: &str) -> Result<(), UpstreamError> {
        let path = format!("/calls/{}/actions/hangup", encode(call_control_id));
        let body = serde_json::json!({ "command_id": command_id });
        self.send("hangup", true, || self.req(Method::POST, &path).json(&body)).await.map(|_| ())
    }

    /// Starts recording a live call (`record_start`); Telnyx sends `call.recording.saved` later.
    pub async fn record_start(
        &self,
        call_control_id: &str,
        r: &RecordStart<'_>,
    ) -> Result<(), UpstreamError> {
        let path = format!("/calls/{}/actions/record_start", encode(call_control_id));
        self.send("record_start", true, || self.req(Method::POST, &path).json(r)).await.map(|_| ())
    }

    pub async fn record_stop(&self, call_control_id: &str, command_id: &str) -> Result<(), UpstreamError> {
        let path = format!("/calls/{}/actions/record_stop", encode(call_control_id));
        let body = serde_json::json!({ "command_id": command_id });
        self.send("record_stop", true, || self.req(Method::POST, &path).json(&body)).await.map(|_| ())
    }

    fn req(&self, method: Method, path: &str) -> RequestBuilder {
        self.http.request(method, format!("{}{path}", self.base)).bearer_auth(self.key.expose())
    }

    /// Sends with retries (when `retry`), records metrics, and returns the success body.
    async fn send(
        &self,
        operation: &'static str,
        retry: bool,
        build: impl Fn() -> RequestBuilder,
    ) -> Result<String, UpstreamError> {
        let attempts = if retry { self.max_attempts.max(1) } else { 1 };
        let mut attempt = 0;
        loop {
            attempt += 1;
            let started = Instant::now();
            let result = self.once(build()).await;
            self.metrics
                .upstream_latency
                .get_or_create(&OperationLabel { operation: operation.into() })
                .observe(started.elapsed().as_secs_f64());
            let err = match result {
                Ok(body) => return Ok(body),
                Err(e) => e,
            };
            self.metrics.upstream_errors.get_or_create(&KindLabel { kind: err.kind().into() }).inc();
            let wait = match &err {
                UpstreamError::RateLimited { retry_after, .. } if *retry_after <= MAX_INLINE_WAIT => {
                    *retry_after
                }
                UpstreamError::Server { .. } | UpstreamError::Timeout | UpstreamError::Unreachable => {
                    backoff(attempt)
                }
                _ => return Err(err),
            };
            if attempt >= attempts {
                return Err(err);
            }
            tracing::debug!(operation, attempt, error = %err, wait_ms = wait.as_millis() as u64, "retrying Telnyx call");
            tokio::time::sleep(wait).await;
        }
    }

    async fn once(&self, request: RequestBuilder) -> Result<String, UpstreamError> {
        let res = request.send().await.map_err(|e| UpstreamError::from_reqwest(&e))?;
        let status = res.status();
        let headers = res.headers().clone();
        let mut body = res.text().await.map_err(|e| UpstreamError::from_reqwest(&e))?;
        // Whatever answers (a proxy, a misbehaving mock) might echo our credentials back.
        if body.contains(self.key.expose()) {
            body = body.replace(self.key.expose(), "<redacted>");
        }
        if status.is_success() {
            Ok(body)
        } else {
            Err(UpstreamError::from_response(status, &headers, &body))
        }
    }
}

/// 100 ms, 200 ms, 400 ms ... (cap 2 s), plus up to 50 % jitter.
fn backoff(attempt: u32) -> Duration {
    let base = Duration::from_millis(100)
        .saturating_mul(1 << attempt.saturating_sub(1).min(5))
        .min(Duration::from_secs(2));
    base.mul_f64(1.0 + rand::random::<f64>() * 0.5)
}

fn json<T: serde::de::DeserializeOwned>(body: &str) -> Result<T, UpstreamError> {
    serde_json::from_str(body).map_err(|e| UpstreamError::Malformed(format!("invalid JSON: {e}")))
}

/// Percent-encodes a path segment (ids come from Telnyx or from our validated input).
fn encode(segment: &str) -> String {
    url::form_urlencoded::byte_serialize(segment.as_bytes()).collect::<String>().replace('+', "%20")
}
