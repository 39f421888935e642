//! What the operator keeps of each watched object. With a thousand services the caches would
//! otherwise be most of its memory (managed fields, pod specs, image IDs, kubectl's
//! last-applied copy of every object); decisions read only what is kept here.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ContainerState, ContainerStatus, Pod, PodCondition, PodStatus, Service};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use crate::crd::TelephonyService;
use crate::desired::{APPLIED_HASH, SERVICE_LABEL};
use crate::supervisor::RESET_ANNOTATION;

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
pub fn deployment(d: &mut Deployment) {
    meta(&mut d.metadata, &[APPLIED_HASH]);
    d.spec = None;
    if let Some(s) = d.status.as_mut() {
        s.conditions = None;
    }
}

/// Compared by its applied-hash annotation only.
pub fn service(s: &mut Service) {
    meta(&mut s.metadata, &[APPLIED_HASH]);
    s.spec = None;
    s.status = None;
}

/// Liveness reads the Ready condition, container states and restart counts, and the start time.
pub fn pod(p: &mut Pod) {
    meta(&mut p.metadata, &[SERVICE_LABEL]);
    p.spec = None;
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

    fn crashed_pod() -> Pod {
        serde_json::from_value(serde_json::json!({
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
        }))
        .expect("pod JSON")
    }

    #[test]
    fn a_slim_pod_is_observed_exactly_like_the_full_one() {
        let full = crashed_pod();
        let mut slim = full.clone();
        pod(&mut slim);
        assert_eq!(PodObservation::from_pod(&slim), PodObservation::from_pod(&full));
        assert!(slim.spec.is_none() && slim.metadata.managed_fields.is_none());
        assert_eq!(slim.metadata.labels, Some(BTreeMap::from([(SERVICE_LABEL.into(), "calls".into())])));
        assert!(slim.metadata.annotations.is_none());
    }

    #[test]
    fn children_keep_what_decisions_compare() {
        let mut d: Deployment = serde_json::from_value(serde_json::json!({
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
