//! What the operator keeps of each watched object. With a thousand services the caches would
//! otherwise be most of its memory (managed fields, pod specs, image IDs, kubectl's
//! last-applied copy of every object); decisions read only what is kept here.
//!
//! Children (Deployments, Services, Pods) are decoded straight into [`Cached`]: their identity,
//! the TelephonyService they belong to, the applied hash, and what decisions read of their
//! status. A pod is kept as its liveness observation. The rest of each object is decoded once,
//! while it is read, and never stored (a k8s-openapi `Pod` is 2.2 KB inline even without a spec).
//! Services are read as metadata only, which the API server sends alone.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::marker::PhantomData;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Pod, PodStatus, Service};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference, Time};
use kube::core::PartialObjectMeta;
use kube::Resource;
use serde::de::{DeserializeOwned, IgnoredAny};
use serde::{Deserialize, Deserializer};

use crate::crd::TelephonyService;
use crate::liveness::PodObservation;
use crate::names::{APPLIED_HASH, RESET_RESTART_BUDGET, SERVICE_LABEL};
use crate::supervisor::{Child, Rollout};

/// An object of kind `K` as cached; `S` is what decisions read of its status.
#[derive(Clone, Debug)]
pub struct Cached<K, S> {
    /// Its identity only (see [`identity`]).
    pub metadata: ObjectMeta,
    /// The TelephonyService it belongs to: its controller owner, or for a pod (which a ReplicaSet
    /// owns) its service label.
    pub owner: Option<String>,
    /// The hash of what the operator applied, from its annotation.
    pub applied_hash: Option<String>,
    pub status: S,
    kind: PhantomData<fn() -> K>,
}

pub type CachedPod = Cached<Pod, PodObservation>;
pub type CachedDeployment = Cached<Deployment, Rollout>;
pub type CachedService = Cached<PartialObjectMeta<Service>, ()>;

/// What a kind's cached status is made of.
pub trait FromStatus: Sized {
    /// The status as the API sends it (decoded, read, dropped).
    type Wire: DeserializeOwned;
    fn from_status(metadata: &ObjectMeta, status: Option<Self::Wire>) -> Self;
}

impl FromStatus for PodObservation {
    type Wire = PodStatus;
    fn from_status(metadata: &ObjectMeta, status: Option<PodStatus>) -> Self {
        PodObservation::new(metadata, status)
    }
}

impl FromStatus for Rollout {
    type Wire = Rollout;
    fn from_status(_: &ObjectMeta, status: Option<Rollout>) -> Self {
        status.unwrap_or_default()
    }
}

impl FromStatus for () {
    type Wire = IgnoredAny;
    fn from_status(_: &ObjectMeta, _: Option<IgnoredAny>) -> Self {}
}

impl<K, S> Cached<K, S> {
    /// Keeps what decisions read of a whole object's parts.
    pub fn new(mut metadata: ObjectMeta, status: S) -> Self {
        let owner = metadata
            .owner_references
            .iter()
            .flatten()
            .find(|o| o.controller == Some(true) && o.kind == "TelephonyService")
            .map(|o| o.name.clone())
            .or_else(|| metadata.labels.as_mut()?.remove(SERVICE_LABEL));
        let applied_hash = metadata.annotations.as_mut().and_then(|a| a.remove(APPLIED_HASH));
        Cached { metadata: identity(metadata), owner, applied_hash, status, kind: PhantomData }
    }
}

impl CachedDeployment {
    /// What decisions read of the worker Deployment.
    pub fn child(&self) -> Child {
        Child {
            applied_hash: self.applied_hash.clone(),
            generation: self.metadata.generation,
            rollout: self.status.clone(),
        }
    }
}

impl CachedService {
    /// What decisions read of the worker Service.
    pub fn child(&self) -> Child {
        Child {
            applied_hash: self.applied_hash.clone(),
            generation: self.metadata.generation,
            ..Default::default()
        }
    }
}

/// Read as `K` from the API.
impl<K, S> Resource for Cached<K, S>
where
    K: Resource<DynamicType = ()>,
{
    type DynamicType = ();
    type Scope = K::Scope;

    fn kind(dt: &()) -> Cow<'_, str> {
        K::kind(dt)
    }
    fn group(dt: &()) -> Cow<'_, str> {
        K::group(dt)
    }
    fn version(dt: &()) -> Cow<'_, str> {
        K::version(dt)
    }
    fn plural(dt: &()) -> Cow<'_, str> {
        K::plural(dt)
    }
    fn metadata_api() -> bool {
        K::metadata_api()
    }
    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }
    fn meta_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}

