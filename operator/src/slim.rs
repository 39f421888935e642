//! What the operator keeps of each watched object. With a thousand services the caches would
//! otherwise be most of its memory (managed fields, pod specs, image IDs, kubectl's
//! last-applied copy of every object); decisions read only what is kept here.
//!
//! Pods and Deployments are cached as [`Cached`]: metadata and status only. A spec is never even
//! decoded, and a k8s-openapi `Pod` or `Deployment` holds its spec inline (2.2 KB per object
//! even when `None`). Services are cached as metadata only, which the API server sends alone.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::marker::PhantomData;

use k8s_openapi::api::apps::v1::{Deployment, DeploymentStatus};
use k8s_openapi::api::core::v1::{ContainerState, ContainerStatus, Pod, PodCondition, PodStatus, Service};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference, Time};
use kube::core::PartialObjectMeta;
use kube::Resource;
use serde::{Deserialize, Deserializer};

use crate::crd::TelephonyService;
use crate::desired::{APPLIED_HASH, SERVICE_LABEL};
use crate::supervisor::RESET_ANNOTATION;

/// An object of kind `K` as cached: its metadata and status `S`, no spec.
#[derive(Clone, Debug)]
pub struct Cached<K, S> {
    pub metadata: ObjectMeta,
    pub status: Option<S>,
    kind: PhantomData<fn() -> K>,
}

pub type CachedPod = Cached<Pod, PodStatus>;
pub type CachedDeployment = Cached<Deployment, DeploymentStatus>;
pub type CachedService = PartialObjectMeta<Service>;

impl<K, S> Cached<K, S> {
    pub fn new(metadata: ObjectMeta, status: Option<S>) -> Self {
        Cached { metadata, status, kind: PhantomData }
    }
}

impl CachedDeployment {
    pub fn to_deployment(&self) -> Deployment {
        Deployment { metadata: self.metadata.clone(), spec: None, status: self.status.clone() }
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
    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }
    fn meta_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}

impl<'de, K, S: Deserialize<'de>> Deserialize<'de> for Cached<K, S> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // Unknown fields (`spec`, `managedFields`) are skipped, not decoded.
        #[derive(Deserialize)]
        struct Wire<S> {
            #[serde(default)]
            metadata: Meta,
            #[serde(default = "none")]
            status: Option<S>,
        }
        fn none<S>() -> Option<S> {
            None
        }
        let w = Wire::<S>::deserialize(d)?;
        Ok(Cached::new(w.metadata.into(), w.status))
    }
}

/// The metadata fields any cached object keeps (managed fields are never decoded).
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

/// Identity, ownership and lifecycle of an object, plus the labels and annotations in `keep`.
fn meta(m: &mut ObjectMeta, keep: &[&str]) {
    let only = |map: Option<BTreeMap<String, String>>| {
        let kept: BTreeMap<String, String> =
            map.unwrap_or_default().into_iter().filter(|(k, _)| keep.contains(&k.as_str())).collect();
        (!kept.is_empty()).then_some(kept)
    };
    *m = ObjectMeta {
        name: m.name.take(),
        namespace: m.namespace.take(),
        uid: m.uid.take(),
        resource_version: m.resource_version.take(),
        generation: m.generation.take(),
        creation_timestamp: m.creation_timestamp.take(),
        deletion_timestamp: m.deletion_timestamp.take(),
        owner_references: m.owner_references.take(),
        labels: only(m.labels.take()),
        annotations: only(m.annotations.take()),
        ..Default::default()
    };
}

/// The spec and status are all read; of the metadata, the reset annotation (labels were already
/// matched by the watch's selector).
pub fn telephony_service(t: &mut TelephonyService) {
    meta(&mut t.metadata, &[RESET_ANNOTATION]);
}

/// Compared by its applied-hash annotation; its status tells how a rollout is going.
pub fn deployment(d: &mut CachedDeployment) {
    meta(&mut d.metadata, &[APPLIED_HASH]);
    if let Some(s) = d.status.as_mut() {
        s.conditions = None;
    }
}

/// Compared by its applied-hash annotation only.
pub fn service(s: &mut CachedService) {
    meta(&mut s.metadata, &[APPLIED_HASH]);
    s.types = None;
}

