//! The Helm chart on the real cluster: lint, render every option and have the apiserver validate
//! it, install (the operator and readiness pods run from the images `scripts/images.sh` built,
//! with their mounted ServiceAccount tokens, probes and restricted security context, so the
//! apiserver enforces the chart's RBAC on them), supervise the example, upgrade, uninstall.

mod common;

use std::path::PathBuf;
use std::time::Duration;

use serde_json::{json, Value};
use telephony_operator::crd::Phase;
use testing::{kubectl, tool, wait_until, TestNamespace};

use common::{kill_worker, pod_ip, wait_status, worker_pods};

fn chart() -> String {
    testing::repo_root().join("charts/dialtone").display().to_string()
}

fn helm(args: &[&str]) -> Result<String, String> {
    tool("helm", args, None)
}

/// Renders the chart for the cluster's Kubernetes version; every object as JSON.
fn render(release: &str, ns: &str, sets: &[String]) -> Vec<Value> {
    let chart = chart();
    static VERSION: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let version = VERSION.get_or_init(|| {
        let v: Value = serde_json::from_str(&kubectl(&["version", "-o", "json"])).expect("version JSON");
        v["serverVersion"]["gitVersion"].as_str().unwrap_or_default().to_string()
    });
    let mut args = vec!["template", release, &chart, "-n", ns, "--kube-version", version];
    for s in sets {
        args.extend(["--set", s]);
    }
    let yaml = helm(&args).unwrap_or_else(|e| panic!("helm template {sets:?} failed: {e}"));
    serde_yaml::Deserializer::from_str(&yaml)
        .filter_map(|doc| serde::Deserialize::deserialize(doc).ok())
        .filter(|v: &Value| v.is_object())
        .collect()
}

fn kinds(objects: &[Value]) -> Vec<String> {
    objects.iter().map(|o| o["kind"].as_str().unwrap_or_default().to_string()).collect()
}

/// What the restricted Pod Security profile requires of a pod template, as violations.
fn restricted_violations(deployment: &Value) -> Vec<String> {
    let name = deployment["metadata"]["name"].as_str().unwrap_or_default();
    let pod = &deployment["spec"]["template"]["spec"];
    let mut bad = vec![];
    if pod["securityContext"]["runAsNonRoot"] != json!(true) {
        bad.push(format!("{name}: pod runAsNonRoot"));
    }
    if pod["securityContext"]["seccompProfile"]["type"] != json!("RuntimeDefault") {
        bad.push(format!("{name}: pod seccompProfile"));
    }
    for c in pod["containers"].as_array().into_iter().flatten() {
        let sc = &c["securityContext"];
        let checks = [
            ("allowPrivilegeEscalation", sc["allowPrivilegeEscalation"] == json!(false)),
            ("readOnlyRootFilesystem", sc["readOnlyRootFilesystem"] == json!(true)),
            ("capabilities.drop ALL", sc["capabilities"]["drop"] == json!(["ALL"])),
            ("resources", c["resources"]["requests"].is_object() && c["resources"]["limits"].is_object()),
            ("livenessProbe", c["livenessProbe"].is_object()),
            ("readinessProbe", c["readinessProbe"].is_object()),
        ];
        for (what, ok) in checks {
            if !ok {
                bad.push(format!("{name}/{}: {what}", c["name"]));
            }
        }
    }
    bad
}

