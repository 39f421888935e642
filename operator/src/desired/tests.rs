use super::*;
use dialtone_api::fixtures::sample;

fn container(d: &Deployment) -> Container {
    d.spec.as_ref().unwrap().template.spec.as_ref().unwrap().containers[0].clone()
}

fn env(c: &Container, name: &str) -> EnvVar {
    c.env.as_ref().unwrap().iter().find(|e| e.name == name).cloned().unwrap()
}

#[test]
fn defaults_from_the_schema_apply_when_deserializing() {
    let t = sample();
    assert_eq!(t.spec.replicas, 1);
    assert_eq!(t.spec.port, 8080);
    assert_eq!(t.spec.telnyx.api_key_secret_ref.key, "apiKey");
    assert_eq!(t.spec.telnyx.base_url, "https://api.telnyx.com/v2");
    assert_eq!(t.spec.health.period_seconds, 30);
    assert_eq!(t.spec.restart_budget.max_restarts, 3);
    assert_eq!(t.spec.backoff.initial_seconds, 5);
}

#[test]
fn deployment_is_owned_named_and_labelled() {
    let d = deployment(&sample(), 1);
    assert_eq!(d.metadata.name.as_deref(), Some("calls-worker"));
    assert_eq!(d.metadata.namespace.as_deref(), Some("shop"));
    let owner = &d.metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.name.as_str(), owner.controller),
        ("TelephonyService", "calls", Some(true))
    );
    let labels = d.metadata.labels.as_ref().unwrap();
    assert_eq!(labels[SERVICE_LABEL], "calls");
    assert_eq!(labels[crate::names::app::MANAGED_BY], crate::names::MANAGER);
    let tpl_labels = d.spec.as_ref().unwrap().template.metadata.as_ref().unwrap().labels.clone().unwrap();
    for (k, v) in selector_labels(&sample()) {
        assert_eq!(tpl_labels[&k], v, "pods must match the selector");
    }
}

#[test]
fn api_key_comes_from_the_secret_never_as_a_value() {
    let c = container(&deployment(&sample(), 1));
    let key = env(&c, "TELNYX_API_KEY");
    assert!(key.value.is_none());
    let sel = key.value_from.unwrap().secret_key_ref.unwrap();
    assert_eq!((sel.name.as_str(), sel.key.as_str()), ("telnyx", "apiKey"));
    assert_eq!(env(&c, "TELNYX_CONNECTION_ID").value.as_deref(), Some("conn-1"));
    assert_eq!(env(&c, "TELNYX_BASE_URL").value.as_deref(), Some("https://api.telnyx.com/v2"));
    assert_eq!(env(&c, "DIALTONE_SERVICE").value.as_deref(), Some("shop/calls"));
}

#[test]
fn probes_follow_spec_health() {
    let mut t = sample();
    t.spec.health.period_seconds = 30;
    t.spec.health.timeout_seconds = 4;
    t.spec.health.failure_threshold = 2;
    let c = container(&deployment(&t, 1));
    let live = c.liveness_probe.unwrap();
    assert_eq!(live.http_get.unwrap().path.as_deref(), Some("/healthz"));
    assert_eq!(
        (live.period_seconds, live.timeout_seconds, live.failure_threshold),
        (Some(30), Some(4), Some(2))
    );
    let ready = c.readiness_probe.unwrap();
    assert_eq!(ready.http_get.unwrap().path.as_deref(), Some("/readyz"));
    assert_eq!(ready.period_seconds, Some(2));
}

#[test]
fn pods_meet_the_restricted_pod_security_profile() {
    let d = deployment(&sample(), 1);
    let pod = d.spec.unwrap().template.spec.unwrap();
    let psc = pod.security_context.unwrap();
    assert_eq!(psc.run_as_non_root, Some(true));
    assert_eq!(psc.seccomp_profile.unwrap().type_, "RuntimeDefault");
    let sc = pod.containers[0].security_context.clone().unwrap();
    assert_eq!(sc.allow_privilege_escalation, Some(false));
    assert_eq!(sc.read_only_root_filesystem, Some(true));
    assert_eq!(sc.capabilities.unwrap().drop, Some(vec!["ALL".to_string()]));
    assert_eq!(pod.automount_service_account_token, Some(false));
}

#[test]
fn default_resources_are_requests_50m_64mi_limits_500m_256mi() {
    let c = container(&deployment(&sample(), 1));
    let r = c.resources.unwrap();
    let get = |m: &Option<BTreeMap<String, k8s_openapi::apimachinery::pkg::api::resource::Quantity>>,
               k: &str| { m.as_ref().unwrap()[k].0.clone() };
    assert_eq!((get(&r.requests, "cpu"), get(&r.requests, "memory")), ("50m".into(), "64Mi".into()));
    assert_eq!((get(&r.limits, "cpu"), get(&r.limits, "memory")), ("500m".into(), "256Mi".into()));
}

#[test]
fn pod_settings_pass_through_but_cannot_break_the_selector() {
    let mut t = sample();
    t.spec.pod.labels.insert("team".into(), "voice".into());
    t.spec.pod.labels.insert(SERVICE_LABEL.into(), "evil".into());
    t.spec.pod.node_selector.insert("pool".into(), "voice".into());
    t.spec.pod.priority_class_name = Some("high".into());
    let d = deployment(&t, 2);
    let spec = d.spec.unwrap();
    assert_eq!(spec.replicas, Some(2));
    let labels = spec.template.metadata.unwrap().labels.unwrap();
    assert_eq!(labels["team"], "voice");
    assert_eq!(labels[SERVICE_LABEL], "calls");
    let pod = spec.template.spec.unwrap();
    assert_eq!(pod.node_selector.unwrap()["pool"], "voice");
    assert_eq!(pod.priority_class_name.as_deref(), Some("high"));
}

