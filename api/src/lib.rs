//! Dialtone's API, shared by the operator, the readiness service, the simulated node, the
//! benchmarks and the tests: the `TelephonyService` types (`crd`) and every name Dialtone writes
//! on Kubernetes objects (`names`).

pub mod crd;
#[cfg(feature = "fixtures")]
pub mod fixtures;
pub mod names;
pub mod watch;
