//! Which workers to follow: a watch of the pods the operator manages, in the readiness service's
//! namespaces. It keeps no copy of the pods, only one stream task and one [`Link`] per pod.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::runtime::watcher::{self, Event};
use kube::runtime::WatchStreamExt;
use kube::{Api, ResourceExt};
use tokio::task::AbortHandle;

use super::{follow_worker, Board, Link};
use crate::names::{app, MANAGER, SERVICE_LABEL};

/// The worker container's port, by the name the operator gives it.
const PORT_NAME: &str = "http";

/// Follows the worker pods `api` sees until the watch ends; `on_synced` runs after the first list.
pub async fn follow(api: Api<Pod>, board: Arc<Board>, on_synced: impl FnOnce()) {
    let selector = format!("{}={MANAGER},{SERVICE_LABEL}", app::MANAGED_BY);
    let config = watcher::Config::default().labels(&selector);
    let mut events = watcher::watcher(api, config).backoff(dialtone_api::watch::backoff()).boxed();
    let mut followed: HashMap<String, Followed> = HashMap::new();
    let mut relisted: Option<HashSet<String>> = None;
    let mut on_synced = Some(on_synced);
    while let Some(event) = events.next().await {
        match event {
            Ok(Event::Init) => relisted = Some(HashSet::new()),
            Ok(Event::InitApply(p)) => {
                if let (Some(key), Some(seen)) = (update(&board, &mut followed, &p), relisted.as_mut()) {
                    seen.insert(key);
                }
            }
            Ok(Event::InitDone) => {
                // Pods deleted while the watch was down are missing from the new list.
                if let Some(seen) = relisted.take() {
                    followed.retain(|key, f| seen.contains(key) || f.stop(&board));
                }
                if let Some(synced) = on_synced.take() {
                    synced();
                }
            }
            Ok(Event::Apply(p)) => {
                update(&board, &mut followed, &p);
            }
            Ok(Event::Delete(p)) => {
                if let Some(f) = followed.remove(&key_of(&p)) {
                    f.stop(&board);
                }
            }
            Err(e) => tracing::warn!(error = %e, "worker pod watch failed; retrying"),
        }
    }
}

struct Followed {
    service: String,
    pod: String,
    uid: String,
    addr: Option<SocketAddr>,
    link: Arc<Link>,
    task: Option<AbortHandle>,
}

impl Followed {
    /// Ends the stream and forgets the pod; false, for `retain`.
    fn stop(&self, board: &Board) -> bool {
        if let Some(task) = &self.task {
            task.abort();
        }
        board.remove(&self.service, &self.pod);
        false
    }
}

/// What the readiness service needs of a worker pod.
#[derive(Debug, PartialEq)]
struct Worker {
    /// `namespace/service`.
    service: String,
    pod: String,
    uid: String,
    addr: Option<SocketAddr>,
    /// The kubelet calls it Ready, and it isn't being deleted.
    ready: bool,
}

fn key_of(p: &Pod) -> String {
    format!("{}/{}", p.namespace().unwrap_or_default(), p.name_any())
}

fn worker(p: &Pod) -> Option<Worker> {
    let service = p.labels().get(SERVICE_LABEL)?;
    let status = p.status.as_ref();
    let ip: Option<IpAddr> = status.and_then(|s| s.pod_ip.as_deref()?.parse().ok());
    let port = p.spec.as_ref().and_then(|s| {
        let ports = s.containers.iter().flat_map(|c| c.ports.iter().flatten());
        ports.clone().find(|cp| cp.name.as_deref() == Some(PORT_NAME)).or(ports.clone().next())
    });
    let port = port.and_then(|cp| u16::try_from(cp.container_port).ok());
    let ready = p.metadata.deletion_timestamp.is_none()
        && status
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
    Some(Worker {
        service: format!("{}/{service}", p.namespace().unwrap_or_default()),
        pod: p.name_any(),
        uid: p.uid().unwrap_or_default(),
        addr: ip.zip(port).map(|(ip, port)| SocketAddr::new(ip, port)),
        ready,
    })
}

/// Starts following a new pod (or a new IP), and passes on the kubelet's Ready; the pod's key.
fn update(board: &Arc<Board>, followed: &mut HashMap<String, Followed>, p: &Pod) -> Option<String> {
    let w = worker(p)?;
    let key = key_of(p);
    let same = followed.get(&key).is_some_and(|f| f.uid == w.uid && f.addr == w.addr);
    if !same {
        if let Some(old) = followed.remove(&key) {
            old.stop(board);
        }
        let link = board.add(&w.service, &w.pod);
        let task = w.addr.map(|addr| {
            tokio::spawn(follow_worker(board.clone(), w.service.clone(), link.clone(), addr)).abort_handle()
        });
        let f = Followed {
            service: w.service.clone(),
            pod: w.pod.clone(),
            uid: w.uid.clone(),
            addr: w.addr,
            link,
            task,
        };
        followed.insert(key.clone(), f);
    }
    let f = followed.get(&key)?;
    board.kube_ready(&f.service, &f.link, w.ready);
    Some(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(ip: Option<&str>, ready: &str, deleting: bool) -> Pod {
        serde_json::from_value(serde_json::json!({
            "metadata": {
                "name": "calls-7d9f-x2x", "namespace": "shop", "uid": "u1",
                "labels": { SERVICE_LABEL: "calls" },
                "deletionTimestamp": deleting.then_some("2026-11-25T00:00:00Z"),
            },
            "spec": { "containers": [{ "name": "worker", "ports": [
                { "name": "metrics", "containerPort": 9090 }, { "name": "http", "containerPort": 8080 }
            ] }] },
            "status": { "podIP": ip, "conditions": [{ "type": "Ready", "status": ready }] },
        }))
        .unwrap()
    }

    #[test]
    fn a_worker_is_its_service_its_http_port_and_the_kubelets_ready() {
        let w = worker(&pod(Some("10.244.0.7"), "True", false)).unwrap();
        assert_eq!(w.service, "shop/calls");
        assert_eq!(w.addr, Some("10.244.0.7:8080".parse().unwrap()));
        assert!(w.ready);
        assert_eq!(worker(&pod(None, "True", false)).unwrap().addr, None, "no IP yet: nothing to follow");
        assert!(!worker(&pod(Some("10.244.0.7"), "False", false)).unwrap().ready);
        assert!(!worker(&pod(Some("10.244.0.7"), "True", true)).unwrap().ready, "terminating");
        let mut unlabelled = pod(Some("10.244.0.7"), "True", false);
        unlabelled.metadata.labels = None;
        assert_eq!(worker(&unlabelled), None);
    }
}