impl<'de, K, S: FromStatus> Deserialize<'de> for Cached<K, S> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // Unknown fields (`spec`, `managedFields`) are skipped, not decoded.
        #[derive(Deserialize)]
        struct Wire<W> {
            #[serde(default)]
            metadata: Meta,
            #[serde(default = "none")]
            status: Option<W>,
        }
        fn none<W>() -> Option<W> {
            None
        }
        let w = Wire::<S::Wire>::deserialize(d)?;
        let metadata = ObjectMeta::from(w.metadata);
        let status = S::from_status(&metadata, w.status);
        Ok(Cached::new(metadata, status))
    }
}

/// The metadata fields read (managed fields are never decoded).
#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct Meta {
    name: Option<String>,
    namespace: Option<String>,
    uid: Option<String>,
    resource_version: Option<String>,
    generation: Option<i64>,
    creation_timestamp: Option<Time>,
    deletion_timestamp: Option<Time>,
    owner_references: Option<Vec<OwnerReference>>,
    labels: Option<BTreeMap<String, String>>,
    annotations: Option<BTreeMap<String, String>>,
}

impl From<Meta> for ObjectMeta {
    fn from(m: Meta) -> ObjectMeta {
        ObjectMeta {
            name: m.name,
            namespace: m.namespace,
            uid: m.uid,
            resource_version: m.resource_version,
            generation: m.generation,
            creation_timestamp: m.creation_timestamp,
            deletion_timestamp: m.deletion_timestamp,
            owner_references: m.owner_references,
            labels: m.labels,
            annotations: m.annotations,
            ..Default::default()
        }
    }
}

/// Name, namespace, uid, generation, deletion, and the resourceVersion a watch resumes from.
fn identity(m: ObjectMeta) -> ObjectMeta {
    ObjectMeta {
        name: m.name,
        namespace: m.namespace,
        uid: m.uid,
        resource_version: m.resource_version,
        generation: m.generation,
        deletion_timestamp: m.deletion_timestamp,
        ..Default::default()
    }
}

