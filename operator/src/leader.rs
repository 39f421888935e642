//! Leader election on a `coordination.k8s.io/v1` Lease: only the leader reconciles.

use std::time::Duration;

use kube::Client;
use kube_lease_manager::{LeaseManagerBuilder, LeaseParams};
use tokio::sync::watch;

/// Lease timing: a killed leader is replaced within `duration` seconds.
pub struct Election {
    pub namespace: String,
    pub lease: String,
    pub identity: String,
    pub duration_secs: u64,
}

/// Starts competing for the lease, once the Lease can be read (retrying until then); the
/// receiver says whether this replica leads.
pub async fn elect(client: Client, e: Election) -> watch::Receiver<bool> {
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
    rx
}

/// Retries of the Lease's first read: 0.5 s, doubling, at most 5 s apart.
const FIRST_RETRY: Duration = Duration::from_millis(500);
const LAST_RETRY: Duration = Duration::from_secs(5);

#[cfg(test)]
mod tests {
    use super::*;

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
}
