//! Leader election on a `coordination.k8s.io/v1` Lease: only the leader reconciles.
//!
//! kube-lease-manager competes for the Lease and renews it. Its leader keeps saying "leading"
//! while its renewals fail (0.13.1: `changed` returns the error and `watch` retries with
//! `is_leader` unchanged), so a leader cut off from the apiserver would go on reconciling after
//! the standby has taken the expired Lease: the chaos harness counted duplicated Events from
//! two leaders at once. So the leader also watches its own term ([`Leadership::lost`]): it reads
//! the Lease every second, and steps down before the term it last saw renewed runs out.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use kube::{Api, Client};
use kube_lease_manager::{LeaseManagerBuilder, LeaseParams};
use tokio::sync::watch;
use tokio::time::Instant;

/// Lease timing: a killed leader is replaced within `duration` seconds.
pub struct Election {
    pub namespace: String,
    pub lease: String,
    pub identity: String,
    pub duration_secs: u64,
}

/// Why a leader stopped leading.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Lost {
    #[error("another replica holds the leader Lease")]
    Taken,
    #[error("the leader Lease was not renewed in time")]
    NotRenewed,
    #[error("leader election stopped")]
    ElectionStopped,
}

/// This replica's place in the election.
pub struct Leadership {
    rx: watch::Receiver<bool>,
    leases: Api<Lease>,
    lease: String,
    identity: String,
    duration: Duration,
    margin: Duration,
}

/// Starts competing for the lease, once the Lease can be read (retrying until then).
pub async fn elect(client: Client, e: Election) -> Leadership {
    // Renew a third of the way before expiry; the crate requires 0 < grace < duration.
    let duration = e.duration_secs.max(2);
    let grace = (duration / 3).clamp(1, duration - 1);
    // Each replica keeps the crate's default field manager (derived from its identity): the
    // server-side-apply conflicts between distinct managers are what make the lock exclusive.
    let mut wait = FIRST_RETRY;
    let manager = loop {
        let built = LeaseManagerBuilder::new(client.clone(), &e.lease)
            .with_namespace(&e.namespace)
            .with_parameters(LeaseParams::new(&e.identity, duration, grace))
            .build()
            .await;
        match built {
            Ok(m) => break m,
            // The apiserver restarting, or a connection reset: a standby that gave up here would
            // leave no replica to take over (the chaos harness found it).
            Err(err) => {
                tracing::warn!(error = %err, retry_in_ms = wait.as_millis(), "could not reach the leader Lease; retrying");
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(LAST_RETRY);
            }
        }
    };
    let (rx, _task) = manager.watch().await;
    Leadership {
        rx,
        leases: Api::namespaced(client, &e.namespace),
        lease: e.lease,
        identity: e.identity,
        duration: Duration::from_secs(duration),
        margin: step_down_margin(grace),
    }
}

impl Leadership {
    /// Returns once this replica leads.
    pub async fn acquired(&mut self) -> Result<(), Lost> {
        self.rx.wait_for(|l| *l).await.map(|_| ()).map_err(|_| Lost::ElectionStopped)
    }

    /// Returns when this replica must stop leading: the crate says so, or the term runs out.
    pub async fn lost(&mut self) -> Lost {
        let crate_says = async {
            match self.rx.wait_for(|l| !*l).await {
                Ok(_) => Lost::Taken,
                Err(_) => Lost::ElectionStopped,
            }
        };
        tokio::select! {
            lost = crate_says => lost,
            lost = term_ends(&self.leases, &self.lease, &self.identity, self.duration, self.margin) => lost,
        }
    }
}

/// Reads the Lease every [`CHECK_EVERY`]; returns once another replica holds it, or `margin`
/// before the end of the term last seen renewed, even while a read hangs. An unreadable Lease
/// (a partition, the apiserver restarting) leaves the deadline where it was.
async fn term_ends(leases: &Api<Lease>, lease: &str, me: &str, duration: Duration, margin: Duration) -> Lost {
    // The crate has just acquired or renewed the Lease.
    let mut ends = Instant::now() + duration;
    loop {
        let read = async {
            tokio::time::sleep(CHECK_EVERY).await;
            tokio::time::timeout(CHECK_EVERY, leases.get_opt(lease)).await
        };
        tokio::select! {
            _ = tokio::time::sleep_until(ends.checked_sub(margin).unwrap_or(ends)) => return Lost::NotRenewed,
            read = read => match read {
                Ok(Ok(read)) => match read.and_then(|l| l.spec).and_then(|s| term_left(&s, me, jiff::Timestamp::now())) {
                    Some(left) => ends = Instant::now() + left,
                    None => return Lost::Taken,
                },
                Ok(Err(e)) => tracing::debug!(error = %e, "could not read the leader Lease"),
                Err(_) => tracing::debug!("reading the leader Lease timed out"),
            },
        }
    }
}

