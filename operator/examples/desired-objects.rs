//! Writes the objects the operator applies for sample TelephonyServices (the smallest spec, and
//! one with every optional field) as JSON files in DIR. scripts/schemas.sh validates them against
//! newer Kubernetes schemas and scans the Deployments with checkov.
//!
//!     cargo run -p telephony-operator --example desired-objects -- DIR

use anyhow::Context;
use telephony_operator::crd::TelephonyService;
use telephony_operator::desired;

fn sample(name: &str, spec: serde_json::Value) -> anyhow::Result<TelephonyService> {
    let mut t = TelephonyService::new(name, serde_json::from_value(spec).context("sample spec")?);
    t.metadata.namespace = Some("shop".into());
    t.metadata.uid = Some("6c8f2f6e-8d2a-4f0e-9a51-3d1c2b7e9f00".into());
    Ok(t)
}

fn main() -> anyhow::Result<()> {
    let dir = std::path::PathBuf::from(std::env::args().nth(1).context("usage: desired-objects DIR")?);
    std::fs::create_dir_all(&dir)?;
    let minimal = sample(
        "calls",
        serde_json::json!({
            "image": "ghcr.io/dialtone-dev/telephony-pod:0.1.0",
            "telnyx": { "apiKeySecretRef": { "name": "telnyx" }, "connectionId": "1234567890" }
        }),
    )?;
    let full = sample(
        "calls-full",
        serde_json::json!({
            "image": "registry.example.com/dialtone/telephony-pod@sha256:0000000000000000000000000000000000000000000000000000000000000000",
            "replicas": 3,
            "port": 9090,
            "telnyx": { "apiKeySecretRef": { "name": "telnyx", "key": "key" }, "connectionId": "1234567890",
                        "baseUrl": "https://api.telnyx.com/v2" },
            "health": { "periodSeconds": 10, "timeoutSeconds": 2, "failureThreshold": 5, "startupTimeoutSeconds": 90 },
            "restartBudget": { "maxRestarts": 5, "windowSeconds": 300 },
            "backoff": { "initialSeconds": 2, "maxSeconds": 60, "multiplier": 3.0 },
            "resources": { "requests": { "cpu": "50m", "memory": "64Mi" }, "limits": { "memory": "256Mi" } },
            "pod": {
                "labels": { "team": "voice" },
                "annotations": { "example.com/owner": "voice-team" },
                "nodeSelector": { "kubernetes.io/os": "linux" },
                "tolerations": [{ "key": "dedicated", "operator": "Equal", "value": "voice", "effect": "NoSchedule" }],
                "affinity": { "podAntiAffinity": { "preferredDuringSchedulingIgnoredDuringExecution": [{
                    "weight": 100,
                    "podAffinityTerm": { "topologyKey": "kubernetes.io/hostname",
                                         "labelSelector": { "matchLabels": { "app.kubernetes.io/instance": "calls-full" } } }
                }] } },
                "priorityClassName": "high-priority",
                "serviceAccountName": "voice-worker",
                "env": [
                    { "name": "LOG_FORMAT", "value": "text" },
                    { "name": "REGION", "valueFrom": { "fieldRef": { "fieldPath": "metadata.namespace" } } }
                ]
            }
        }),
    )?;
    for t in [&minimal, &full] {
        let name = t.metadata.name.clone().unwrap_or_default();
        // Running, and with the circuit open (scaled to 0).
        for (suffix, replicas) in [("", t.spec.replicas), ("-scaled-to-0", 0)] {
            let path = dir.join(format!("{name}{suffix}-deployment.json"));
            std::fs::write(&path, serde_json::to_vec_pretty(&desired::deployment(t, replicas))?)?;
        }
        std::fs::write(
            dir.join(format!("{name}-service.json")),
            serde_json::to_vec_pretty(&desired::service(t))?,
        )?;
    }
    println!("wrote the operator's objects for 2 sample TelephonyServices to {}", dir.display());
    Ok(())
}