#[tokio::test]
async fn chart_lints_and_every_option_renders_objects_the_apiserver_accepts() {
    let ns = TestNamespace::create("chart-render").await;
    let n = &ns.name;
    let chart = chart();
    // The YAML copies and the Rust-generated CRD are the same values to server-side apply, so
    // `helm install`, `kubectl apply --server-side -f crds/` and the tests never conflict.
    common::install_crd(&ns.client).await;
    let root = testing::repo_root();
    for file in ["crds/telephonyservice.yaml", "charts/dialtone/crds/telephonyservice.yaml"] {
        let path = root.join(file).display().to_string();
        tool("kubectl", &["apply", "--server-side", "--dry-run=server", "-f", &path], None)
            .unwrap_or_else(|e| panic!("{file} conflicts with the generated CRD: {e}"));
    }
    let all_on = [
        "networkPolicy.enabled=true".to_string(),
        format!("networkPolicy.workerNamespaces={{{n}}}"),
        "networkPolicy.monitoringNamespaceSelector.matchLabels.purpose=monitoring".into(),
        "serviceMonitor.enabled=true".into(),
        "grafanaDashboard.enabled=true".into(),
        "prometheusRule.enabled=true".into(),
        format!("watchNamespace={n}"),
        "readiness.corsOrigins={https://app.example.com}".into(),
        "workerToken.create=true".into(),
        format!("workerToken.namespace={n}"),
    ];
    for sets in [vec![], all_on.to_vec()] {
        let mut args = vec!["lint", "--strict", &chart];
        for s in &sets {
            args.extend(["--set", s]);
        }
        let out = helm(&args).unwrap_or_else(|e| panic!("helm lint --strict {sets:?}: {e}"));
        assert!(out.contains("0 chart(s) failed"), "{out}");
    }

    let variants: Vec<(&str, Vec<String>, &[&str])> = vec![
        (
            "defaults",
            vec![],
            &[
                "ClusterRole",
                "ClusterRoleBinding",
                "Role",
                "RoleBinding",
                "Deployment",
                "PodDisruptionBudget",
            ],
        ),
        ("watchNamespace", vec![format!("watchNamespace={n}")], &["Role", "RoleBinding", "Deployment"]),
        ("networkPolicy", all_on[..3].to_vec(), &["NetworkPolicy"]),
        ("serviceMonitor", vec![all_on[3].clone()], &["ServiceMonitor", "PodMonitor"]),
        ("grafanaDashboard", vec![all_on[4].clone()], &["ConfigMap"]),
        ("prometheusRule", vec![all_on[5].clone()], &["PrometheusRule"]),
        ("single replicas", vec!["operator.replicas=1".into(), "readiness.replicas=1".into()], &[]),
        ("readiness off", vec!["readiness.enabled=false".into()], &[]),
        ("workerToken", all_on[7..].to_vec(), &["Secret"]),
        (
            "everything on",
            all_on.to_vec(),
            &["NetworkPolicy", "ServiceMonitor", "PrometheusRule", "ConfigMap", "Secret"],
        ),
    ];
    let mut schema_only = vec![];
    for (variant, sets, expect) in &variants {
        let objects = render("t", n, sets);
        let rendered = kinds(&objects);
        for kind in *expect {
            assert!(rendered.iter().any(|k| k == kind), "{variant}: no {kind} in {rendered:?}");
        }
        let (monitoring, core): (Vec<Value>, Vec<Value>) = objects
            .into_iter()
            .partition(|o| o["apiVersion"].as_str().is_some_and(|v| v.starts_with("monitoring.coreos.com/")));
        schema_only.extend(monitoring);
        for d in core.iter().filter(|o| o["kind"] == "Deployment") {
            let bad = restricted_violations(d);
            assert!(bad.is_empty(), "{variant}: not restricted Pod Security: {bad:?}");
        }
        let pdbs = core.iter().filter(|o| o["kind"] == "PodDisruptionBudget").count();
        match *variant {
            "single replicas" => assert_eq!(pdbs, 0, "no PDB for a single replica"),
            "readiness off" => {
                assert!(!core
                    .iter()
                    .any(|o| o["metadata"]["name"].as_str().is_some_and(|n| n.contains("readiness"))))
            }
            _ => {}
        }
        let list = json!({ "apiVersion": "v1", "kind": "List", "items": core });
        let out = tool(
            "kubectl",
            &["apply", "--server-side", "--dry-run=server", "--field-manager=chart-test", "-n", n, "-f", "-"],
            Some(&list.to_string()),
        )
        .unwrap_or_else(|e| panic!("{variant}: the apiserver rejected the rendering: {e}"));
        assert!(out.contains("(server dry run)"), "{variant}: {out}");
    }

    // Kinds whose CRDs the local control plane lacks: checked against their published schemas only.
    let models = testing::cache_dir()
        .join("prometheus-operator-models/node_modules/@kubernetes-models/prometheus-operator");
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/chart/monitoring-schema.mjs");
    let mut node = std::process::Command::new("node")
        .arg(&script)
        .arg(&models)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("node (run scripts/setup.sh)");
    {
        use std::io::Write as _;
        let mut stdin = node.stdin.take().expect("stdin");
        stdin.write_all(Value::Array(schema_only).to_string().as_bytes()).expect("write objects");
    }
    let out = node.wait_with_output().expect("node");
    let report = String::from_utf8_lossy(&out.stdout);
    println!("{report}");
    assert!(out.status.success(), "monitoring objects fail their schema:\n{report}");
    for kind in ["ServiceMonitor", "PodMonitor", "PrometheusRule"] {
        assert!(report.contains(&format!("ok {kind}/")), "{kind} not validated:\n{report}");
    }

    // The dashboard is valid JSON and plots metrics the operator really exports.
    let everything = render("t", n, &all_on);
    let cm = everything.iter().find(|o| o["kind"] == "ConfigMap").expect("dashboard ConfigMap");
    let dashboard: Value = serde_json::from_str(cm["data"]["dialtone.json"].as_str().unwrap_or_default())
        .expect("dashboard JSON");
    assert_eq!(dashboard["panels"].as_array().map(Vec::len), Some(9));

    // Bad values fail at install time with a message naming the key.
    for (set, expect) in [
        ("operator.replicas=two", "/operator/replicas"),
        ("operator.replica=2", "'replica' not allowed"),
        ("readiness.staleAfter=soon", "/readiness/staleAfter"),
        ("logFormat=xml", "/logFormat"),
        ("operator.leaseDurationSeconds=1", "/operator/leaseDurationSeconds"),
        ("networkPolicy.appNamespaceSelector.matchLabels.team=true", "/networkPolicy/appNamespaceSelector"),
    ] {
        let err = helm(&["template", "t", &chart, "--set", set]).expect_err(set);
        assert!(err.contains(expect), "--set {set}: {err}");
    }
    ns.delete().await;
}

