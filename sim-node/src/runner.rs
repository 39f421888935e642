//! The thin layer around [`crate::kubelet::plan`]: watches pods and performs its actions.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use jiff::Timestamp;
use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams, Preconditions};
use kube::runtime::controller::{self, Action as Requeue, Controller};
use kube::runtime::watcher;
use kube::{Client, ResourceExt};

use crate::kubelet::{self, Action};
use crate::Config;
use dialtone_api::names::sim::{FAULT_APPLIED, FIELD_MANAGER};

#[derive(Debug, thiserror::Error)]
#[error("{action} pod {namespace}/{name}: {source}")]
pub struct Error {
    action: &'static str,
    namespace: String,
    name: String,
    source: kube::Error,
}

struct Ctx {
    client: Client,
    cfg: Config,
}

/// Runs until the pod watch ends (it retries on its own with backoff).
pub async fn run(client: Client, cfg: Config) {
    let concurrency = cfg.concurrency;
    let ctx = Arc::new(Ctx { client: client.clone(), cfg });
    Controller::new(Api::<Pod>::all(client), watcher::Config::default())
        .with_config(controller::Config::default().concurrency(concurrency))
        .run(reconcile, error_policy, ctx)
        .for_each(|res| async move {
            if let Err(e) = res {
                tracing::debug!(error = %e, "pod reconcile");
            }
        })
        .await;
}

async fn reconcile(pod: Arc<Pod>, ctx: Arc<Ctx>) -> Result<Requeue, Error> {
    let namespace = pod.namespace().unwrap_or_default();
    let name = pod.name_any();
    let bound_here = pod.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some(ctx.cfg.node.as_str());
    let config_error = if bound_here && kubelet::needs_start(&pod) {
        resolve_env(&ctx.client, &namespace, &pod).await.map_err(|source| Error {
            action: "resolve env of",
            namespace: namespace.clone(),
            name: name.clone(),
            source,
        })?
    } else {
        None
    };
    let cx = kubelet::Context {
        node: &ctx.cfg.node,
        node_ip: &ctx.cfg.node_ip,
        timing: &ctx.cfg.timing,
        now: Timestamp::now(),
        last_status_write: last_status_write(&pod),
        config_error,
    };
    let plan = kubelet::plan(&pod, &cx);
    let api: Api<Pod> = Api::namespaced(ctx.client.clone(), &namespace);
    let err = |action: &'static str| {
        let (namespace, name) = (namespace.clone(), name.clone());
        move |source| Error { action, namespace, name, source }
    };
    let pp = PatchParams { field_manager: Some(FIELD_MANAGER.into()), ..Default::default() };
    for action in plan.actions {
        match action {
            Action::Bind => {
                let binding = serde_json::json!({
                    "apiVersion": "v1",
                    "kind": "Binding",
                    "metadata": { "name": name },
                    "target": { "apiVersion": "v1", "kind": "Node", "name": ctx.cfg.node },
                });
                let res: Result<serde_json::Value, _> =
                    api.create_subresource("binding", &name, &PostParams::default(), &binding).await;
                ignore_gone(res).map_err(err("bind"))?;
                tracing::debug!(%namespace, %name, "bound");
            }
            Action::ForceDelete => {
                let dp = DeleteParams {
                    grace_period_seconds: Some(0),
                    preconditions: Some(Preconditions { uid: pod.uid(), resource_version: None }),
                    ..Default::default()
                };
                ignore_gone(api.delete(&name, &dp).await.map(|_| ())).map_err(err("delete"))?;
            }
            Action::MarkApplied(value) => {
                let patch = serde_json::json!({ "metadata": { "annotations": { FAULT_APPLIED: value } } });
                ignore_gone(api.patch(&name, &pp, &Patch::Merge(&patch)).await).map_err(err("annotate"))?;
            }
            Action::WriteStatus(status) => {
                let patch = serde_json::json!({ "status": status });
                ignore_gone(api.patch_status(&name, &pp, &Patch::Merge(&patch)).await)
                    .map_err(err("write status of"))?;
            }
        }
    }
    Ok(match plan.requeue {
        Some(d) => Requeue::requeue(d),
        None => Requeue::await_change(),
    })
}

fn error_policy(_pod: Arc<Pod>, error: &Error, _ctx: Arc<Ctx>) -> Requeue {
    tracing::warn!(%error, "retrying");
    Requeue::requeue(Duration::from_millis(500))
}

/// A pod deleted under our feet is not an error: its story is over.
fn ignore_gone<T>(res: Result<T, kube::Error>) -> Result<(), kube::Error> {
    match res {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => Ok(()),
        Err(e) => Err(e),
    }
}

/// Resolves the containers' required `secretKeyRef` env vars as a kubelet does: the kubelet's
/// message for the first one that can't be, if any.
async fn resolve_env(client: &Client, namespace: &str, pod: &Pod) -> Result<Option<String>, kube::Error> {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let refs = pod.spec.iter().flat_map(|s| s.containers.iter()).flat_map(|c| c.env.iter().flatten());
    for env in refs {
        let Some(sel) = env.value_from.as_ref().and_then(|v| v.secret_key_ref.as_ref()) else { continue };
        if sel.optional == Some(true) {
            continue;
        }
        match secrets.get_opt(&sel.name).await? {
            None => return Ok(Some(format!("secret \"{}\" not found", sel.name))),
            Some(secret) => {
                let has_key = secret.data.as_ref().is_some_and(|d| d.contains_key(&sel.key))
                    || secret.string_data.as_ref().is_some_and(|d| d.contains_key(&sel.key));
                if !has_key {
                    return Ok(Some(format!(
                        "couldn't find key {} in Secret {namespace}/{}",
                        sel.key, sel.name
                    )));
                }
            }
        }
    }
    Ok(None)
}

/// When we last wrote this pod's status, from managedFields (the apiserver's own clock).
fn last_status_write(pod: &Pod) -> Option<Timestamp> {
    pod.metadata
        .managed_fields
        .iter()
        .flatten()
        .filter(|m| m.manager.as_deref() == Some(FIELD_MANAGER))
        .filter(|m| m.fields_v1.as_ref().is_some_and(|f| f.0.get("f:status").is_some()))
        .filter_map(|m| m.time.as_ref().map(|t| t.0))
        .max()
}
