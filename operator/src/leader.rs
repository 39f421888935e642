//! Leader election on a `coordination.k8s.io/v1` Lease: only the leader reconciles.

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

/// Starts competing for the lease; the receiver says whether this replica leads.
pub async fn elect(client: Client, e: Election) -> anyhow::Result<watch::Receiver<bool>> {
    // Renew a third of the way before expiry; the crate requires 0 < grace < duration.
    let duration = e.duration_secs.max(2);
    let grace = (duration / 3).clamp(1, duration - 1);
    // Each replica keeps the crate's default field manager (derived from its identity): the
    // server-side-apply conflicts between distinct managers are what make the lock exclusive.
    let manager = LeaseManagerBuilder::new(client, &e.lease)
        .with_namespace(&e.namespace)
        .with_parameters(LeaseParams::new(&e.identity, duration, grace))
        .build()
        .await?;
    let (rx, _task) = manager.watch().await;
    Ok(rx)
}