/// `kubectl auth can-i` as `sa`; panics unless the apiserver gave a clear yes or no about a real
/// resource (so a typo can't make a "may not" check pass).
fn can_i(sa: &str, verb: &str, resource: &str, ns: Option<&str>) -> bool {
    let (resource, sub) = resource.split_once('/').unwrap_or((resource, ""));
    let mut cmd = std::process::Command::new(testing::cache_dir().join("bin/kubectl"));
    cmd.env("KUBECONFIG", testing::kubeconfig_path()).args(["auth", "can-i", verb, resource, "--as", sa]);
    if !sub.is_empty() {
        cmd.arg(format!("--subresource={sub}"));
    }
    match ns {
        Some(ns) => cmd.args(["-n", ns]),
        None => cmd.arg("--all-namespaces"),
    };
    let out = cmd.output().expect("kubectl auth can-i");
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(!stderr.contains("doesn't have a resource type"), "can-i {verb} {resource}: {stderr}");
    match stdout.trim() {
        "yes" => true,
        "no" => false,
        other => panic!("can-i {verb} {resource}: {other:?} {stderr}"),
    }
}

/// An installed release whose operator and readiness pods are up and whose operator leads.
struct Installed {
    release: String,
    ns: String,
    /// The readiness Service, by its ClusterIP (kube-proxy routes the host's connections too).
    readiness: String,
}

