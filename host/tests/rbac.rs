//! The RBAC manifests under `deploy/` are exactly what `wasm-operator rbac`
//! derives from the bindings' grants and their plugins' `describe`.
//! Regenerate with `UPDATE_RBAC=1 cargo test --release -p wasm-operator --test rbac`.

mod support;

use std::path::{Path, PathBuf};

use wasm_operator::rbac::{ServiceAccount, manifests};

fn deploy() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../deploy")
}

fn operator() -> ServiceAccount {
    ServiceAccount {
        namespace: "wasm-operator".into(),
        name: "wasm-operator".into(),
    }
}

/// Compares (or, with UPDATE_RBAC, writes) `path` with the generated text.
fn check(path: &Path, generated: &str) {
    if std::env::var_os("UPDATE_RBAC").is_some() {
        std::fs::write(path, generated).unwrap();
    }
    let committed = std::fs::read_to_string(path).unwrap_or_default();
    assert!(
        committed == generated,
        "{} is out of date with the bindings' grants; run UPDATE_RBAC=1 cargo test --release -p wasm-operator --test rbac\n--- generated:\n{generated}",
        path.display()
    );
}

#[tokio::test]
async fn the_hosts_own_role_is_the_generated_one() {
    let generated = manifests(
        &support::RUNTIME,
        &[],
        &support::plugin_dir(),
        "wasm-operator",
        &operator(),
    )
    .await
    .unwrap();
    check(&deploy().join("base/rbac.yaml"), &generated);
}

#[tokio::test]
async fn each_components_role_is_derived_from_its_bindings() {
    for (component, bindings) in [("postgres", "bindings.yaml"), ("example", "binding.yaml")] {
        let dir = deploy().join("components").join(component);
        let generated = manifests(
            &support::RUNTIME,
            &[dir.join(bindings)],
            &support::plugin_dir(),
            &format!("wasm-operator-{component}"),
            &operator(),
        )
        .await
        .unwrap();
        check(&dir.join("rbac.yaml"), &generated);
    }
}

#[tokio::test]
async fn a_binding_whose_component_is_missing_is_named() {
    let dir = deploy().join("components/postgres");
    let error = manifests(
        &support::RUNTIME,
        &[dir.join("bindings.yaml")],
        Path::new("/nonexistent"),
        "x",
        &operator(),
    )
    .await
    .unwrap_err();
    let message = error.to_string();
    assert!(
        message.contains("binding postgres-server") && message.contains("scripts/build-plugins.sh"),
        "{message}"
    );
}
