//! The children a TelephonyService should have: the worker Deployment and Service, built as plain
//! data (pure), applied with server-side apply by the controller.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec, DeploymentStrategy, RollingUpdateDeployment};
use k8s_openapi::api::core::v1::{
    Capabilities, Container, ContainerPort, EmptyDirVolumeSource, EnvVar, EnvVarSource, HTTPGetAction,
    ObjectFieldSelector, PodSecurityContext, PodSpec, PodTemplateSpec, Probe, SeccompProfile,
    SecretKeySelector, SecurityContext, Service, ServicePort, ServiceSpec, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::{Resource, ResourceExt};

use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};

use crate::crd::{SecretKeyRef, TelephonyService};
use crate::names::{app, fnv1a, APPLIED_HASH, MANAGER, SERVICE_LABEL};

/// Environment variables the operator sets on the worker (users may not override them).
pub const RESERVED_ENV: &[&str] = &[
    "TELNYX_API_KEY",
    "TELNYX_CONNECTION_ID",
    "TELNYX_BASE_URL",
    "PORT",
    "HEALTH_PERIOD_SECONDS",
    "HEARTBEAT_MILLIS",
    "DIALTONE_SERVICE",
    "DRAIN_TIMEOUT_SECONDS",
    "TELNYX_PUBLIC_KEY",
    "POD_IP",
    "TERMINATION_LOG",
    "DIALTONE_API_TOKEN",
];
/// Pod labels the operator sets (users may not override them).
pub const OPERATOR_LABELS: &[&str] =
    &[SERVICE_LABEL, app::COMPONENT, app::NAME, app::INSTANCE, app::PART_OF, app::MANAGED_BY];
const CONTAINER: &str = "worker";
/// Upper bound of the readiness probe's period.
const READINESS_PERIOD_SECONDS: i32 = 2;
/// The kubelet's default: said explicitly, as the worker is told it (`TERMINATION_LOG`).
const TERMINATION_MESSAGE_PATH: &str = "/dev/termination-log";
/// The worker image's non-root user (distroless `nonroot`).
const RUN_AS_USER: i64 = 65532;
/// What the worker's shutdown takes beyond the drain: the hangups of calls that outlived it
/// (sent together: one Telnyx request timeout, 10 s by default), up to 5 s for the operator to hear of them (the
/// worker's `drain::LINGER`), and 10 s for in-flight requests (`SHUTDOWN_GRACE_SECONDS`).
const SHUTDOWN_BEYOND_DRAIN_SECONDS: i64 = 25;

pub fn child_name(tsvc: &TelephonyService) -> String {
    child_name_of(&tsvc.name_any())
}

/// The name of the children of the service called `service`.
pub fn child_name_of(service: &str) -> String {
    format!("{service}-worker")
}

/// Labels that select the worker pods of one service (immutable once the Deployment exists).
pub fn selector_labels(tsvc: &TelephonyService) -> BTreeMap<String, String> {
    BTreeMap::from([
        (SERVICE_LABEL.to_string(), tsvc.name_any()),
        (app::COMPONENT.to_string(), "worker".to_string()),
    ])
}

fn labels(tsvc: &TelephonyService) -> BTreeMap<String, String> {
    let mut l = selector_labels(tsvc);
    l.extend([
        (app::NAME.to_string(), "telephony-pod".to_string()),
        (app::INSTANCE.to_string(), tsvc.name_any()),
        (app::PART_OF.to_string(), "dialtone".to_string()),
        (app::MANAGED_BY.to_string(), MANAGER.to_string()),
    ]);
    l
}

fn owner(tsvc: &TelephonyService) -> Option<OwnerReference> {
    tsvc.controller_owner_ref(&())
}

fn meta(tsvc: &TelephonyService) -> ObjectMeta {
    ObjectMeta {
        name: Some(child_name(tsvc)),
        namespace: tsvc.namespace(),
        labels: Some(labels(tsvc)),
        owner_references: owner(tsvc).map(|o| vec![o]),
        ..Default::default()
    }
}

/// In-cluster URL of the worker Service.
pub fn endpoint(tsvc: &TelephonyService) -> String {
    let ns = tsvc.namespace().unwrap_or_else(|| "default".into());
    format!("http://{}.{}.svc:{}", child_name(tsvc), ns, tsvc.spec.port)
}