async fn install(ns: &str, release: &str, sets: &[String]) -> Installed {
    let chart = chart();
    let mut args = vec![
        "install",
        release,
        &chart,
        "-n",
        ns,
        "--create-namespace",
        "--wait=legacy",
        "--timeout",
        "180s",
    ];
    for s in sets {
        args.extend(["--set", s]);
    }
    let notes =
        helm(&args).unwrap_or_else(|e| panic!("helm install: {e}\n{}", testing::namespace_report(ns)));
    assert!(notes.contains("kubectl get tsvc -A"), "NOTES tell how to check status: {notes}");
    let full = format!("{release}-dialtone");
    let ip =
        kubectl(&["get", "svc", &format!("{full}-readiness"), "-n", ns, "-o", "jsonpath={.spec.clusterIP}"]);
    let installed = Installed { release: release.into(), ns: ns.into(), readiness: format!("http://{ip}") };
    // `--wait` saw every pod Ready: the readiness probes passed, so the watches list under the
    // chart's RBAC. One operator pod leads.
    let leader = installed.leader().await;
    let metrics = installed.operator_metrics().await;
    // (dialtone_worker_failures appears with the first failure: checked after one.)
    for name in [
        "dialtone_service_phase",
        "dialtone_restart_budget_exhaustions",
        "dialtone_reconcile_duration_seconds",
    ] {
        assert!(
            metrics.contains(&format!("# TYPE {name} ")),
            "the dashboard and alerts use {name} ({leader}): {metrics}"
        );
    }
    installed
}

impl Installed {
    /// The operator pod holding the Lease.
    async fn leader(&self) -> String {
        let lease = format!("{}-dialtone-operator", self.release);
        wait_until(Duration::from_secs(60), "an operator pod leads", || async {
            let holder = tool(
                "kubectl",
                &["get", "lease", &lease, "-n", &self.ns, "-o", "jsonpath={.spec.holderIdentity}"],
                None,
            )
            .ok()?;
            let pods = kubectl(&[
                "get",
                "pods",
                "-n",
                &self.ns,
                "-l",
                "app.kubernetes.io/component=operator",
                "-o",
                "name",
            ]);
            pods.lines().any(|p| p == format!("pod/{holder}")).then_some(holder)
        })
        .await
    }

    /// The leading operator pod's /metrics, read from its pod IP.
    async fn operator_metrics(&self) -> String {
        let leader = self.leader().await;
        let ip = kubectl(&["get", "pod", &leader, "-n", &self.ns, "-o", "jsonpath={.status.podIP}"]);
        testing::get(&format!("http://{ip}:8081/metrics")).await.map(|r| r.1).unwrap_or_default()
    }

    /// HTTP status and JSON body of the readiness answer for one service.
    async fn status(&self, ns: &str, name: &str) -> Option<(u16, Value)> {
        let (code, body) = testing::get(&format!("{}/v1/status/{ns}/{name}", self.readiness)).await?;
        Some((code, serde_json::from_str(&body).ok()?))
    }
}

/// Applies examples/ into `app`, points it at the local Telnyx mock (the example's default is
/// api.telnyx.com, which this machine can't reach), and checks Ready; then that Telnyx becoming
/// unreachable from the workers flips the readiness answer to 503, and back.
async fn example_is_supervised(app: &TestNamespace, installed: &Installed, label: Option<&str>) {
    let examples = testing::repo_root().join("examples").display().to_string();
    let out = kubectl(&["apply", "-f", &examples, "-n", &app.name]);
    assert!(out.contains("telephonyservice.dialtone.dev/calls"), "{out}");
    let local = json!({ "spec": {
        "telnyx": { "baseUrl": testing::node::telnyx_url() },
        "health": { "periodSeconds": 2, "timeoutSeconds": 1 }
    } });
    kubectl(&["patch", "tsvc", "calls", "-n", &app.name, "--type", "merge", "-p", &local.to_string()]);
    if let Some(label) = label {
        kubectl(&["label", "tsvc", "calls", label, "-n", &app.name]);
    }
    let t = wait_status(app, "calls", 90, "example Ready", |s| s.phase == Phase::Ready).await;
    assert_eq!(t.status.and_then(|s| s.ready).as_deref(), Some("2/2"));
    let got = wait_until(Duration::from_secs(10), "readiness 200", || async {
        let (code, body) = installed.status(&app.name, "calls").await?;
        (code == 200).then_some(body)
    })
    .await;
    assert_eq!(got["status"], "ready");

    let mut partitions = vec![];
    for p in worker_pods(app, "calls").await {
        let ip = pod_ip(app, &p.metadata.name.unwrap_or_default()).await;
        partitions.push(testing::node::Partition::from_telnyx(&ip));
    }
    let got = wait_until(Duration::from_secs(30), "readiness 503", || async {
        let (code, body) = installed.status(&app.name, "calls").await?;
        (code == 503).then_some(body)
    })
    .await;
    assert_eq!(got["healthy"], false);
    drop(partitions);
    wait_until(Duration::from_secs(30), "readiness 200 again", || async {
        let (code, _) = installed.status(&app.name, "calls").await?;
        (code == 200).then_some(())
    })
    .await;
    readiness_cut_off_from_the_workers_answers_503(app, installed).await;
}

