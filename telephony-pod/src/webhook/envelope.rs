//! The webhook envelope, read tolerantly: `{"data": {"id", "event_type", "occurred_at",
//! "payload": {...}}}`. Telnyx's schemas mark nothing required, so only what we can't act
//! without (`data.id`, `data.event_type`) is demanded; a field of an unexpected type reads as
//! absent, and an event type we don't know is kept as `Other` (accepted, counted, not applied).

use serde_json::Value;

/// The longest id or field value we keep (Telnyx's are UUIDs and short enums).
const MAX_FIELD: usize = 256;

#[derive(Debug, Clone, PartialEq)]
pub struct Envelope {
    pub id: String,
    pub kind: Kind,
    pub occurred_at: Option<String>,
    pub payload: Payload,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Kind {
    Initiated,
    Answered,
    Hangup,
    RecordingSaved,
    /// Any other event type (e.g. `call.machine.detection.ended`).
    Other(String),
}

impl Kind {
    fn parse(event_type: &str) -> Kind {
        match event_type {
            "call.initiated" => Kind::Initiated,
            "call.answered" => Kind::Answered,
            "call.hangup" => Kind::Hangup,
            "call.recording.saved" => Kind::RecordingSaved,
            other => Kind::Other(other.to_string()),
        }
    }

    /// Telnyx's name for it, and the label of `telephony_webhooks_total{event}` (unknown types
    /// share one label, so a sender can't grow the metric without bound).
    pub fn label(&self) -> &str {
        match self {
            Kind::Initiated => "call.initiated",
            Kind::Answered => "call.answered",
            Kind::Hangup => "call.hangup",
            Kind::RecordingSaved => "call.recording.saved",
            Kind::Other(_) => "other",
        }
    }
}

/// The payload fields the call store uses.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Payload {
    pub call_control_id: Option<String>,
    pub call_leg_id: Option<String>,
    pub call_session_id: Option<String>,
    pub direction: Option<String>,
    pub from: Option<String>,
    pub to: Option<String>,
    pub hangup_cause: Option<String>,
    pub hangup_source: Option<String>,
    pub recording_urls: Vec<(String, String)>,
    /// The worker that placed the call, from the `client_state` Telnyx echoes (see `owner`).
    pub owner: Option<std::net::SocketAddr>,
}

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum Malformed {
    #[error("the body is not JSON: {0}")]
    NotJson(String),
    #[error("data.{0} is missing or not a string")]
    Missing(&'static str),
}

pub fn parse(body: &[u8]) -> Result<Envelope, Malformed> {
    let root: Value = serde_json::from_slice(body).map_err(|e| Malformed::NotJson(e.to_string()))?;
    let data = root.get("data").unwrap_or(&Value::Null);
    let id = text(data, "id").ok_or(Malformed::Missing("id"))?;
    let event_type = text(data, "event_type").ok_or(Malformed::Missing("event_type"))?;
    let p = data.get("payload").unwrap_or(&Value::Null);
    Ok(Envelope {
        id,
        kind: Kind::parse(&event_type),
        occurred_at: text(data, "occurred_at"),
        payload: Payload {
            call_control_id: text(p, "call_control_id"),
            call_leg_id: text(p, "call_leg_id"),
            call_session_id: text(p, "call_session_id"),
            direction: text(p, "direction"),
            from: text(p, "from"),
            to: text(p, "to"),
            hangup_cause: text(p, "hangup_cause"),
            hangup_source: text(p, "hangup_source"),
            recording_urls: urls(p.get("recording_urls")),
            owner: p.get("client_state").and_then(Value::as_str).and_then(super::owner::owner),
        },
    })
}

/// A string field, trimmed to a sane length; anything else reads as absent.
fn text(v: &Value, key: &str) -> Option<String> {
    let s = v.get(key)?.as_str()?;
    (!s.is_empty()).then(|| s.chars().take(MAX_FIELD).collect())
}

/// `{"mp3": "https://…", "wav": "https://…"}`: http(s) URLs only (the spec's own example is
/// http), at most a few.
fn urls(v: Option<&Value>) -> Vec<(String, String)> {
    let Some(map) = v.and_then(Value::as_object) else { return Vec::new() };
    map.iter()
        .filter_map(|(format, url)| {
            let url = url.as_str()?;
            let web = url.starts_with("https://") || url.starts_with("http://");
            (web && url.len() <= 4096 && format.len() <= 16).then(|| (format.clone(), url.to_string()))
        })
        .take(4)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hangup_as_the_spec_shapes_it() {
        let body = br#"{"data":{"record_type":"event","event_type":"call.hangup","id":"0ccc7b54-4df3-4bca-a65a-3da1ecc777f0",
            "occurred_at":"2018-02-02T22:25:27.521992Z","payload":{"call_control_id":"v3:abc","call_leg_id":"leg",
            "call_session_id":"sess","hangup_cause":"normal_clearing","hangup_source":"caller","state":"hangup"}}}"#;
        let e = parse(body).unwrap();
        assert_eq!(e.kind, Kind::Hangup);
        assert_eq!(e.id, "0ccc7b54-4df3-4bca-a65a-3da1ecc777f0");
        assert_eq!(e.payload.call_control_id.as_deref(), Some("v3:abc"));
        assert_eq!(e.payload.hangup_cause.as_deref(), Some("normal_clearing"));
        assert_eq!(e.payload.hangup_source.as_deref(), Some("caller"));
    }

    #[test]
    fn unknown_types_and_odd_fields_are_tolerated() {
        let e = parse(br#"{"data":{"id":"1","event_type":"call.dtmf.received","payload":{"call_control_id":7}},"meta":{"attempt":2}}"#)
            .unwrap();
        assert_eq!(e.kind, Kind::Other("call.dtmf.received".into()));
        assert_eq!(e.kind.label(), "other");
        assert_eq!(e.payload.call_control_id, None);
        let e = parse(
            br#"{"data":{"id":"2","event_type":"call.recording.saved","payload":{
            "recording_urls":{"mp3":"https://s3/x.mp3","wav":"javascript:alert(1)","odd":5}}}}"#,
        )
        .unwrap();
        assert_eq!(e.payload.recording_urls, vec![("mp3".to_string(), "https://s3/x.mp3".to_string())]);
    }

    #[test]
    fn what_we_cannot_act_without_is_named() {
        assert!(matches!(parse(b"not json"), Err(Malformed::NotJson(_))));
        assert_eq!(parse(br#"{"data":{"event_type":"call.hangup"}}"#), Err(Malformed::Missing("id")));
        assert_eq!(parse(br#"{"data":{"id":"x"}}"#), Err(Malformed::Missing("event_type")));
        assert_eq!(parse(br#"[1,2]"#), Err(Malformed::Missing("id")));
        let deep = "[".repeat(10_000) + &"]".repeat(10_000);
        assert!(matches!(parse(deep.as_bytes()), Err(Malformed::NotJson(_))));
    }
}