/// Liveness reads the Ready condition, container states and restart counts, and the start time.
pub fn pod(p: &mut CachedPod) {
    meta(&mut p.metadata, &[SERVICE_LABEL]);
    let Some(s) = p.status.take() else { return };
    let ready = s.conditions.into_iter().flatten().filter(|c| c.type_ == "Ready").map(|c| PodCondition {
        type_: c.type_,
        status: c.status,
        last_transition_time: c.last_transition_time,
        ..Default::default()
    });
    let containers = s.container_statuses.map(|cs| {
        cs.into_iter()
            .map(|c| ContainerStatus {
                name: c.name,
                ready: c.ready,
                restart_count: c.restart_count,
                state: c.state.map(state),
                last_state: c.last_state.map(state),
                ..Default::default()
            })
            .collect()
    });
    p.status = Some(PodStatus {
        phase: s.phase,
        start_time: s.start_time,
        conditions: Some(ready.collect()),
        container_statuses: containers,
        ..Default::default()
    });
}

fn state(mut s: ContainerState) -> ContainerState {
    if let Some(t) = s.terminated.as_mut() {
        t.container_id = None;
        t.message = None;
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::liveness::PodObservation;

    fn crashed_pod() -> serde_json::Value {
        serde_json::json!({
            "metadata": {
                "name": "calls-worker-1", "namespace": "shop", "uid": "u1",
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
    fn a_slim_pod_is_observed_exactly_like_the_full_one() {
        let full: Pod = serde_json::from_value(crashed_pod()).expect("pod JSON");
        let mut slim: CachedPod = serde_json::from_value(crashed_pod()).expect("cached pod JSON");
        assert!(slim.metadata.managed_fields.is_none(), "managed fields are never decoded");
        pod(&mut slim);
        assert_eq!(
            PodObservation::new(&slim.metadata, slim.status.as_ref()),
            PodObservation::from_pod(&full)
        );
        assert_eq!(slim.metadata.labels, Some(BTreeMap::from([(SERVICE_LABEL.into(), "calls".into())])));
        assert!(slim.metadata.annotations.is_none());
        assert_eq!(slim.metadata.creation_timestamp, full.metadata.creation_timestamp);
    }

    #[test]
    fn cached_objects_are_read_from_their_kinds_api() {
        assert_eq!(CachedPod::url_path(&(), Some("shop")), "/api/v1/namespaces/shop/pods");
        assert_eq!(CachedDeployment::url_path(&(), None), "/apis/apps/v1/deployments");
        assert!(!CachedPod::metadata_api() && CachedService::metadata_api());
    }

    #[test]
    fn a_pod_without_status_or_metadata_still_decodes() {
        let p: CachedPod = serde_json::from_value(serde_json::json!({ "kind": "Pod" })).expect("decodes");
        assert!(p.status.is_none() && p.metadata.name.is_none());
    }

    #[test]
    fn children_keep_what_decisions_compare() {
        let mut d: CachedDeployment = serde_json::from_value(serde_json::json!({
            "metadata": { "name": "calls-worker", "generation": 3, "annotations": { APPLIED_HASH: "h1", "other": "x" },
                          "ownerReferences": [{ "apiVersion": "dialtone.dev/v1alpha1", "kind": "TelephonyService",
                                                "name": "calls", "uid": "u", "controller": true }] },
            "spec": { "selector": {}, "template": {} },
            "status": { "observedGeneration": 3, "updatedReplicas": 2, "readyReplicas": 2,
                        "conditions": [{ "type": "Available", "status": "True" }] }
        }))
        .expect("deployment JSON");
        deployment(&mut d);
        assert_eq!(crate::desired::applied_hash(&d), Some("h1"));
        assert_eq!(d.metadata.generation, Some(3));
        assert_eq!(d.metadata.owner_references.as_ref().map(Vec::len), Some(1));
        let status = d.status.unwrap_or_default();
        assert_eq!((status.observed_generation, status.updated_replicas), (Some(3), Some(2)));
        assert!(status.conditions.is_none());

        let mut s: CachedService = serde_json::from_value(serde_json::json!({
            "apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMetadata",
            "metadata": { "name": "calls-worker", "annotations": { APPLIED_HASH: "h2", "other": "x" } }
        }))
        .expect("service metadata JSON");
        service(&mut s);
        assert_eq!(crate::desired::applied_hash(&s), Some("h2"));
        assert_eq!(s.metadata.annotations.map(|a| a.len()), Some(1));
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
            (RESET_ANNOTATION.to_string(), "1".to_string()),
            ("kubectl.kubernetes.io/last-applied-configuration".to_string(), "{...}".to_string()),
        ]));
        let spec = t.spec.clone();
        telephony_service(&mut t);
        assert_eq!(
            t.metadata.annotations.map(|a| a.into_keys().collect::<Vec<_>>()),
            Some(vec![RESET_ANNOTATION.to_string()])
        );
        assert_eq!(t.spec, spec);
    }
}