/// The readiness pods can't reach the workers (a partition), while Kubernetes still calls every
/// worker Ready: nobody can confirm them, so the answer is the safe one, 503, and 200 again once
/// the network heals.
async fn readiness_cut_off_from_the_workers_answers_503(app: &TestNamespace, installed: &Installed) {
    let readiness_ips = kubectl(&[
        "get",
        "pods",
        "-n",
        &installed.ns,
        "-l",
        "app.kubernetes.io/component=readiness",
        "-o",
        "jsonpath={.items[*].status.podIP}",
    ]);
    let workers = worker_pods(app, "calls").await;
    let mut cut = vec![];
    for from in readiness_ips.split_whitespace() {
        for w in &workers {
            let to = pod_ip(app, &w.metadata.name.clone().unwrap_or_default()).await;
            cut.push(testing::node::Partition::between(from, &to));
        }
    }
    let got = wait_until(Duration::from_secs(10), "readiness 503 while cut off", || async {
        let (code, body) = installed.status(&app.name, "calls").await?;
        (code == 503).then_some(body)
    })
    .await;
    let message = got["message"].as_str().unwrap_or_default();
    assert!(message.contains("no worker is available"), "{got}");
    let ready = |p: &k8s_openapi::api::core::v1::Pod| {
        let conditions = p.status.as_ref().and_then(|s| s.conditions.clone()).unwrap_or_default();
        conditions.iter().any(|c| c.type_ == "Ready" && c.status == "True")
    };
    let now = worker_pods(app, "calls").await;
    assert!(now.len() == 2 && now.iter().all(ready), "Kubernetes still calls both workers Ready");
    drop(cut);
    wait_until(Duration::from_secs(30), "readiness 200 once healed", || async {
        let (code, _) = installed.status(&app.name, "calls").await?;
        (code == 200).then_some(())
    })
    .await;
}

/// Objects of the release that are not on their way out (a terminating pod is being removed by the
/// kubelet, within its grace period: not an orphan).
fn released(ns: &str, release: &str, kind: &str, namespaced: bool) -> Vec<String> {
    let selector = format!("app.kubernetes.io/instance={release},app.kubernetes.io/part-of=dialtone");
    let mut args = vec!["get", kind, "-l", &selector, "-o", "json"];
    if namespaced {
        args.extend(["-n", ns]);
    }
    let list: Value = serde_json::from_str(&kubectl(&args)).expect("list JSON");
    let items = list["items"].as_array().cloned().unwrap_or_default();
    items
        .iter()
        .filter(|o| o["metadata"]["deletionTimestamp"].is_null())
        .map(|o| {
            format!(
                "{}/{}",
                o["kind"].as_str().unwrap_or_default(),
                o["metadata"]["name"].as_str().unwrap_or_default()
            )
        })
        .collect()
}