/// What is left of `me`'s term by a Lease as read at `now`: `None` when another replica holds it
/// (or nobody does); zero when the term is over or the Lease says nothing of its timing.
pub fn term_left(spec: &LeaseSpec, me: &str, now: jiff::Timestamp) -> Option<Duration> {
    if spec.holder_identity.as_deref() != Some(me) {
        return None;
    }
    let (Some(renewed), Some(secs)) = (spec.renew_time.as_ref(), spec.lease_duration_seconds) else {
        return Some(Duration::ZERO);
    };
    let ends = renewed.0.checked_add(jiff::SignedDuration::from_secs(secs.into())).ok()?;
    Some(now.duration_until(ends).try_into().unwrap_or(Duration::ZERO))
}

/// How long before its term ends a leader steps down: half the renewal grace (the crate renews
/// `grace` before expiry, so a renewal that works is seen well before), at least 0.5 s. The
/// standby takes the Lease only once the term is over, so the two never overlap unless a write
/// the old leader sent is delayed by more than this margin.
fn step_down_margin(grace_secs: u64) -> Duration {
    Duration::from_millis(grace_secs * 500).max(Duration::from_millis(500))
}

/// Retries of the Lease's first read: 0.5 s, doubling, at most 5 s apart.
const FIRST_RETRY: Duration = Duration::from_millis(500);
const LAST_RETRY: Duration = Duration::from_secs(5);
/// How often a leader reads its Lease: one small GET a second, like client-go's renewals every 2 s.
const CHECK_EVERY: Duration = Duration::from_secs(1);

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;

    /// Found by the chaos harness: a replica that couldn't reach the apiserver at start exited.
    /// With nothing listening, `elect` keeps trying instead of returning.
    #[tokio::test]
    async fn an_unreachable_apiserver_at_start_is_retried_not_fatal() {
        let config = kube::Config::new("http://127.0.0.1:1".parse().unwrap());
        let client = Client::try_from(config).unwrap();
        let e =
            Election { namespace: "ns".into(), lease: "l".into(), identity: "me".into(), duration_secs: 4 };
        let waited = tokio::time::timeout(Duration::from_millis(1200), elect(client, e)).await;
        assert!(waited.is_err(), "still retrying after 3 attempts");
    }

    fn lease(holder: Option<&str>, renewed: Option<&str>, secs: Option<i32>) -> LeaseSpec {
        LeaseSpec {
            holder_identity: holder.map(String::from),
            renew_time: renewed.map(|t| MicroTime(t.parse().unwrap())),
            lease_duration_seconds: secs,
            ..LeaseSpec::default()
        }
    }

    #[test]
    fn the_term_left_is_from_the_last_renewal() {
        let now: jiff::Timestamp = "2026-11-26T12:00:10Z".parse().unwrap();
        let renewed = Some("2026-11-26T12:00:00Z");
        assert_eq!(term_left(&lease(Some("me"), renewed, Some(15)), "me", now), Some(Duration::from_secs(5)));
        assert_eq!(term_left(&lease(Some("me"), renewed, Some(4)), "me", now), Some(Duration::ZERO), "over");
        assert_eq!(
            term_left(&lease(Some("me"), None, Some(15)), "me", now),
            Some(Duration::ZERO),
            "no renewal"
        );
        assert_eq!(term_left(&lease(Some("other"), renewed, Some(15)), "me", now), None, "taken");
        assert_eq!(term_left(&lease(None, renewed, Some(15)), "me", now), None, "released");
    }

    #[test]
    fn the_leader_steps_down_before_a_renewal_that_works_is_late() {
        // The chart's 15 s Lease (grace 5 s): renewed 5 s before expiry, stepped down at 2.5 s.
        assert_eq!(step_down_margin(5), Duration::from_millis(2500));
        assert_eq!(step_down_margin(1), Duration::from_millis(500));
        assert_eq!(step_down_margin(0), Duration::from_millis(500));
    }
}
