//! Every label, annotation, field manager and reporter name Dialtone writes, in one place, so the
//! operator, the simulated node, the benchmarks and the tests can't drift apart; and what
//! Kubernetes accepts as a name.

/// Who manages what the operator writes: the server-side apply field manager, the
/// `app.kubernetes.io/managed-by` value on the workers, and the Events' reporting controller.
pub const MANAGER: &str = "dialtone-operator";

/// On the worker Deployment, Service and pods: the TelephonyService they belong to.
pub const SERVICE_LABEL: &str = "dialtone.dev/service";

/// On the worker Deployment and Service: the hash of what was last applied (the operator skips
/// an apply that would change nothing), by [`fnv1a`].
pub const APPLIED_HASH: &str = "dialtone.dev/applied-hash";

/// On a TelephonyService: a new value resets its restart budget.
pub const RESET_RESTART_BUDGET: &str = "dialtone.dev/reset-restart-budget";

/// How a draining worker's `/readyz` message and termination message start when its drain ended
/// live calls (telephony-pod's `drain::cut_message`; the worker doesn't link this crate, and its
/// test checks the prefix).
pub const DRAIN_TIMEOUT_MESSAGE: &str = "drain timeout:";

/// The Kubernetes recommended labels (app.kubernetes.io/*), on every worker object.
pub mod app {
    pub const NAME: &str = "app.kubernetes.io/name";
    pub const INSTANCE: &str = "app.kubernetes.io/instance";
    pub const COMPONENT: &str = "app.kubernetes.io/component";
    pub const PART_OF: &str = "app.kubernetes.io/part-of";
    pub const MANAGED_BY: &str = "app.kubernetes.io/managed-by";
}

/// The simulated node's (sim-node) own names: the benchmarks and tests set faults through them.
pub mod sim {
    /// Field manager of the simulated kubelet's pod status writes.
    pub const FIELD_MANAGER: &str = "dialtone-sim-node";
    /// On a pod: the fault to play (`crash`, `oom`, `hang`, `not-ready`...).
    pub const FAULT: &str = "sim.dialtone.dev/fault";
    /// On a pod: the fault value already played, so each is played once.
    pub const FAULT_APPLIED: &str = "sim.dialtone.dev/fault-applied";
}

/// FNV-1a: stable across builds and Rust versions (unlike `DefaultHasher`), for change detection
/// (the applied hash, the readiness service's ETags).
pub fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3))
}

/// RFC 1123 subdomain, as Kubernetes object names.
pub fn dns_subdomain(s: &str) -> bool {
    !s.is_empty() && s.len() <= 253 && s.split('.').all(dns_label)
}

/// RFC 1123 label, as namespace and Service names.
pub fn dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}