impl Installed {
    /// `helm uninstall` leaves nothing of the release behind, except the CRD (Helm never deletes
    /// CRDs).
    async fn uninstall(self) {
        let Installed { release, ns, .. } = self;
        helm(&["uninstall", &release, "-n", &ns, "--wait=legacy", "--timeout", "60s"])
            .unwrap_or_else(|e| panic!("helm uninstall: {e}"));
        let namespaced = "deployments,replicasets,pods,services,serviceaccounts,roles,rolebindings,poddisruptionbudgets,networkpolicies,configmaps";
        wait_until(Duration::from_secs(60), "no orphans after helm uninstall", || async {
            let mut left = released(&ns, &release, namespaced, true);
            left.extend(released(&ns, &release, "clusterroles,clusterrolebindings", false));
            left.is_empty().then_some(()).or_else(|| {
                println!("left: {left:?}");
                None
            })
        })
        .await;
        kubectl(&["get", "crd", "telephonyservices.dialtone.dev"]);
    }
}

/// The pod-template-hash of each live operator pod.
fn operator_pod_hashes(ns: &str) -> Vec<String> {
    let pods: Value = serde_json::from_str(&kubectl(&[
        "get",
        "pods",
        "-n",
        ns,
        "-l",
        "app.kubernetes.io/component=operator",
        "-o",
        "json",
    ]))
    .expect("pods JSON");
    let items = pods["items"].as_array().cloned().unwrap_or_default();
    items
        .iter()
        .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
        .filter_map(|p| p["metadata"]["labels"]["pod-template-hash"].as_str().map(String::from))
        .collect()
}

#[tokio::test]
async fn cluster_wide_install_supervises_under_its_own_rbac_then_upgrades_and_uninstalls() {
    let ns = TestNamespace::create("chart").await;
    let app = TestNamespace::create("chart-app").await;
    let release = ns.name.replace("e2e-", "r");
    let label = format!("dialtone.dev/release={release}");
    // A selector keeps this cluster-wide operator away from the other tests' services.
    let sets = [
        format!("selector={label}"),
        "workerToken.create=true".into(),
        format!("workerToken.namespace={}", app.name),
    ];
    let installed = install(&ns.name, &release, &sets).await;
    let token = || {
        let template = "go-template={{.data.token | base64decode}}";
        kubectl(&["get", "secret", "dialtone-worker-token", "-n", &app.name, "-o", template])
    };
    let first = token();
    assert_eq!(first.trim().len(), 48, "a random 48-character token in the app's namespace");
    assert!(first.trim().bytes().all(|b| b.is_ascii_alphanumeric()));

    let operator_sa = format!("system:serviceaccount:{}:{release}-dialtone-operator", ns.name);
    let readiness_sa = format!("system:serviceaccount:{}:{release}-dialtone-readiness", ns.name);
    for (verb, resource) in [
        ("watch", "telephonyservices.dialtone.dev"),
        ("patch", "telephonyservices.dialtone.dev/status"),
        ("patch", "deployments.apps"),
        ("delete", "pods"),
        ("create", "events.events.k8s.io"),
        ("list", "replicasets.apps"),
    ] {
        assert!(can_i(&operator_sa, verb, resource, None), "operator may {verb} {resource}");
    }
    for (verb, resource, ns_scope) in [
        ("get", "secrets", None),
        ("list", "secrets", Some(app.name.as_str())),
        ("list", "configmaps", None),
        ("delete", "telephonyservices.dialtone.dev", None),
        ("create", "customresourcedefinitions.apiextensions.k8s.io", None),
        ("patch", "nodes", None),
        ("create", "pods", None),
        ("patch", "leases.coordination.k8s.io", Some("default")),
    ] {
        assert!(
            !can_i(&operator_sa, verb, resource, ns_scope),
            "operator may NOT {verb} {resource} ({ns_scope:?})"
        );
    }
    assert!(can_i(&readiness_sa, "watch", "telephonyservices.dialtone.dev", None));
    assert!(can_i(&readiness_sa, "watch", "pods", None), "readiness follows the workers' heartbeats");
    for (verb, resource) in [
        ("patch", "telephonyservices.dialtone.dev"),
        ("create", "telephonyservices.dialtone.dev"),
        ("patch", "telephonyservices.dialtone.dev/status"),
        ("get", "secrets"),
        ("delete", "pods"),
        ("create", "events.events.k8s.io"),
    ] {
        assert!(!can_i(&readiness_sa, verb, resource, None), "readiness may NOT {verb} {resource}");
    }

    // kubectl logs and exec reach the operator pod through the apiserver and the kubelet.
    let leader = installed.leader().await;
    let logs = kubectl(&["logs", &leader, "-n", &ns.name]);
    assert!(logs.lines().any(|l| l.starts_with('{') && l.contains("\"level\"")), "JSON log lines: {logs}");
    let help =
        kubectl(&["exec", &leader, "-n", &ns.name, "--", "/usr/local/bin/telephony-operator", "--help"]);
    assert!(help.contains("readiness"), "{help}");

    example_is_supervised(&app, &installed, Some(&label)).await;
    let pod = worker_pods(&app, "calls").await[0].metadata.name.clone().unwrap_or_default();
    kill_worker(&app, &pod).await;
    wait_until(Duration::from_secs(20), "the failure in the operator's metrics", || async {
        let body = installed.operator_metrics().await;
        body.contains("dialtone_worker_failures_total{reason=\"Error\"} 1").then_some(())
    })
    .await;

    // helm upgrade with a changed value rolls the operator to the new pod template.
    let deploy = format!("{release}-dialtone-operator");
    let before: Value =
        serde_json::from_str(&kubectl(&["get", "deploy", &deploy, "-n", &ns.name, "-o", "json"]))
            .expect("JSON");
    let hashes_before = operator_pod_hashes(&ns.name);
    helm(&[
        "upgrade",
        &release,
        &chart(),
        "-n",
        &ns.name,
        "--reuse-values",
        "--set",
        "operator.leaseDurationSeconds=20",
        "--wait=legacy",
        "--timeout",
        "120s",
    ])
    .unwrap_or_else(|e| panic!("helm upgrade: {e}"));
    let after: Value =
        serde_json::from_str(&kubectl(&["get", "deploy", &deploy, "-n", &ns.name, "-o", "json"]))
            .expect("JSON");
    assert!(after["metadata"]["generation"].as_i64() > before["metadata"]["generation"].as_i64());
    let args = after["spec"]["template"]["spec"]["containers"][0]["args"].to_string();
    assert!(args.contains("--lease-duration=20"), "{args}");
    let rolled = wait_until(Duration::from_secs(60), "operator rolled to one new ReplicaSet", || async {
        let now = operator_pod_hashes(&ns.name);
        (now.len() == 2 && now.iter().all(|h| h == &now[0])).then_some(now)
    })
    .await;
    assert!(!hashes_before.contains(&rolled[0]), "new pods: {hashes_before:?} -> {rolled:?}");
    assert_eq!(token(), first, "an upgrade keeps the workers' token: the app is not locked out");

    installed.uninstall().await;
    app.delete().await;
    ns.delete().await;
}