/// The worker Deployment, with `replicas` workers (0 while the circuit is open).
pub fn deployment(tsvc: &TelephonyService, replicas: i32) -> Deployment {
    let spec = &tsvc.spec;
    let mut pod_labels = spec.pod.labels.clone();
    pod_labels.extend(labels(tsvc)); // ours win: the selector must match
    let mut deployment = Deployment {
        metadata: meta(tsvc),
        spec: Some(DeploymentSpec {
            replicas: Some(replicas),
            selector: LabelSelector { match_labels: Some(selector_labels(tsvc)), ..Default::default() },
            // Keep serving while rolling: bring the new worker up before the old one goes.
            strategy: Some(DeploymentStrategy {
                type_: Some("RollingUpdate".into()),
                rolling_update: Some(RollingUpdateDeployment {
                    max_surge: Some(IntOrString::Int(1)),
                    max_unavailable: Some(IntOrString::Int(0)),
                }),
            }),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(pod_labels),
                    annotations: (!spec.pod.annotations.is_empty()).then(|| spec.pod.annotations.clone()),
                    ..Default::default()
                }),
                spec: Some(pod_spec(tsvc)),
            },
            ..Default::default()
        }),
        status: None,
    };
    stamp(&mut deployment);
    deployment
}

fn pod_spec(tsvc: &TelephonyService) -> PodSpec {
    let pod = &tsvc.spec.pod;
    PodSpec {
        containers: vec![container(tsvc)],
        // The worker never talks to the Kubernetes API.
        automount_service_account_token: Some(false),
        // The kubelet's SIGKILL must not come before the drain is over.
        termination_grace_period_seconds: Some(
            i64::from(tsvc.spec.drain.timeout_seconds) + SHUTDOWN_BEYOND_DRAIN_SECONDS,
        ),
        service_account_name: pod.service_account_name.clone(),
        priority_class_name: pod.priority_class_name.clone(),
        node_selector: (!pod.node_selector.is_empty()).then(|| pod.node_selector.clone()),
        tolerations: (!pod.tolerations.is_empty()).then(|| pod.tolerations.clone()),
        affinity: pod.affinity.clone(),
        security_context: Some(PodSecurityContext {
            run_as_non_root: Some(true),
            run_as_user: Some(RUN_AS_USER),
            run_as_group: Some(RUN_AS_USER),
            seccomp_profile: Some(SeccompProfile { type_: "RuntimeDefault".into(), ..Default::default() }),
            ..Default::default()
        }),
        volumes: Some(vec![Volume {
            name: "tmp".into(),
            empty_dir: Some(EmptyDirVolumeSource { size_limit: None, medium: None }),
            ..Default::default()
        }]),
        ..Default::default()
    }
}

fn container(tsvc: &TelephonyService) -> Container {
    let spec = &tsvc.spec;
    let health = &spec.health;
    let probe = |path: &str, period: i32| Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.to_string()),
            port: IntOrString::String("http".into()),
            ..Default::default()
        }),
        period_seconds: Some(period),
        timeout_seconds: Some(health.timeout_seconds),
        failure_threshold: Some(health.failure_threshold),
        ..Default::default()
    };
    Container {
        name: CONTAINER.into(),
        image: Some(spec.image.clone()),
        ports: Some(vec![ContainerPort {
            name: Some("http".into()),
            container_port: spec.port,
            protocol: Some("TCP".into()),
            ..Default::default()
        }]),
        env: Some(env(tsvc)),
        resources: Some(spec.resources.clone()),
        liveness_probe: Some(probe("/healthz", health.period_seconds)),
        // Readiness is what the app's traffic follows, and /readyz only reads the worker's state
        // (no Telnyx call): look every 2 s. The kubelet delays a new pod's first probe by a random
        // part of the period, so at 10 s a new worker waited up to 10 s to become Ready.
        readiness_probe: Some(probe("/readyz", health.period_seconds.min(READINESS_PERIOD_SECONDS))),
        security_context: Some(SecurityContext {
            allow_privilege_escalation: Some(false),
            read_only_root_filesystem: Some(true),
            run_as_non_root: Some(true),
            capabilities: Some(Capabilities { drop: Some(vec!["ALL".into()]), ..Default::default() }),
            ..Default::default()
        }),
        // The log tail becomes the termination message of a container that exits with an error:
        // the operator shows it in the failure ("invalid configuration: TELNYX_TIMEOUT_MS ...").
        termination_message_path: Some(TERMINATION_MESSAGE_PATH.into()),
        termination_message_policy: Some("FallbackToLogsOnError".into()),
        volume_mounts: Some(vec![VolumeMount {
            name: "tmp".into(),
            mount_path: "/tmp".into(),
            ..Default::default()
        }]),
        ..Default::default()
    }
}

