//! The committed CRD YAML (top-level and the chart's copy) must be exactly what the Rust types
//! generate.

#[test]
fn committed_crds_match_the_generated_one() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let generated = telephony_operator::crd::crd_yaml().expect("generate CRD");
    for path in ["crds/telephonyservice.yaml", "charts/dialtone/crds/telephonyservice.yaml"] {
        let committed = std::fs::read_to_string(root.join(path)).unwrap_or_default();
        assert!(
            committed == generated,
            "{path} is stale: run `cargo run -p telephony-operator -- crd > {path}` and commit it"
        );
    }
}

#[test]
fn committed_field_reference_matches_the_schema() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let path = "docs/telephonyservice.md";
    let committed = std::fs::read_to_string(root.join(path)).unwrap_or_default();
    assert!(
        committed == telephony_operator::reference::markdown(),
        "{path} is stale: run `cargo run -p telephony-operator -- crd --reference > {path}` and commit it"
    );
}