#[tokio::test]
async fn namespaced_install_grants_roles_in_the_watched_namespace_only() {
    let ns = TestNamespace::create("chart-ns").await;
    let app = TestNamespace::create("chart-ns-app").await;
    let release = ns.name.replace("e2e-", "r");
    let installed = install(&ns.name, &release, &[format!("watchNamespace={}", app.name)]).await;

    let cluster_roles = released(&ns.name, &release, "clusterroles,clusterrolebindings", false);
    assert!(cluster_roles.is_empty(), "a namespaced install grants no cluster roles: {cluster_roles:?}");
    let operator_sa = format!("system:serviceaccount:{}:{release}-dialtone-operator", ns.name);
    let readiness_sa = format!("system:serviceaccount:{}:{release}-dialtone-readiness", ns.name);
    assert!(can_i(&operator_sa, "delete", "pods", Some(&app.name)));
    assert!(!can_i(&operator_sa, "list", "pods", Some("default")));
    assert!(!can_i(&operator_sa, "list", "pods", None));
    assert!(can_i(&readiness_sa, "list", "telephonyservices.dialtone.dev", Some(&app.name)));
    assert!(!can_i(&readiness_sa, "list", "telephonyservices.dialtone.dev", None));
    assert!(can_i(&readiness_sa, "watch", "pods", Some(&app.name)));
    assert!(!can_i(&readiness_sa, "list", "pods", Some("default")));

    example_is_supervised(&app, &installed, None).await;
    installed.uninstall().await;
    app.delete().await;
    ns.delete().await;
}

