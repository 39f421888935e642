//! Failure detection from worker pod status: what a kubelet reports, turned into failures that
//! each count once (the per-pod records persist in the TelephonyService status).

use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::{ContainerStatus, PodStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use crate::crd::{Failure, PodRecord};

/// Waiting reasons that are failures without a restart (the kubelet retries them itself).
pub const STUCK_REASONS: &[&str] = &[
    "ErrImagePull",
    "ImagePullBackOff",
    "InvalidImageName",
    "CreateContainerConfigError",
    "CreateContainerError",
];

/// kube-scheduler's reason for a pod no node takes; the service's Ready reason and Event say it too.
pub const UNSCHEDULABLE: &str = "Unschedulable";

/// A start error that is the kubelet's own and passes by itself: its Secret cache not yet synced
/// ("failed to sync secret cache: timed out waiting for the condition"), because the Node
/// authorizer had not yet linked the new pod's Secret to the node. On the local real node it hit
/// the first pod of 3 of 8 fault tests started together; counting it spent restart budget on
/// nothing the worker did.
fn kubelet_hiccup(message: &str) -> bool {
    message.contains("failed to sync")
}

/// The facts about one worker pod that supervision needs.
#[derive(Debug, Clone, PartialEq)]
pub struct PodObservation {
    pub name: String,
    pub deleting: bool,
    pub ready: bool,
    /// Since when the pod has not been Ready (its Ready condition's last transition, or its start).
    pub not_ready_since: Option<Timestamp>,
    /// Some container is running (not waiting): a hung worker rather than a start problem.
    pub running: bool,
    /// Container exits the kubelet has seen: restartCounts, plus containers dead and not yet
    /// restarted (see [`exits`]).
    pub restarts: i32,
    /// How the last container exit ended: reason and exit code.
    pub last_exit: Option<(String, i32)>,
    /// The last line the exited container wrote (its termination message: the worker Deployment
    /// sets `FallbackToLogsOnError`), e.g. the worker's configuration error.
    pub last_words: Option<String>,
    /// A container's waiting reason and message.
    pub waiting: Option<(String, String)>,
    /// The scheduler's word on why no node takes the pod (`PodScheduled=False`, `Unschedulable`).
    /// Not a failure: the worker never ran, and a node may yet be added.
    pub unschedulable: Option<String>,
    /// The pod's IP, where the worker can be asked why it is not Ready.
    pub ip: Option<String>,
    /// Why a running worker is not Ready, in its own words (filled by `worker_readiness`); for a
    /// draining one, what its drain has done.
    pub not_ready_reason: Option<String>,
    /// A draining worker's live calls, as it counts them (filled by `worker_readiness`).
    pub active_calls: Option<u32>,
    /// Its ReplicaSet's `pod-template-hash`: which rollout it belongs to (see `rollback`).
    pub template: Option<String>,
}

impl PodObservation {
    /// For tests: the operator itself builds observations from its slim pod cache (`new`).
    #[cfg(test)]
    pub fn from_pod(pod: &k8s_openapi::api::core::v1::Pod) -> PodObservation {
        PodObservation::new(&pod.metadata, pod.status.clone())
    }

    /// From a pod's parts, as a watch decodes them (see `slim`).
    pub fn new(metadata: &ObjectMeta, status: Option<PodStatus>) -> PodObservation {
        let status = status.unwrap_or_default();
        let ready_cond = status.conditions.iter().flatten().find(|c| c.type_ == "Ready");
        let ready = ready_cond.is_some_and(|c| c.status == "True");
        let containers = status.container_statuses.unwrap_or_default();
        let started = status.start_time.or_else(|| metadata.creation_timestamp.clone());
        let not_ready_since = if ready {
            None
        } else {
            ready_cond.and_then(|c| c.last_transition_time.clone()).or(started).map(|t| t.0)
        };
        let waiting = containers.iter().find_map(|c| {
            let w = c.state.as_ref()?.waiting.as_ref()?;
            Some((w.reason.clone().unwrap_or_default(), w.message.clone().unwrap_or_default()))
        });
        let exited = containers.iter().find_map(|c| {
            c.state.as_ref()?.terminated.clone().or_else(|| c.last_state.as_ref()?.terminated.clone())
        });
        let last_exit =
            exited.as_ref().map(|t| (t.reason.clone().unwrap_or_else(|| "Error".into()), t.exit_code));
        // A process killed from outside (SIGKILL, the OOM killer) said nothing about it.
        let said = exited.filter(|t| t.exit_code != 137 && t.reason.as_deref() != Some("OOMKilled"));
        let last_words = said.and_then(|t| t.message).as_deref().and_then(last_line);
        let ip = status.pod_ip.clone();
        let unschedulable = status.conditions.iter().flatten().find_map(|c| {
            let no_node = c.type_ == "PodScheduled" && c.status == "False";
            (no_node && c.reason.as_deref() == Some(UNSCHEDULABLE))
                .then(|| c.message.clone().unwrap_or_default())
        });
        PodObservation {
            name: metadata.name.clone().unwrap_or_default(),
            deleting: metadata.deletion_timestamp.is_some(),
            ready,
            not_ready_since,
            running: containers.iter().any(|c| c.state.as_ref().is_some_and(|s| s.running.is_some())),
            restarts: containers.iter().map(exits).sum(),
            last_exit,
            last_words,
            waiting,
            unschedulable,
            ip,
            not_ready_reason: None,
            active_calls: None,
            template: metadata.labels.as_ref().and_then(|l| l.get(TEMPLATE_LABEL)).cloned(),
        }
    }

    fn stuck_reason(&self) -> Option<&(String, String)> {
        self.waiting.as_ref().filter(|(r, m)| STUCK_REASONS.contains(&r.as_str()) && !kubelet_hiccup(m))
    }
}

/// Draining workers that ended live calls at their drain timeout, with the worker's own words:
/// its draining `/readyz` answer, or its termination message.
pub fn drain_cuts(pods: &[PodObservation]) -> Vec<(String, String)> {
    let cut = |w: &&str| w.starts_with(crate::names::DRAIN_TIMEOUT_MESSAGE);
    pods.iter()
        .filter(|p| p.deleting)
        .filter_map(|p| {
            let words =
                [&p.not_ready_reason, &p.last_words].into_iter().flatten().map(String::as_str).find(cut)?;
            Some((p.name.clone(), words.to_string()))
        })
        .collect()
}

/// The label a Deployment puts on its pods: the hash of their template.
pub const TEMPLATE_LABEL: &str = "pod-template-hash";

/// Longest excerpt of a termination message kept in a failure (status and Events stay small).
const LAST_WORDS_MAX: usize = 200;

/// The last non-empty line of a termination message, cut to [`LAST_WORDS_MAX`] characters.
fn last_line(message: &str) -> Option<String> {
    let line = message.lines().rev().map(str::trim).find(|l| !l.is_empty())?;
    Some(line.chars().take(LAST_WORDS_MAX).collect())
}

/// How many times a container has exited. The kubelet raises restartCount only when it starts
/// the next container, which CrashLoopBackOff delays by 10 s doubling to 5 min; meanwhile the dead
/// one shows as `state.terminated`, then as `waiting: CrashLoopBackOff`. Counting it then sees a
/// failure when it happens (0.2-1 s after a kill on the real node), and the restart that follows
/// adds nothing.
fn exits(c: &ContainerStatus) -> i32 {
    let state = c.state.as_ref();
    let dead = state.is_some_and(|s| {
        s.terminated.is_some()
            || s.waiting.as_ref().and_then(|w| w.reason.as_deref()) == Some("CrashLoopBackOff")
    });
    c.restart_count + i32::from(dead)
}

/// What detection found.
#[derive(Debug, Default, PartialEq)]
pub struct Detection {
    /// New failures, each to be counted once.
    pub failures: Vec<Failure>,
    /// Updated per-pod records. Pods that no longer exist are dropped, and so are pods with nothing
    /// counted yet: a missing record means the same, and a new pod then costs no status write.
    pub records: Vec<PodRecord>,
    /// Pods running but not Ready for longer than the startup timeout: candidates for an
    /// operator-initiated restart (counted as a failure when the restart happens).
    pub hung: Vec<String>,
}

pub fn detect(
    pods: &[PodObservation],
    known: &[PodRecord],
    startup_timeout: Duration,
    now: Timestamp,
) -> Detection {
    let mut out = Detection::default();
    let at = Time(truncate(now));
    for pod in pods.iter().filter(|p| !p.deleting) {
        let mut record = known
            .iter()
            .find(|r| r.pod == pod.name)
            .cloned()
            .unwrap_or_else(|| PodRecord { pod: pod.name.clone(), ..Default::default() });

        // Each exit is one failure, named by its cause (OOMKilled, Error), not by the kubelet's
        // CrashLoopBackOff, which only says that it waits before the next start.
        let new_restarts = (pod.restarts - record.restarts).max(0);
        if new_restarts > 0 {
            let (reason, code) = pod.last_exit.clone().unwrap_or_else(|| ("Error".into(), 1));
            let crashloop = pod.waiting.as_ref().is_some_and(|(r, _)| r == "CrashLoopBackOff");
            let mut message =
                format!("container exited: {reason} (exit code {code}); restart count {}", pod.restarts);
            if crashloop {
                message.push_str(" (CrashLoopBackOff: the kubelet waits before restarting it)");
            }
            if let Some(words) = &pod.last_words {
                message = format!("{message}: {words}");
            }
            for _ in 0..new_restarts {
                out.failures.push(Failure {
                    reason: reason.clone(),
                    message: message.clone(),
                    pod: pod.name.clone(),
                    at: at.clone(),
                });
            }
        }
        record.restarts = pod.restarts;

        // A start problem counts once per episode (ErrImagePull and ImagePullBackOff are one).
        let stuck = pod.stuck_reason().map(|(r, m)| (family(r).to_string(), r.clone(), m.clone()));
        match (&stuck, &record.waiting) {
            (Some((fam, reason, message)), known) if known.as_deref() != Some(fam.as_str()) => {
                out.failures.push(Failure {
                    reason: reason.clone(),
                    message: message.clone(),
                    pod: pod.name.clone(),
                    at: at.clone(),
                });
                record.waiting = Some(fam.clone());
            }
            (None, Some(_)) => record.waiting = None,
            _ => {}
        }

        // Running but not Ready for too long: the worker hangs; only a restart helps.
        let timed_out = pod.not_ready_since.is_some_and(|since| {
            now.duration_since(since) > jiff::SignedDuration::try_from(startup_timeout).unwrap_or_default()
        });
        if pod.running && !pod.ready && stuck.is_none() && timed_out {
            out.hung.push(pod.name.clone());
        }
        if record.restarts > 0 || record.waiting.is_some() {
            out.records.push(record);
        }
    }
    out
}

fn family(reason: &str) -> &str {
    match reason {
        "ErrImagePull" | "ImagePullBackOff" | "InvalidImageName" => "ImagePull",
        other => other,
    }
}

/// Status times are whole seconds; so are the failures recorded in it.
pub fn truncate(t: Timestamp) -> Timestamp {
    Timestamp::from_second(t.as_second()).unwrap_or(t)
}

#[cfg(test)]
mod tests;
