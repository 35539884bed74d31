//! `crds/` holds exactly the CRDs generated from the Rust types.
//! Regenerate with `UPDATE_CRDS=1 cargo test -p wasm-operator --test crds`.

use std::path::PathBuf;

#[test]
fn committed_crds_match_the_rust_types() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../crds");
    let update = std::env::var_os("UPDATE_CRDS").is_some();
    for (file, crd) in wasm_operator::crd::all() {
        let generated = wasm_operator::crd::to_yaml(&crd).unwrap();
        let path = dir.join(file);
        if update {
            std::fs::write(&path, &generated).unwrap();
        }
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            committed == generated,
            "{} is out of date with the Rust types; run UPDATE_CRDS=1 cargo test -p wasm-operator --test crds",
            path.display()
        );
    }
}

#[test]
fn the_generated_crd_parses_back_as_a_crd() {
    for (_, crd) in wasm_operator::crd::all() {
        let yaml = wasm_operator::crd::to_yaml(&crd).unwrap();
        let parsed: k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition =
            serde_saphyr::from_str(&yaml).unwrap();
        assert_eq!(parsed, crd);
    }
}
