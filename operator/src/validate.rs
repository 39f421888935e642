//! Checks the schema can't express on Kubernetes 1.20 (no CEL). Each problem names the field, so
//! it can go straight into the InvalidSpec condition and Event.

use crate::crd::{SecretKeyRef, TelephonyServiceSpec};
use crate::desired::{OPERATOR_LABELS, RESERVED_ENV};
#[cfg(test)]
use crate::names::SERVICE_LABEL;
use crate::names::{dns_label, dns_subdomain};

fn secret_ref(field: &str, secret: &SecretKeyRef, problems: &mut Vec<String>) {
    if !dns_subdomain(&secret.name) {
        problems.push(format!(
            "{field}.name {:?}: not a valid Secret name (lowercase letters, digits, '-' and '.')",
            secret.name
        ));
    }
    if !secret.key.chars().all(|c| c.is_ascii_alphanumeric() || "-._".contains(c)) {
        problems.push(format!(
            "{field}.key {:?}: not a valid Secret key (letters, digits, '-', '_' and '.')",
            secret.key
        ));
    }
}

pub fn validate(spec: &TelephonyServiceSpec) -> Vec<String> {
    let mut problems = Vec::new();
    if let Err(e) = image_reference(&spec.image) {
        problems.push(format!("spec.image {:?}: {e}", spec.image));
    }
    secret_ref("spec.telnyx.apiKeySecretRef", &spec.telnyx.api_key_secret_ref, &mut problems);
    if let Some(key) = &spec.telnyx.webhook_public_key_secret_ref {
        secret_ref("spec.telnyx.webhookPublicKeySecretRef", key, &mut problems);
    }
    if let Some(auth) = &spec.auth {
        secret_ref("spec.auth.tokenSecretRef", &auth.token_secret_ref, &mut problems);
    }
    if let Some(f) = &spec.failover {
        if !dns_label(&f.service) || f.namespace.as_deref().is_some_and(|n| !dns_label(n)) {
            problems.push(format!(
                "spec.failover {:?}: service and namespace must be DNS labels (lowercase letters, digits and '-')",
                f.namespace.as_deref().map_or(f.service.clone(), |n| format!("{n}/{}", f.service))
            ));
        }
    }
    match url::Url::parse(&spec.telnyx.base_url) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => {}
        _ => problems.push(format!("spec.telnyx.baseUrl {:?}: must be an http(s) URL", spec.telnyx.base_url)),
    }
    if spec.backoff.max_seconds < spec.backoff.initial_seconds {
        problems.push(format!(
            "spec.backoff.maxSeconds ({}) must be at least initialSeconds ({})",
            spec.backoff.max_seconds, spec.backoff.initial_seconds
        ));
    }
    for e in &spec.pod.env {
        if RESERVED_ENV.contains(&e.name.as_str()) {
            problems.push(format!("spec.pod.env: {} is set by the operator and can't be overridden", e.name));
        } else if !env_name(&e.name) {
            problems.push(format!("spec.pod.env: {:?} is not a valid environment variable name", e.name));
        }
    }
    for key in spec.pod.labels.keys().filter(|k| OPERATOR_LABELS.contains(&k.as_str())) {
        problems.push(format!("spec.pod.labels: {key} is set by the operator and can't be overridden"));
    }
    problems
}

