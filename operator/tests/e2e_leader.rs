//! Two operator replicas: one leads (Lease), the other stands by; the admin endpoints say so; a
//! killed leader is replaced within the lease duration; a leader cut off from the apiserver steps
//! down before the standby takes over.

mod common;

use std::time::{Duration, Instant};

use common::*;
use k8s_openapi::api::coordination::v1::Lease;
use kube::ResourceExt;
use telephony_operator::crd::Phase;
use testing::proxy::Proxy;
use testing::{get, wait_until};

/// The value of a metric line without labels (e.g. `dialtone_reconciliations_total 12`).
fn metric(body: &str, name: &str) -> Option<f64> {
    body.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

#[tokio::test]
async fn a_killed_leader_is_replaced_within_the_lease_duration() {
    let ns = setup("leader").await;
    let lease_args = ["--leader-elect=true", "--lease-namespace", ns.name.as_str(), "--lease-duration", "4"];
    let ports = [testing::free_port(), testing::free_port()];
    let mut ops = vec![
        Some(Operator::start_on(&ns.name, "op-a", ports[0], &lease_args)),
        Some(Operator::start_on(&ns.name, "op-b", ports[1], &lease_args)),
    ];
    create(&ns, &tsvc("calls", serde_json::json!({}))).await;
    wait_status(&ns, "calls", 60, "Ready", |s| s.phase == Phase::Ready).await;

    let leases = ns.api::<Lease>();
    let holder = wait_until(Duration::from_secs(20), "lease holder", || async {
        leases.get("dialtone-operator").await.ok()?.spec?.holder_identity
    })
    .await;
    let (leader, standby) = if holder == "op-a" { (0, 1) } else { (1, 0) };

    // Both are healthy and ready; only the leader has reconciled anything.
    for port in ports {
        assert_eq!(get(&format!("http://127.0.0.1:{port}/healthz")).await.map(|r| r.0), Some(200));
        assert_eq!(get(&format!("http://127.0.0.1:{port}/readyz")).await.map(|r| r.0), Some(200));
    }
    let metrics_of = |port: u16| async move {
        get(&format!("http://127.0.0.1:{port}/metrics")).await.map(|r| r.1).unwrap_or_default()
    };
    let leader_metrics = metrics_of(ports[leader]).await;
    assert!(
        metric(&leader_metrics, "dialtone_reconciliations_total").unwrap_or(0.0) > 0.0,
        "{leader_metrics}"
    );
    let phase_line =
        format!("dialtone_service_phase{{namespace=\"{}\",name=\"calls\",phase=\"Ready\"}} 1", ns.name);
    assert!(leader_metrics.contains(&phase_line), "phase gauge missing:\n{leader_metrics}");
    assert_eq!(metric(&metrics_of(ports[standby]).await, "dialtone_reconciliations_total"), Some(0.0));

    // Kill the leader (SIGKILL: it can't release the lease); a crash must still be seen.
    let killed_at = Instant::now();
    if let Some(op) = ops[leader].take() {
        op.kill().await;
    }
    let pod = worker_pods(&ns, "calls").await[0].name_any();
    kill_worker(&ns, &pod).await;
    wait_status(&ns, "calls", 30, "failure recorded by the new leader", |s| {
        s.restart_budget.as_ref().is_some_and(|b| b.used == 1)
    })
    .await;
    let took = killed_at.elapsed();
    let new_holder = leases.get("dialtone-operator").await.ok().and_then(|l| l.spec?.holder_identity);
    assert_eq!(new_holder.as_deref(), Some(if standby == 0 { "op-a" } else { "op-b" }));
    // Lease of 4 s: the standby takes over after at most one lease duration plus a renew period.
    assert!(took < Duration::from_secs(12), "failover took {took:?}");
    let standby_metrics = metrics_of(ports[standby]).await;
    assert!(metric(&standby_metrics, "dialtone_reconciliations_total").unwrap_or(0.0) > 0.0);
    assert!(
        standby_metrics.contains("dialtone_worker_failures_total{reason=\"Error\"} 1"),
        "{standby_metrics}"
    );
    drop(ops);
    ns.delete().await;
}

/// Found by the chaos harness: a leader whose renewals fail went on reconciling after its term
/// ended, alongside the standby that took the expired Lease (two leaders, duplicated Events).
/// Here the leader reaches the apiserver through a proxy that then hangs every request, as a
/// partition does: the leader must be gone before the standby leads.
#[tokio::test]
async fn a_leader_cut_off_from_the_apiserver_steps_down_before_the_standby_leads() {
    let ns = setup("leader-cut").await;
    let lease_args = ["--leader-elect=true", "--lease-namespace", ns.name.as_str(), "--lease-duration", "4"];
    let proxy = Proxy::start(testing::kubeconfig_port(), Duration::ZERO).await.expect("start the proxy");
    let text = std::fs::read_to_string(testing::kubeconfig_path()).expect("read the kubeconfig");
    let kubeconfig =
        testing::repo_root().join("target").join("e2e-logs").join(format!("{}.kubeconfig", ns.name));
    std::fs::write(&kubeconfig, proxy.kubeconfig(&text)).expect("write the proxied kubeconfig");
    let mut cut = Operator::start_through(&ns.name, "op-cut", &kubeconfig, testing::free_port(), &lease_args);
    let leases = ns.api::<Lease>();
    let holder = || async { leases.get("dialtone-operator").await.ok()?.spec?.holder_identity };
    wait_until(Duration::from_secs(20), "op-cut leading", || async {
        (holder().await.as_deref() == Some("op-cut")).then_some(())
    })
    .await;
    let _standby = Operator::start_on(&ns.name, "op-b", testing::free_port(), &lease_args);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(holder().await.as_deref(), Some("op-cut"), "the standby waits while the leader renews");

    proxy.stall();
    let stalled = Instant::now();
    wait_until(Duration::from_secs(20), "op-b leading", || async {
        (holder().await.as_deref() == Some("op-b")).then_some(())
    })
    .await;
    assert!(cut.exited(), "op-cut still runs, {:?} after the stall, while op-b leads", stalled.elapsed());
    let log = std::fs::read_to_string(&cut.log).unwrap_or_default();
    assert!(log.contains("the leader Lease was not renewed in time"), "{log}");
    ns.delete().await;
}
