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
    let grace = (e.duration_secs / 3).max(1);
    let manager = LeaseManagerBuilder::new(client, &e.lease)
        .with_namespace(&e.namespace)
        .with_parameters(LeaseParams::new(&e.identity, e.duration_secs, grace))
        .with_field_manager("dialtone-operator-leader")
        .build()
        .await?;
    let (rx, _task) = manager.watch().await;
    Ok(rx)
}
