//! Configuration from the environment. A bad or missing value is a one-line error naming the
//! variable, and the process exits non-zero (the pod's CrashLoop is then visible to the operator).

use std::time::Duration;

use crate::secret::ApiKey;
use crate::webhook::PublicKey;

#[derive(Debug, thiserror::Error)]
#[error("{var}: {reason}")]
pub struct ConfigError {
    pub var: &'static str,
    pub reason: String,
}

#[derive(Debug, Clone)]
pub struct Config {
    pub api_key: ApiKey,
    pub connection_id: String,
    pub base_url: url::Url,
    pub port: u16,
    /// Period of the background Telnyx check behind `/readyz`.
    pub health_period: Duration,
    /// Beat period of `GET /v1/heartbeat` (the readiness service's fast path).
    pub heartbeat_period: Duration,
    pub credential_ttl: Duration,
    pub max_credentials: usize,
    /// `<namespace>/<service>`: credentials are tagged `dialtone:<namespace>/<service>`.
    pub service: String,
    pub connect_timeout: Duration,
    pub request_timeout: Duration,
    /// Upstream attempts for retryable operations (1 = no retry).
    pub max_attempts: u32,
    pub sweep_period: Duration,
    /// How long in-flight requests may take to finish after SIGTERM.
    pub shutdown_grace: Duration,
    /// How long live calls may go on after SIGTERM before the worker ends them.
    pub drain_timeout: Duration,
    /// Telnyx's public key for webhook signatures; webhooks are off without it.
    pub webhook_key: Option<PublicKey>,
    /// Where other workers reach this one (`POD_IP` and `port`): put on each dial so a webhook for
    /// the call that lands on another worker is handed here (`webhook::owner`).
    pub advertise: Option<std::net::SocketAddr>,
    /// The kubelet's termination message file (`TERMINATION_LOG`, set by the operator): a drain
    /// that ended live calls says so there. Unset outside a pod.
    pub termination_log: Option<std::path::PathBuf>,
    /// With a token (`DIALTONE_API_TOKEN`), the app's routes need it (`auth`).
    pub api_token: Option<crate::auth::ApiToken>,
}