/// The worker's environment: [`RESERVED_ENV`] from the spec, then the user's extra variables.
fn env(tsvc: &TelephonyService) -> Vec<EnvVar> {
    let spec = &tsvc.spec;
    let plain =
        |name: &str, value: String| EnvVar { name: name.into(), value: Some(value), ..Default::default() };
    let mut env = vec![
        from_secret("TELNYX_API_KEY", &spec.telnyx.api_key_secret_ref),
        plain("TELNYX_CONNECTION_ID", spec.telnyx.connection_id.clone()),
        plain("TELNYX_BASE_URL", spec.telnyx.base_url.clone()),
        plain("PORT", spec.port.to_string()),
        plain("HEALTH_PERIOD_SECONDS", spec.health.period_seconds.to_string()),
        plain("HEARTBEAT_MILLIS", spec.health.heartbeat_millis.to_string()),
        plain("DIALTONE_SERVICE", format!("{}/{}", tsvc.namespace().unwrap_or_default(), tsvc.name_any())),
        plain("DRAIN_TIMEOUT_SECONDS", spec.drain.timeout_seconds.to_string()),
        // A drain that ended live calls says so in the termination message (an Event follows).
        plain("TERMINATION_LOG", TERMINATION_MESSAGE_PATH.into()),
        // Where the other workers hand this one the webhooks of the calls it placed.
        EnvVar {
            name: "POD_IP".into(),
            value_from: Some(EnvVarSource {
                field_ref: Some(ObjectFieldSelector { field_path: "status.podIP".into(), api_version: None }),
                ..Default::default()
            }),
            ..Default::default()
        },
    ];
    if let Some(key) = &spec.telnyx.webhook_public_key_secret_ref {
        env.push(from_secret("TELNYX_PUBLIC_KEY", key));
    }
    if let Some(auth) = &spec.auth {
        env.push(from_secret("DIALTONE_API_TOKEN", &auth.token_secret_ref));
    }
    env.extend(spec.pod.env.iter().cloned());
    env
}

fn from_secret(name: &str, secret: &SecretKeyRef) -> EnvVar {
    EnvVar {
        name: name.into(),
        value_from: Some(EnvVarSource {
            secret_key_ref: Some(SecretKeySelector {
                name: secret.name.clone(),
                key: secret.key.clone(),
                optional: Some(false),
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The workers' PodDisruptionBudget: with more than one worker, voluntary evictions (a node
/// drain) take them one at a time, each draining its calls while the others serve. None with
/// one worker or none: a budget there would block a node drain for good.
pub fn disruption_budget(tsvc: &TelephonyService, replicas: i32) -> Option<PodDisruptionBudget> {
    (replicas > 1).then(|| PodDisruptionBudget {
        metadata: meta(tsvc),
        spec: Some(PodDisruptionBudgetSpec {
            max_unavailable: Some(IntOrString::Int(1)),
            selector: Some(LabelSelector { match_labels: Some(selector_labels(tsvc)), ..Default::default() }),
            ..Default::default()
        }),
        status: None,
    })
}

/// The worker Service (ClusterIP) the app calls.
pub fn service(tsvc: &TelephonyService) -> Service {
    let mut service = Service {
        metadata: meta(tsvc),
        spec: Some(ServiceSpec {
            selector: Some(selector_labels(tsvc)),
            ports: Some(vec![ServicePort {
                name: Some("http".into()),
                port: tsvc.spec.port,
                target_port: Some(IntOrString::String("http".into())),
                protocol: Some("TCP".into()),
                ..Default::default()
            }]),
            type_: Some("ClusterIP".into()),
            ..Default::default()
        }),
        status: None,
    };
    stamp(&mut service);
    service
}

/// The Deployment rolled back to `template` (an older ReplicaSet's, as `kubectl rollout undo`
/// takes it): the Deployment controller finds that ReplicaSet by its template and scales it
/// back, and the failing one to 0. The applied hash names the rollback, so the next spec
/// generation is applied over it.
pub fn rolled_back(
    tsvc: &TelephonyService,
    replicas: i32,
    mut template: PodTemplateSpec,
    hash: &str,
) -> Deployment {
    if let Some(labels) = template.metadata.as_mut().and_then(|m| m.labels.as_mut()) {
        labels.remove(crate::liveness::TEMPLATE_LABEL);
    }
    let mut d = deployment(tsvc, replicas);
    if let Some(spec) = d.spec.as_mut() {
        spec.template = template;
    }
    let annotations = d.metadata.annotations.get_or_insert_with(Default::default);
    annotations.insert(APPLIED_HASH.into(), format!("rolled-back-to-{hash}"));
    d
}

/// Records a hash of the object's content in an annotation, so the controller can skip applying
/// what is already there.
fn stamp<K: Resource + serde::Serialize>(obj: &mut K) {
    let hash = content_hash(obj);
    obj.meta_mut().annotations.get_or_insert_with(Default::default).insert(APPLIED_HASH.into(), hash);
}

/// The applied-hash annotation of an existing child.
pub fn applied_hash<K: Resource>(obj: &K) -> Option<&str> {
    obj.meta().annotations.as_ref()?.get(APPLIED_HASH).map(String::as_str)
}

/// Hash of the JSON form.
fn content_hash<T: serde::Serialize>(obj: &T) -> String {
    format!("{:016x}", fnv1a(&serde_json::to_vec(obj).unwrap_or_default()))
}

#[cfg(test)]
mod tests;