/// The operator's cache: the spec and status are all read; of the metadata, its identity and the
/// reset annotation (labels were already matched by the watch's selector).
pub fn telephony_service_for_reconcile(t: &mut TelephonyService) {
    let mut m = std::mem::take(&mut t.metadata);
    let reset = m.annotations.as_mut().and_then(|a| a.remove(RESET_RESTART_BUDGET));
    // The creation time bounds how long a new service's first status waits (`status::first_held`).
    let creation_timestamp = m.creation_timestamp.take();
    t.metadata = ObjectMeta {
        annotations: reset.map(|r| BTreeMap::from([(RESET_RESTART_BUDGET.to_string(), r)])),
        creation_timestamp,
        ..identity(m)
    };
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::liveness::PodObservation;
    use crate::supervisor::Rollout;

    fn crashed_pod() -> serde_json::Value {
        serde_json::json!({
            "metadata": {
                "name": "calls-worker-1", "namespace": "shop", "uid": "u1", "resourceVersion": "42",
                "labels": { SERVICE_LABEL: "calls", "pod-template-hash": "abc" },
                "annotations": { "kubectl.kubernetes.io/last-applied-configuration": "{...}" },
                "managedFields": [{ "manager": "kubelet", "operation": "Update" }],
                "creationTimestamp": "2026-11-24T00:00:00Z"
            },
            "spec": { "containers": [{ "name": "worker", "image": "registry.example.com/w:1" }] },
            "status": {
                "phase": "Running", "podIP": "10.0.0.1", "startTime": "2026-11-24T00:00:01Z",
                "conditions": [
                    { "type": "Initialized", "status": "True" },
                    { "type": "Ready", "status": "False", "reason": "ContainersNotReady",
                      "lastTransitionTime": "2026-11-24T00:00:05Z" }
                ],
                "containerStatuses": [{
                    "name": "worker", "ready": false, "restartCount": 2, "image": "w:1", "imageID": "sha256:x",
                    "state": { "waiting": { "reason": "CrashLoopBackOff", "message": "back-off 10s" } },
                    "lastState": { "terminated": { "exitCode": 137, "reason": "OOMKilled", "containerID": "c1" } }
                }]
            }
        })
    }

    #[test]
    fn a_cached_pod_is_its_observation_and_owner() {
        let full: Pod = serde_json::from_value(crashed_pod()).expect("pod JSON");
        let cached: CachedPod = serde_json::from_value(crashed_pod()).expect("cached pod JSON");
        assert_eq!(cached.status, PodObservation::from_pod(&full));
        assert_eq!(cached.owner.as_deref(), Some("calls"));
        assert_eq!(cached.applied_hash, None);
        assert_eq!(cached.metadata.uid.as_deref(), Some("u1"));
        assert_eq!(
            cached.metadata,
            ObjectMeta {
                name: Some("calls-worker-1".into()),
                namespace: Some("shop".into()),
                uid: Some("u1".into()),
                resource_version: Some("42".into()),
                ..Default::default()
            },
            "labels, annotations, managed fields and timestamps are not kept"
        );
    }

    #[test]
    fn cached_objects_are_read_from_their_kinds_api() {
        assert_eq!(CachedPod::url_path(&(), Some("shop")), "/api/v1/namespaces/shop/pods");
        assert_eq!(CachedDeployment::url_path(&(), None), "/apis/apps/v1/deployments");
        assert!(!CachedPod::metadata_api() && !CachedDeployment::metadata_api());
        assert!(CachedService::metadata_api(), "Services are read as metadata only");
    }

    #[test]
    fn a_pod_without_status_or_metadata_still_decodes() {
        let p: CachedPod = serde_json::from_value(serde_json::json!({ "kind": "Pod" })).expect("decodes");
        assert!(p.metadata.name.is_none() && p.owner.is_none());
        assert!(!p.status.ready && p.status.restarts == 0);
    }

    #[test]
    fn children_keep_what_decisions_compare() {
        let d: CachedDeployment = serde_json::from_value(serde_json::json!({
            "metadata": { "name": "calls-worker", "namespace": "shop", "generation": 3,
                          "resourceVersion": "7",
                          "labels": { SERVICE_LABEL: "renamed-by-hand" },
                          "annotations": { APPLIED_HASH: "h1", "other": "x" },
                          "ownerReferences": [{ "apiVersion": "dialtone.dev/v1alpha1", "kind": "TelephonyService",
                                                "name": "calls", "uid": "u", "controller": true }] },
            "spec": { "selector": {}, "template": {} },
            "status": { "observedGeneration": 3, "updatedReplicas": 2, "readyReplicas": 2,
                        "conditions": [{ "type": "Available", "status": "True" }] }
        }))
        .expect("deployment JSON");
        assert_eq!(d.owner.as_deref(), Some("calls"), "the controller owner wins over the label");
        assert_eq!(d.applied_hash.as_deref(), Some("h1"));
        assert_eq!(d.status, Rollout { observed_generation: Some(3), updated_replicas: Some(2) });
        let seen = d.child();
        assert_eq!(seen.applied_hash.as_deref(), Some("h1"));
        assert_eq!(seen.generation, Some(3));
        assert_eq!((seen.rollout.observed_generation, seen.rollout.updated_replicas), (Some(3), Some(2)));

        let s: CachedService = serde_json::from_value(serde_json::json!({
            "apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMetadata",
            "metadata": { "name": "calls-worker", "annotations": { APPLIED_HASH: "h2", "other": "x" },
                          "ownerReferences": [{ "apiVersion": "dialtone.dev/v1alpha1", "kind": "TelephonyService",
                                                "name": "calls", "uid": "u", "controller": true }] }
        }))
        .expect("service metadata JSON");
        assert_eq!(s.owner.as_deref(), Some("calls"));
        assert_eq!(s.child().applied_hash.as_deref(), Some("h2"));
    }

    #[test]
    fn a_telephony_service_keeps_its_reset_annotation_only() {
        let mut t = TelephonyService::new(
            "calls",
            serde_json::from_value(serde_json::json!({
                "image": "w:1", "telnyx": { "apiKeySecretRef": { "name": "telnyx" }, "connectionId": "c" }
            }))
            .expect("spec"),
        );
        t.metadata.annotations = Some(BTreeMap::from([
            (RESET_RESTART_BUDGET.to_string(), "1".to_string()),
            ("kubectl.kubernetes.io/last-applied-configuration".to_string(), "{...}".to_string()),
        ]));
        let spec = t.spec.clone();
        telephony_service_for_reconcile(&mut t);
        assert_eq!(
            t.metadata.annotations.map(|a| a.into_keys().collect::<Vec<_>>()),
            Some(vec![RESET_RESTART_BUDGET.to_string()])
        );
        assert_eq!(t.spec, spec);
    }
}
