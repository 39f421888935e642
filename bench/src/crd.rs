//! Installing the TelephonyService CRD before a benchmark.

use std::time::Duration;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, Patch, PatchParams};
use kube::{Client, CustomResourceExt};
use telephony_operator::crd::TelephonyService;
use testing::wait_until;

/// Server-side applies the CRD and waits until the apiserver serves it (on a fresh cluster, the
/// first create would otherwise get a 404).
pub async fn install(client: &Client) -> anyhow::Result<()> {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let name = TelephonyService::crd_name();
    let crd = telephony_operator::crd::crd_manifest();
    crds.patch(name, &PatchParams::apply("dialtone-bench").force(), &Patch::Apply(&crd)).await?;
    wait_until(Duration::from_secs(30), "CRD established", || async {
        let c = crds.get(name).await.ok()?;
        c.status?.conditions?.iter().any(|c| c.type_ == "Established" && c.status == "True").then_some(())
    })
    .await;
    let tsvcs: Api<TelephonyService> = Api::all(client.clone());
    wait_until(Duration::from_secs(30), "TelephonyServices served", || async {
        tsvcs.list(&kube::api::ListParams::default().limit(1)).await.ok().map(|_| ())
    })
    .await;
    Ok(())
}
