//! Dialtone's operator: supervises telephony worker pods declared by `TelephonyService` objects.
//!
//! Observe → decide → act: the decisions (desired children, failure detection, the restart budget
//! and backoff, the status to write) are pure functions over plain data, unit tested without any
//! API; `controller` is the thin layer that talks to Kubernetes.

pub use dialtone_api::{crd, names};

pub mod admin;
pub mod backoff;
pub mod by_uid;
pub mod cli;
pub mod conditions;
pub mod controller;
pub mod desired;
pub mod failover;
pub mod heap;
pub mod leader;
pub mod liveness;
pub mod metrics;
pub mod reference;
pub mod restart_budget;
pub mod rollback;
pub mod slim;
pub mod status_cache;
pub mod supervisor;
pub mod telemetry;
pub mod validate;
pub mod worker_readiness;