/// An OCI image reference: `[registry[:port]/]path[:tag][@algo:digest]`.
fn image_reference(image: &str) -> Result<(), &'static str> {
    if image.is_empty() || image.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("must not be empty or contain spaces");
    }
    let (name_tag, digest) = match image.split_once('@') {
        Some((n, d)) => (n, Some(d)),
        None => (image, None),
    };
    if let Some(d) = digest {
        let ok = d.split_once(':').is_some_and(|(algo, hex)| {
            !algo.is_empty() && hex.len() >= 32 && hex.chars().all(|c| c.is_ascii_hexdigit())
        });
        if !ok {
            return Err("digest must look like sha256:<hex>");
        }
    }
    let last_slash = name_tag.rfind('/').map_or(0, |i| i + 1);
    let (name, tag) = match name_tag[last_slash..].split_once(':') {
        Some((_, t)) => (&name_tag[..name_tag.len() - t.len() - 1], Some(t)),
        None => (name_tag, None),
    };
    if let Some(t) = tag {
        let ok = !t.is_empty()
            && t.len() <= 128
            && t.chars().all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
            && !t.starts_with(['.', '-']);
        if !ok {
            return Err("tag must be 1-128 of letters, digits, '_', '.', '-'");
        }
    }
    let mut parts = name.split('/').peekable();
    let first = parts.peek().copied().unwrap_or_default();
    let has_registry =
        name.contains('/') && (first.contains('.') || first.contains(':') || first == "localhost");
    if has_registry {
        parts.next();
        let (host, port) = first.split_once(':').unwrap_or((first, "0"));
        if host.is_empty() || !host.chars().all(|c| c.is_ascii_alphanumeric() || ".-".contains(c)) {
            return Err("registry host is not valid");
        }
        if port.parse::<u16>().is_err() {
            return Err("registry port is not a number");
        }
    }
    for part in parts {
        let ok = !part.is_empty()
            && part.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "._-".contains(c))
            && part.starts_with(|c: char| c.is_ascii_alphanumeric())
            && part.ends_with(|c: char| c.is_ascii_alphanumeric());
        if !ok {
            return Err("repository path must be lowercase letters, digits and separators");
        }
    }
    Ok(())
}

/// What Kubernetes accepts as an environment variable name.
fn env_name(s: &str) -> bool {
    !s.is_empty()
        && !s.starts_with(|c: char| c.is_ascii_digit())
        && s.chars().all(|c| c.is_ascii_alphanumeric() || "-._".contains(c))
}

#[cfg(test)]
mod tests {
    use super::*;
    use dialtone_api::fixtures::sample;

    #[test]
    fn the_sample_is_valid() {
        assert_eq!(validate(&sample().spec), Vec::<String>::new());
    }

    #[test]
    fn image_references() {
        for ok in [
            "nginx",
            "nginx:1.25",
            "library/nginx:latest",
            "registry.example.com/dialtone/telephony-pod:0.1.0",
            "localhost:5000/w:dev",
            "ghcr.io/a/b@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
        ] {
            assert_eq!(image_reference(ok), Ok(()), "{ok}");
        }
        for bad in
            ["", "Nginx", "a b", "nginx:", "reg.io/Bad/x", "x@sha256:zz", "reg.io:port/x", "a//b", "x:-1"]
        {
            assert!(image_reference(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn every_problem_names_its_field() {
        let mut t = sample();
        t.spec.image = "Not An Image".into();
        t.spec.telnyx.api_key_secret_ref.name = "Telnyx_Secret".into();
        t.spec.telnyx.api_key_secret_ref.key = "api key".into();
        t.spec.telnyx.base_url = "ftp://x".into();
        t.spec.backoff.initial_seconds = 10;
        t.spec.backoff.max_seconds = 5;
        t.spec
            .pod
            .env
            .push(k8s_openapi::api::core::v1::EnvVar { name: "TELNYX_API_KEY".into(), ..Default::default() });
        t.spec.pod.env.push(k8s_openapi::api::core::v1::EnvVar { name: "1BAD".into(), ..Default::default() });
        t.spec.pod.labels.insert(SERVICE_LABEL.into(), "x".into());
        let problems = validate(&t.spec);
        for field in [
            "spec.image",
            "apiKeySecretRef.name",
            "apiKeySecretRef.key",
            "spec.telnyx.baseUrl",
            "spec.backoff.maxSeconds",
            "TELNYX_API_KEY",
            "1BAD",
            "spec.pod.labels",
        ] {
            assert!(problems.iter().any(|p| p.contains(field)), "{field} missing from {problems:?}");
        }
    }
}
