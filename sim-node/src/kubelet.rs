//! What a kubelet would do next for one pod, as a pure function of the pod and the clock.
//!
//! The runner feeds every pod event through [`plan`] and performs the returned actions; all the
//! timing (container start, readiness, crash-loop backoff) is derived from timestamps stored in the
//! pod's own status, so the simulated node keeps no per-pod memory and survives restarts.

use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::core::v1::{
    Container, ContainerState, ContainerStateRunning, ContainerStateTerminated, ContainerStateWaiting,
    ContainerStatus, Pod, PodCondition, PodIP, PodStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use crate::fault::Fault;
use dialtone_api::names::sim::{FAULT, FAULT_APPLIED};

/// How long the simulated kubelet takes for each step.
#[derive(Debug, Clone)]
pub struct Timing {
    /// Bound pod → containers running (image pull and container start).
    pub start: Duration,
    /// Container running → Ready (the readiness probe's first success).
    pub ready: Duration,
    /// First CrashLoopBackOff delay; doubles per restart like the kubelet's.
    pub crashloop_base: Duration,
    /// Cap of the CrashLoopBackOff delay.
    pub crashloop_max: Duration,
    /// ErrImagePull → ImagePullBackOff.
    pub image_pull_backoff: Duration,
}

impl Default for Timing {
    fn default() -> Self {
        Timing {
            start: Duration::from_millis(500),
            ready: Duration::from_millis(1000),
            crashloop_base: Duration::from_secs(10),
            crashloop_max: Duration::from_secs(300),
            image_pull_backoff: Duration::from_secs(2),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Bind the pending pod to this node (we are the scheduler too).
    Bind,
    /// Confirm a graceful deletion, as a kubelet does once containers have stopped.
    ForceDelete,
    /// Replace the kubelet-owned part of the pod's status.
    WriteStatus(Box<PodStatus>),
    /// Record (Some) or forget (None) the one-shot fault that has been acted on.
    MarkApplied(Option<String>),
}

#[derive(Debug, Default, PartialEq)]
pub struct Plan {
    pub actions: Vec<Action>,
    /// Look at the pod again after this long, even without an event.
    pub requeue: Option<Duration>,
}

/// Everything about the pod the planner needs besides the pod itself.
pub struct Context<'a> {
    pub node: &'a str,
    pub node_ip: &'a str,
    pub timing: &'a Timing,
    pub now: Timestamp,
    /// When this simulated node last wrote the pod's status (from managedFields).
    pub last_status_write: Option<Timestamp>,
    /// Why the containers' configuration can't be resolved (a missing Secret or key), as the
    /// kubelet words it; checked only while containers still have to start.
    pub config_error: Option<String>,
}

/// Whether some container still has to start (only then does the kubelet resolve its env).
pub fn needs_start(pod: &Pod) -> bool {
    let containers = pod.spec.as_ref().map_or(0, |s| s.containers.len());
    let statuses = pod.status.as_ref().and_then(|s| s.container_statuses.as_ref());
    let running = statuses
        .map_or(0, |cs| cs.iter().filter(|c| c.state.as_ref().is_some_and(|s| s.running.is_some())).count());
    running < containers
}

pub fn plan(pod: &Pod, cx: &Context) -> Plan {
    let spec = match &pod.spec {
        Some(spec) => spec,
        None => return Plan::default(),
    };
    let bound_here = spec.node_name.as_deref() == Some(cx.node);
    if pod.metadata.deletion_timestamp.is_some() {
        // Unbound pods are removed by the apiserver itself; bound ones wait for their kubelet.
        let actions = if bound_here { vec![Action::ForceDelete] } else { vec![] };
        return Plan { actions, requeue: None };
    }
    match spec.node_name.as_deref() {
        None | Some("") => {
            let ours = matches!(spec.scheduler_name.as_deref(), None | Some("default-scheduler"));
            let actions = if ours { vec![Action::Bind] } else { vec![] };
            return Plan { actions, requeue: None };
        }
        Some(_) if !bound_here => return Plan::default(),
        Some(_) => {}
    }
    let status = pod.status.clone().unwrap_or_default();
    if matches!(status.phase.as_deref(), Some("Succeeded") | Some("Failed")) {
        return Plan::default();
    }

    let annotations = pod.metadata.annotations.clone().unwrap_or_default();
    let raw_fault = annotations.get(FAULT).map(|v| v.trim().to_string());
    let applied = annotations.get(FAULT_APPLIED).cloned();
    let mut actions = Vec::new();
    let fault = match raw_fault.as_deref().and_then(Fault::parse) {
        Some(f) if f.is_one_shot() && applied.as_deref() == raw_fault.as_deref() => None,
        other => other,
    };
    match (&raw_fault, &applied) {
        (None, Some(_)) => actions.push(Action::MarkApplied(None)),
        (Some(raw), _) if fault.is_some_and(Fault::is_one_shot) => {
            actions.push(Action::MarkApplied(Some(raw.clone())))
        }
        _ => {}
    }

    let pod_start = status.start_time.as_ref().map(|t| t.0).unwrap_or(cx.now);
    let uid = pod.metadata.uid.as_deref().unwrap_or("");
    let mut wake: Option<Duration> = None;
    let mut statuses = Vec::new();
    for container in &spec.containers {
        let current = status.container_statuses.iter().flatten().find(|cs| cs.name == container.name);
        let (next, due) = next_container(container, current, fault, pod_start, uid, cx);
        statuses.push(next);
        wake = min_opt(wake, due);
    }

    let desired = pod_status(&status, statuses, pod_start, uid, cx);
    if kubelet_view(&status) != kubelet_view(&desired) {
        actions.push(Action::WriteStatus(Box::new(desired)));
    }
    Plan { actions, requeue: wake }
}

fn next_container(
    container: &Container,
    current: Option<&ContainerStatus>,
    fault: Option<Fault>,
    pod_start: Timestamp,
    uid: &str,
    cx: &Context,
) -> (ContainerStatus, Option<Duration>) {
    let t = cx.timing;
    let now = cx.now;
    let mut cs = current.cloned().unwrap_or_else(|| ContainerStatus {
        name: container.name.clone(),
        image: container.image.clone().unwrap_or_default(),
        image_id: String::new(),
        ..Default::default()
    });
    let state = cs.state.clone().unwrap_or_default();
    let waiting = state.waiting.as_ref().and_then(|w| w.reason.clone());
    let running_since = state.running.as_ref().and_then(|r| r.started_at.as_ref().map(|t| t.0));

    match fault {
        Some(f @ (Fault::Crash | Fault::Oom)) => {
            exit(&mut cs, f, running_since.unwrap_or(pod_start), now, uid);
            cs.restart_count += 1; // restarted at once, like a kubelet's first restart
            set_running(&mut cs, now, uid);
            (cs, Some(t.ready))
        }
        Some(Fault::CrashLoop) => {
            if waiting.as_deref() == Some("CrashLoopBackOff") {
                let last_exit = cs
                    .last_state
                    .as_ref()
                    .and_then(|s| s.terminated.as_ref())
                    .and_then(|t| t.finished_at.as_ref().map(|t| t.0))
                    .unwrap_or(now);
                let due = add(last_exit, crashloop_delay(t, cs.restart_count));
                if now < due {
                    return (cs, Some(until(now, due)));
                }
            }
            // Like the kubelet, restartCount rises when the container is started again, not when it
            // dies: while it waits out the back-off it is the dead container's attempt.
            if waiting.as_deref() == Some("CrashLoopBackOff") {
                cs.restart_count += 1;
            }
            exit(&mut cs, Fault::CrashLoop, running_since.unwrap_or(now), now, uid);
            let delay = crashloop_delay(t, cs.restart_count + 1);
            let message =
                format!("back-off {}s restarting failed container={} pod={}", delay.as_secs(), cs.name, uid);
            set_waiting(&mut cs, "CrashLoopBackOff", &message);
            (cs, Some(delay))
        }
        Some(Fault::ImagePull) => {
            let image = cs.image.clone();
            match waiting.as_deref() {
                Some("ImagePullBackOff") => (cs, None),
                Some("ErrImagePull") => {
                    let since = cx.last_status_write.unwrap_or(now);
                    let due = add(since, t.image_pull_backoff);
                    if now < due {
                        return (cs, Some(until(now, due)));
                    }
                    let msg = format!("Back-off pulling image \"{image}\"");
                    set_waiting(&mut cs, "ImagePullBackOff", &msg);
                    (cs, None)
                }
                _ => {
                    let msg = format!(
                        "rpc error: failed to pull and unpack image \"{image}\": not found (simulated)"
                    );
                    set_waiting(&mut cs, "ErrImagePull", &msg);
                    (cs, Some(t.image_pull_backoff))
                }
            }
        }
        Some(Fault::NotReady) => {
            if running_since.is_none() {
                set_running(&mut cs, now, uid);
            }
            cs.ready = false;
            (cs, None)
        }
        None => match running_since {
            Some(since) => {
                // Pod timestamps have whole-second resolution: pad so the wait is never shorter.
                let ready_at = add(since, t.ready + Duration::from_secs(1));
                cs.ready = now >= ready_at;
                let due = (!cs.ready).then(|| until(now, ready_at));
                (cs, due)
            }
            None => {
                let started_at = add(pod_start, t.start);
                let creating = current.is_none() || waiting.as_deref() == Some("ContainerCreating");
                if creating && now < started_at {
                    set_waiting(&mut cs, "ContainerCreating", "");
                    return (cs, Some(until(now, started_at)));
                }
                if let Some(problem) = &cx.config_error {
                    // The kubelet retries; so do we.
                    set_waiting(&mut cs, "CreateContainerConfigError", problem);
                    return (cs, Some(t.image_pull_backoff));
                }
                if waiting.as_deref() == Some("CrashLoopBackOff") {
                    cs.restart_count += 1; // the dead container's successor
                }
                set_running(&mut cs, now, uid);
                (cs, Some(t.ready))
            }
        },
    }
}

/// The container (attempt `restart_count`) died: remember how it ended.
fn exit(cs: &mut ContainerStatus, fault: Fault, started: Timestamp, now: Timestamp, uid: &str) {
    let (reason, exit_code) = fault.termination();
    cs.last_state = Some(ContainerState {
        terminated: Some(ContainerStateTerminated {
            reason: Some(reason.to_string()),
            exit_code,
            started_at: Some(Time(started)),
            finished_at: Some(Time(now)),
            container_id: Some(container_id(uid, &cs.name, cs.restart_count)),
            ..Default::default()
        }),
        ..Default::default()
    });
}

fn set_running(cs: &mut ContainerStatus, now: Timestamp, uid: &str) {
    cs.state = Some(ContainerState {
        running: Some(ContainerStateRunning { started_at: Some(Time(now)) }),
        ..Default::default()
    });
    cs.ready = false;
    cs.started = Some(true);
    cs.container_id = Some(container_id(uid, &cs.name, cs.restart_count));
    cs.image_id = format!("sim://{}", cs.image);
}

fn set_waiting(cs: &mut ContainerStatus, reason: &str, message: &str) {
    cs.state = Some(ContainerState {
        waiting: Some(ContainerStateWaiting {
            reason: Some(reason.to_string()),
            message: (!message.is_empty()).then(|| message.to_string()),
        }),
        ..Default::default()
    });
    cs.ready = false;
    cs.started = Some(false);
}

fn container_id(uid: &str, name: &str, restart: i32) -> String {
    format!("sim://{uid}/{name}/{restart}")
}

/// The kubelet's CrashLoopBackOff: base × 2^(restarts-1), capped.
pub fn crashloop_delay(t: &Timing, restart_count: i32) -> Duration {
    let exp = restart_count.saturating_sub(1).clamp(0, 20) as u32;
    t.crashloop_base.saturating_mul(1u32 << exp).min(t.crashloop_max)
}

fn pod_status(
    current: &PodStatus,
    containers: Vec<ContainerStatus>,
    pod_start: Timestamp,
    uid: &str,
    cx: &Context,
) -> PodStatus {
    let all_ready = !containers.is_empty() && containers.iter().all(|c| c.ready);
    let started = containers
        .iter()
        .any(|c| c.restart_count > 0 || c.state.as_ref().is_some_and(|s| s.running.is_some()));
    let phase = if started { "Running" } else { "Pending" };
    let ip = pod_ip(uid);
    let cond = |type_: &str, ok: bool| condition(current, type_, ok, cx.now);
    PodStatus {
        phase: Some(phase.to_string()),
        conditions: Some(vec![
            cond("Initialized", true),
            cond("Ready", all_ready),
            cond("ContainersReady", all_ready),
            cond("PodScheduled", true),
        ]),
        container_statuses: Some(containers),
        host_ip: Some(cx.node_ip.to_string()),
        pod_ip: Some(ip.clone()),
        pod_ips: Some(vec![PodIP { ip }]),
        start_time: Some(Time(pod_start)),
        ..Default::default()
    }
}

/// A pod condition whose transition time moves only when its status flips.
fn condition(current: &PodStatus, type_: &str, ok: bool, now: Timestamp) -> PodCondition {
    let status = if ok { "True" } else { "False" };
    let previous = current.conditions.iter().flatten().find(|c| c.type_ == type_ && c.status == status);
    let reason =
        (!ok && matches!(type_, "Ready" | "ContainersReady")).then(|| "ContainersNotReady".to_string());
    PodCondition {
        type_: type_.to_string(),
        status: status.to_string(),
        last_transition_time: Some(
            previous.and_then(|c| c.last_transition_time.clone()).unwrap_or(Time(now)),
        ),
        reason,
        ..Default::default()
    }
}

/// The part of a pod status the simulated kubelet owns, used to skip writes that change nothing.
fn kubelet_view(status: &PodStatus) -> serde_json::Value {
    serde_json::json!({
        "phase": status.phase,
        "conditions": status.conditions.iter().flatten()
            .map(|c| (c.type_.clone(), c.status.clone(), c.reason.clone()))
            .collect::<Vec<_>>(),
        "containerStatuses": status.container_statuses,
        "podIP": status.pod_ip,
        "startTime": status.start_time,
    })
}

/// A stable, fake pod IP derived from the pod's uid (nothing ever connects to it).
pub fn pod_ip(uid: &str) -> String {
    let h = uid.bytes().fold(0u32, |h, b| h.wrapping_mul(31).wrapping_add(u32::from(b)));
    format!("10.244.{}.{}", (h >> 8) % 256, h % 254 + 1)
}

fn add(t: Timestamp, d: Duration) -> Timestamp {
    let d = SignedDuration::try_from(d).unwrap_or(SignedDuration::MAX);
    t.saturating_add(d).unwrap_or(t)
}

fn until(now: Timestamp, then: Timestamp) -> Duration {
    Duration::try_from(then.duration_since(now)).unwrap_or(Duration::ZERO)
}

fn min_opt(a: Option<Duration>, b: Option<Duration>) -> Option<Duration> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

#[cfg(test)]
mod tests;
