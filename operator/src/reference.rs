//! The TelephonyService field reference (docs/telephonyservice.md), generated from the CRD schema
//! so the documented defaults and bounds are the ones the apiserver enforces.

use serde_json::Value;

/// Kubernetes types passed through as they are: documented upstream, not field by field here.
const UPSTREAM: &[(&str, &str)] = &[
    ("spec.resources", "https://kubernetes.io/docs/concepts/configuration/manage-resources-containers/"),
    ("spec.pod.affinity", "https://kubernetes.io/docs/concepts/scheduling-eviction/assign-pod-node/"),
    ("spec.pod.tolerations", "https://kubernetes.io/docs/concepts/scheduling-eviction/taint-and-toleration/"),
    (
        "spec.pod.env",
        "https://kubernetes.io/docs/tasks/inject-data-application/define-environment-variable-container/",
    ),
];

fn compact(v: &Value) -> String {
    match v {
        Value::String(s) => format!("`{s}`"),
        other => format!("`{other}`"),
    }
}

fn bounds(s: &Value) -> String {
    let mut out = vec![];
    match (s.get("minimum"), s.get("maximum")) {
        (Some(a), Some(b)) => out.push(format!("{a}..{b}")),
        (Some(a), None) => out.push(format!("≥ {a}")),
        (None, Some(b)) => out.push(format!("≤ {b}")),
        (None, None) => {}
    }
    match (s.get("minLength"), s.get("maxLength")) {
        (Some(a), Some(b)) => out.push(format!("length {a}..{b}")),
        (None, Some(b)) => out.push(format!("length ≤ {b}")),
        _ => {}
    }
    if let Some(values) = s.get("enum").and_then(Value::as_array) {
        out.push(values.iter().map(compact).collect::<Vec<_>>().join(", "));
    }
    out.join("; ")
}

fn type_of(s: &Value) -> String {
    let ty = s.get("type").and_then(Value::as_str).unwrap_or("object");
    match (ty, s.pointer("/items/type").and_then(Value::as_str)) {
        ("array", Some(item)) => format!("array of {item}"),
        ("object", _) if s.get("additionalProperties").is_some() => "map of string".into(),
        _ => ty.into(),
    }
}

fn rows(schema: &Value, path: &str, required: bool, out: &mut Vec<String>) {
    let upstream = UPSTREAM.iter().find(|(p, _)| *p == path);
    let mut description = schema.get("description").and_then(Value::as_str).unwrap_or("").replace('\n', " ");
    if let Some((_, link)) = upstream {
        description = format!("{description} (Kubernetes type: [reference]({link}))").trim().to_string();
    }
    // An object's default is spelled out field by field below it, except for upstream types.
    let default = match schema.get("default") {
        Some(Value::Object(m)) if upstream.is_none() || m.is_empty() => String::new(),
        None => String::new(),
        Some(v) => compact(v),
    };
    out.push(format!(
        "| `{path}` | {} | {} | {} | {} | {} |",
        type_of(schema),
        if required { "yes" } else { "" },
        default,
        bounds(schema),
        description.replace('|', "\\|"),
    ));
    if upstream.is_some() {
        return;
    }
    let required: Vec<&str> = schema
        .get("required")
        .and_then(Value::as_array)
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    if let Some(props) = schema.get("properties").and_then(Value::as_object) {
        for (name, child) in props {
            rows(child, &format!("{path}.{name}"), required.contains(&name.as_str()), out);
        }
    }
}

/// The reference as Markdown.
pub fn markdown() -> String {
    let crd = crate::crd::crd_manifest();
    let spec =
        crd.pointer("/spec/versions/0/schema/openAPIV3Schema/properties/spec").cloned().unwrap_or_default();
    let mut out = vec![
        "# TelephonyService reference".to_string(),
        String::new(),
        "Generated from the CRD schema by `telephony-operator crd --reference`; a test keeps it in sync."
            .to_string(),
        "Defaults are filled in by the apiserver; values out of bounds are rejected with a message naming"
            .to_string(),
        "the field. `kubectl explain tsvc.spec --recursive` shows the same descriptions.".to_string(),
        String::new(),
        "| field | type | required | default | bounds | description |".to_string(),
        "| --- | --- | --- | --- | --- | --- |".to_string(),
    ];
    rows(&spec, "spec", true, &mut out);
    out.push(String::new());
    out.join("\n")
}
