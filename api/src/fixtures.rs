//! Test fixtures shared by the unit tests of the operator and the readiness service (feature
//! `fixtures`, enabled by their dev-dependencies only).

use crate::crd::{TelephonyService, TelephonyServiceSpec};

/// `shop/calls`: the smallest valid TelephonyService (schema defaults for everything else).
pub fn sample() -> TelephonyService {
    let spec: TelephonyServiceSpec = serde_json::from_value(serde_json::json!({
        "image": "registry.example.com/dialtone/telephony-pod:0.1.0",
        "telnyx": { "apiKeySecretRef": { "name": "telnyx" }, "connectionId": "conn-1" }
    }))
    .expect("a valid spec");
    let mut t = TelephonyService::new("calls", spec);
    t.metadata.namespace = Some("shop".into());
    t.metadata.uid = Some("uid-1".into());
    t
}