/// The Lease's holder and renew time.
fn lease(ns: &str, name: &str) -> (String, String) {
    let out = tool(
        "kubectl",
        &["get", "lease", name, "-n", ns, "-o", "jsonpath={.spec.holderIdentity} {.spec.renewTime}"],
        None,
    )
    .unwrap_or_default();
    let (holder, renewed) = out.split_once(' ').unwrap_or_default();
    (holder.to_string(), renewed.to_string())
}

/// The leader goes away twice, each time without releasing the Lease: its process is killed from
/// the host (the kubelet restarts the container, which resumes its own Lease: same pod, same
/// identity), then its pod is force-deleted (the standby takes the Lease once it expires). Each
/// time leadership is back within the lease duration, a failure counted before is not counted
/// again, and a new one is counted once.
#[tokio::test]
async fn a_killed_leader_is_replaced_within_the_lease_duration_without_recounting() {
    let ns = TestNamespace::create("chart-leader").await;
    let app = TestNamespace::create("chart-leader-app").await;
    let release = ns.name.replace("e2e-", "r");
    let label = format!("dialtone.dev/release={release}");
    let sets = [format!("selector={label}"), "operator.leaseDurationSeconds=5".to_string()];
    let installed = install(&ns.name, &release, &sets).await;
    let lease_name = format!("{release}-dialtone-operator");
    example_is_supervised(&app, &installed, Some(&label)).await;
    let worker = worker_pods(&app, "calls").await[0].metadata.name.clone().unwrap_or_default();
    kill_worker(&app, &worker).await;
    common::counted_exactly(&app, "calls", 1, 30, Duration::from_secs(1)).await;

    // 1. SIGKILL of the leader's process.
    let leader = installed.leader().await;
    let pods: kube::Api<k8s_openapi::api::core::v1::Pod> = kube::Api::namespaced(ns.client.clone(), &ns.name);
    let (_, renewed_before) = lease(&ns.name, &lease_name);
    let killed = std::time::Instant::now();
    testing::node::signal_container(&pods, &leader, testing::node::SIGKILL).await;
    let holder = wait_until(Duration::from_secs(30), "leadership regained", || async {
        let (holder, renewed) = lease(&ns.name, &lease_name);
        let fresh = renewed > renewed_before && killed.elapsed() > Duration::from_secs(1);
        (fresh && !holder.is_empty()).then_some(holder)
    })
    .await;
    eprintln!("leader process killed → {holder} renews after {:?}", killed.elapsed());
    assert!(killed.elapsed() < Duration::from_secs(10), "regained in {:?}", killed.elapsed());
    common::counted_exactly(&app, "calls", 1, 10, Duration::from_secs(3)).await;

    // 2. The leader's pod force-deleted: the standby takes over.
    let leader = installed.leader().await;
    let deleted = std::time::Instant::now();
    kubectl(&["delete", "pod", &leader, "-n", &ns.name, "--grace-period=0", "--force"]);
    let holder = wait_until(Duration::from_secs(30), "another pod takes the Lease", || async {
        let (holder, _) = lease(&ns.name, &lease_name);
        (!holder.is_empty() && holder != leader).then_some(holder)
    })
    .await;
    eprintln!("leader pod deleted → {holder} leads after {:?}", deleted.elapsed());
    assert!(deleted.elapsed() < Duration::from_secs(10), "failover took {:?}", deleted.elapsed());
    common::counted_exactly(&app, "calls", 1, 10, Duration::from_secs(2)).await;
    wait_status(&app, "calls", 60, "Ready", |s| s.phase == Phase::Ready).await;
    kill_worker(&app, &worker).await;
    common::counted_exactly(&app, "calls", 2, 30, Duration::from_secs(2)).await;
    installed.uninstall().await;
    app.delete().await;
    ns.delete().await;
}