impl Config {
    /// Reads the configuration through `get` (the process environment in production).
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
        let required = |var: &'static str| {
            get(var).filter(|v| !v.trim().is_empty()).ok_or(ConfigError { var, reason: "is required".into() })
        };
        let number = |var: &'static str, default: u64, min: u64, max: u64| -> Result<u64, ConfigError> {
            match get(var) {
                None => Ok(default),
                Some(v) => match v.trim().parse::<u64>() {
                    Ok(n) if (min..=max).contains(&n) => Ok(n),
                    _ => Err(ConfigError {
                        var,
                        reason: format!("must be a whole number from {min} to {max}, got {v:?}"),
                    }),
                },
            }
        };
        let api_key = ApiKey::new(required("TELNYX_API_KEY")?);
        let connection_id = required("TELNYX_CONNECTION_ID")?;
        let raw_url = get("TELNYX_BASE_URL").unwrap_or_else(|| "https://api.telnyx.com/v2".into());
        let base_url = url::Url::parse(raw_url.trim_end_matches('/'))
            .ok()
            .filter(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some())
            .ok_or(ConfigError {
                var: "TELNYX_BASE_URL",
                reason: format!("must be an http(s) URL, got {raw_url:?}"),
            })?;
        let service = get("DIALTONE_SERVICE").unwrap_or_else(|| "default/telephony".into());
        if service.len() > 200 || service.chars().any(|c| c.is_whitespace()) {
            return Err(ConfigError { var: "DIALTONE_SERVICE", reason: "must be <namespace>/<name>".into() });
        }
        let webhook_key = match get("TELNYX_PUBLIC_KEY").filter(|v| !v.trim().is_empty()) {
            None => None,
            Some(v) => Some(
                PublicKey::from_base64(&v)
                    .map_err(|e| ConfigError { var: "TELNYX_PUBLIC_KEY", reason: e.to_string() })?,
            ),
        };
        let api_token = match get("DIALTONE_API_TOKEN").filter(|v| !v.trim().is_empty()) {
            None => None,
            Some(v) => Some(
                crate::auth::ApiToken::new(&v)
                    .map_err(|reason| ConfigError { var: "DIALTONE_API_TOKEN", reason })?,
            ),
        };
        let secs = Duration::from_secs;
        let ms = Duration::from_millis;
        let port = u16::try_from(number("PORT", 8080, 1, 65535)?).unwrap_or(8080);
        let advertise = match get("POD_IP").filter(|v| !v.trim().is_empty()) {
            None => None,
            Some(v) => Some(std::net::SocketAddr::new(
                v.trim().parse().map_err(|_| ConfigError {
                    var: "POD_IP",
                    reason: format!("must be an IP address, got {v:?}"),
                })?,
                port,
            )),
        };
        Ok(Config {
            api_key,
            connection_id,
            base_url,
            port,
            health_period: secs(number("HEALTH_PERIOD_SECONDS", 30, 1, 3600)?),
            heartbeat_period: ms(number("HEARTBEAT_MILLIS", 100, 50, 5000)?),
            credential_ttl: secs(number("CREDENTIAL_TTL_SECONDS", 86_400, 60, 30 * 86_400)?),
            max_credentials: usize::try_from(number("MAX_CREDENTIALS", 5, 1, 1000)?).unwrap_or(5),
            service,
            connect_timeout: ms(number("TELNYX_CONNECT_TIMEOUT_MS", 3_000, 1, 60_000)?),
            request_timeout: ms(number("TELNYX_TIMEOUT_MS", 10_000, 1, 120_000)?),
            max_attempts: u32::try_from(number("TELNYX_MAX_ATTEMPTS", 3, 1, 10)?).unwrap_or(3),
            sweep_period: secs(number("SWEEP_PERIOD_SECONDS", 300, 1, 86_400)?),
            shutdown_grace: secs(number("SHUTDOWN_GRACE_SECONDS", 10, 0, 300)?),
            drain_timeout: secs(number("DRAIN_TIMEOUT_SECONDS", 30, 0, 3600)?),
            webhook_key,
            advertise,
            termination_log: get("TERMINATION_LOG").filter(|v| !v.trim().is_empty()).map(Into::into),
            api_token,
        })
    }

    pub fn from_env() -> Result<Config, ConfigError> {
        Config::from_lookup(|k| std::env::var(k).ok())
    }

    /// The tag on every credential this worker creates.
    pub fn tag(&self) -> String {
        format!("dialtone:{}", self.service)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> =
            pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        move |k| map.get(k).cloned()
    }

    const MINIMAL: &[(&str, &str)] = &[("TELNYX_API_KEY", "KEY123"), ("TELNYX_CONNECTION_ID", "conn")];

    #[test]
    fn defaults() {
        let c = Config::from_lookup(env(MINIMAL)).unwrap();
        assert_eq!(c.port, 8080);
        assert_eq!(c.base_url.as_str(), "https://api.telnyx.com/v2");
        assert_eq!(c.health_period, Duration::from_secs(30));
        assert_eq!(c.heartbeat_period, Duration::from_millis(100));
        assert_eq!(c.credential_ttl, Duration::from_secs(86_400));
        assert_eq!(c.max_credentials, 5);
        assert_eq!(c.tag(), "dialtone:default/telephony");
        assert_eq!(c.drain_timeout, Duration::from_secs(30));
        assert!(c.webhook_key.is_none());
        assert_eq!(c.advertise, None);
    }

    #[test]
    fn the_pod_ip_and_port_are_where_peers_reach_the_worker() {
        let mut with_ip = MINIMAL.to_vec();
        with_ip.extend([("POD_IP", "10.244.0.9"), ("PORT", "9000")]);
        assert_eq!(
            Config::from_lookup(env(&with_ip)).unwrap().advertise,
            Some("10.244.0.9:9000".parse().unwrap())
        );
        let mut bad = MINIMAL.to_vec();
        bad.push(("POD_IP", "pod-a"));
        assert_eq!(Config::from_lookup(env(&bad)).unwrap_err().var, "POD_IP");
    }

    #[test]
    fn a_webhook_key_must_be_an_ed25519_key_and_is_never_echoed() {
        let mut with_key = MINIMAL.to_vec();
        with_key.push(("TELNYX_PUBLIC_KEY", "not-a-key-SECRETISH"));
        let e = Config::from_lookup(env(&with_key)).unwrap_err();
        assert_eq!(e.var, "TELNYX_PUBLIC_KEY");
        assert!(!e.to_string().contains("SECRETISH"), "{e}");
        use base64::Engine;
        let key = ed25519_dalek::SigningKey::from_bytes(&[7; 32]).verifying_key();
        let key = base64::engine::general_purpose::STANDARD.encode(key.as_bytes());
        let mut good = MINIMAL.to_vec();
        good.push(("TELNYX_PUBLIC_KEY", key.as_str()));
        assert!(Config::from_lookup(env(&good)).unwrap().webhook_key.is_some());
    }

    #[test]
    fn missing_and_bad_values_name_the_variable() {
        let e = Config::from_lookup(env(&[("TELNYX_CONNECTION_ID", "c")])).unwrap_err();
        assert_eq!(e.to_string(), "TELNYX_API_KEY: is required");
        let mut bad = MINIMAL.to_vec();
        bad.push(("PORT", "eighty"));
        let e = Config::from_lookup(env(&bad)).unwrap_err();
        assert!(e.to_string().starts_with("PORT: must be a whole number"), "{e}");
        let mut bad = MINIMAL.to_vec();
        bad.push(("TELNYX_BASE_URL", "ftp://x"));
        assert_eq!(Config::from_lookup(env(&bad)).unwrap_err().var, "TELNYX_BASE_URL");
    }

    #[test]
    fn the_key_never_shows_in_debug_output() {
        let c = Config::from_lookup(env(MINIMAL)).unwrap();
        assert!(!format!("{c:?}").contains("KEY123"));
    }
}