#[test]
fn service_targets_the_worker_port() {
    let s = service(&sample());
    let spec = s.spec.unwrap();
    assert_eq!(spec.selector.unwrap(), selector_labels(&sample()));
    assert_eq!(spec.ports.unwrap()[0].port, 8080);
    assert_eq!(endpoint(&sample()), "http://calls-worker.shop.svc:8080");
}

#[test]
fn hash_changes_with_content_only() {
    let a = deployment(&sample(), 1);
    assert_eq!(applied_hash(&a), applied_hash(&deployment(&sample(), 1)));
    assert_ne!(applied_hash(&a), applied_hash(&deployment(&sample(), 0)));
    let mut t = sample();
    t.spec.image = "registry.example.com/dialtone/telephony-pod:0.2.0".into();
    assert_ne!(applied_hash(&a), applied_hash(&deployment(&t, 1)));
}

#[test]
fn the_drain_sets_the_grace_period_and_the_webhook_key_comes_from_its_secret() {
    let mut t = sample();
    let d = deployment(&t, 1);
    let pod = d.spec.as_ref().unwrap().template.spec.as_ref().unwrap();
    assert_eq!(pod.termination_grace_period_seconds, Some(30 + 25), "the drain, then the shutdown steps");
    assert_eq!(env(&container(&d), "DRAIN_TIMEOUT_SECONDS").value.as_deref(), Some("30"));
    assert!(container(&d).env.unwrap().iter().all(|e| e.name != "TELNYX_PUBLIC_KEY"), "webhooks off");

    t.spec.drain.timeout_seconds = 600;
    t.spec.telnyx.webhook_public_key_secret_ref =
        Some(crate::crd::SecretKeyRef { name: "telnyx".into(), key: "publicKey".into() });
    let d = deployment(&t, 1);
    let pod = d.spec.as_ref().unwrap().template.spec.as_ref().unwrap();
    assert_eq!(pod.termination_grace_period_seconds, Some(625));
    let key = env(&container(&d), "TELNYX_PUBLIC_KEY");
    assert!(key.value.is_none(), "never a plain value");
    let from = key.value_from.unwrap().secret_key_ref.unwrap();
    assert_eq!((from.name.as_str(), from.key.as_str()), ("telnyx", "publicKey"));
}

#[test]
fn a_disruption_budget_only_for_more_than_one_worker() {
    assert!(disruption_budget(&sample(), 0).is_none());
    assert!(disruption_budget(&sample(), 1).is_none());
    let pdb = disruption_budget(&sample(), 2).unwrap();
    assert_eq!(pdb.metadata.owner_references.as_ref().unwrap()[0].kind, "TelephonyService");
}

#[test]
fn a_rollback_takes_the_older_template_without_its_hash_label_and_marks_the_applied_hash() {
    let tsvc = sample();
    let mut older = deployment(&tsvc, 2).spec.unwrap().template;
    older
        .metadata
        .as_mut()
        .unwrap()
        .labels
        .as_mut()
        .unwrap()
        .insert("pod-template-hash".into(), "aaa".into());
    let image = "ghcr.io/example/worker:good";
    older.spec.as_mut().unwrap().containers[0].image = Some(image.into());
    let d = rolled_back(&tsvc, 2, older, "aaa");
    let template = d.spec.as_ref().unwrap().template.clone();
    assert_eq!(template.spec.unwrap().containers[0].image.as_deref(), Some(image));
    assert!(!template.metadata.unwrap().labels.unwrap().contains_key("pod-template-hash"));
    assert_eq!(applied_hash(&d), Some("rolled-back-to-aaa"));
    assert_eq!(d.spec.and_then(|s| s.replicas), Some(2));
}

#[test]
fn the_workers_token_comes_from_its_secret_and_the_peers_address_from_the_pod() {
    let mut t = sample();
    let d = deployment(&t, 1);
    assert!(
        container(&d).env.unwrap().iter().all(|e| e.name != "DIALTONE_API_TOKEN"),
        "open without spec.auth"
    );
    t.spec.auth = Some(crate::crd::AuthSpec {
        token_secret_ref: crate::crd::SecretKeyRef {
            name: "dialtone-worker-token".into(),
            key: "token".into(),
        },
    });
    let d = deployment(&t, 1);
    let token = env(&container(&d), "DIALTONE_API_TOKEN");
    assert!(token.value.is_none(), "never a plain value");
    let from = token.value_from.unwrap().secret_key_ref.unwrap();
    assert_eq!((from.name.as_str(), from.key.as_str()), ("dialtone-worker-token", "token"));
    let ip = env(&container(&d), "POD_IP").value_from.unwrap().field_ref.unwrap();
    assert_eq!(ip.field_path, "status.podIP");
    assert_eq!(env(&container(&d), "TERMINATION_LOG").value.as_deref(), Some("/dev/termination-log"));
    assert_eq!(container(&d).termination_message_path.as_deref(), Some("/dev/termination-log"));
}
