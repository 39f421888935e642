//! The operator's admin server: `/healthz` reflects watch health (not just "process alive"),
//! `/readyz` says the caches are synced (or this replica is a healthy standby), `/metrics`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use prometheus_client::registry::Registry;

/// Watches failing for longer than this make `/healthz` fail, so the kubelet restarts the operator.
pub const WATCH_FAILURE_GRACE: Duration = Duration::from_secs(30);
const WATCH_SLOTS: usize = 4;

#[derive(Clone, Default)]
pub struct Health {
    inner: Arc<HealthInner>,
}

#[derive(Default)]
struct HealthInner {
    /// Per watch: since when its every attempt has failed.
    failing_since: Mutex<[Option<Instant>; WATCH_SLOTS]>,
    synced: AtomicBool,
    /// This replica holds the leader lease (or runs without leader election).
    leading: AtomicBool,
}

impl Health {
    /// Records the latest result of watch `slot`.
    pub fn watch_result(&self, slot: usize, ok: bool) {
        if let Ok(mut slots) = self.inner.failing_since.lock() {
            if let Some(s) = slots.get_mut(slot) {
                match (ok, *s) {
                    (true, _) => *s = None,
                    (false, None) => *s = Some(Instant::now()),
                    (false, Some(_)) => {}
                }
            }
        }
    }

    pub fn set_synced(&self) {
        self.inner.synced.store(true, Ordering::Relaxed);
    }

    pub fn set_leading(&self, leading: bool) {
        self.inner.leading.store(leading, Ordering::Relaxed);
        if !leading {
            self.inner.synced.store(false, Ordering::Relaxed);
        }
    }

    /// Why the process is unhealthy, if it is.
    pub fn unhealthy(&self) -> Option<String> {
        let slots = self.inner.failing_since.lock().ok()?;
        let names = ["telephonyservices", "deployments", "services", "pods"];
        slots.iter().zip(names).find_map(|(since, name)| {
            let since = (*since)?;
            (since.elapsed() > WATCH_FAILURE_GRACE)
                .then(|| format!("watch of {name} failing for {}s", since.elapsed().as_secs()))
        })
    }

    /// Why the process is not ready, if it isn't.
    pub fn not_ready(&self) -> Option<String> {
        if let Some(why) = self.unhealthy() {
            return Some(why);
        }
        let leading = self.inner.leading.load(Ordering::Relaxed);
        (leading && !self.inner.synced.load(Ordering::Relaxed)).then(|| "caches not synced yet".to_string())
    }
}

#[derive(Clone)]
struct AdminState {
    health: Health,
    registry: Arc<Registry>,
}

pub fn router(health: Health, registry: Arc<Registry>) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(AdminState { health, registry })
}

async fn healthz(State(s): State<AdminState>) -> Response {
    check(s.health.unhealthy())
}

async fn readyz(State(s): State<AdminState>) -> Response {
    check(s.health.not_ready())
}

fn check(problem: Option<String>) -> Response {
    match problem {
        None => (StatusCode::OK, "ok\n").into_response(),
        Some(why) => (StatusCode::SERVICE_UNAVAILABLE, format!("{why}\n")).into_response(),
    }
}

async fn metrics(State(s): State<AdminState>) -> Response {
    let mut body = String::new();
    match prometheus_client::encoding::text::encode(&mut body, &s.registry) {
        Ok(()) => {
            ([(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], body)
                .into_response()
        }
        Err(_) => (StatusCode::INTERNAL_SERVER_ERROR, "metrics encoding failed\n").into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_short_watch_failure_is_tolerated_a_long_one_is_not() {
        let h = Health::default();
        h.watch_result(3, false);
        assert_eq!(h.unhealthy(), None);
        if let Ok(mut slots) = h.inner.failing_since.lock() {
            slots[3] = Some(Instant::now() - WATCH_FAILURE_GRACE - Duration::from_secs(1));
        }
        assert!(h.unhealthy().unwrap().contains("pods"));
        h.watch_result(3, true);
        assert_eq!(h.unhealthy(), None);
    }

    #[test]
    fn a_leader_is_ready_once_synced_a_standby_at_once() {
        let h = Health::default();
        assert_eq!(h.not_ready(), None, "standby");
        h.set_leading(true);
        assert!(h.not_ready().is_some());
        h.set_synced();
        assert_eq!(h.not_ready(), None);
    }
}
