//! Hostile test guest: built against a copy of the WIT whose `reconciler`
//! lacks `reconcile`, to test that the host refuses to load it.
//!
//! `wit/plugin.wit` is the contract minus `reconcile`; a test keeps it so.

wit_bindgen::generate!({
    path: "wit",
    world: "plugin",
});

use exports::wasm_operator::plugin::reconciler::{
    Capabilities, FinalizeResponse, Guest, PluginInfo, ReconcileRequest,
};
use wasm_operator::plugin::types::{GroupVersionKind, PluginError};

/// Exports `describe` and `finalize` only.
struct NoReconcile;

impl Guest for NoReconcile {
    fn describe() -> PluginInfo {
        PluginInfo {
            name: "hostile-no-reconcile".into(),
            version: "0.1.0".into(),
            target: GroupVersionKind {
                group: "examples.systems.mikemiller.tech".into(),
                version: "v1alpha1".into(),
                kind: "Greeting".into(),
            },
            child_kinds: Vec::new(),
            capabilities: Capabilities {
                read_kinds: Vec::new(),
                sql: false,
            },
            settings_schema: "{}".into(),
        }
    }

    fn finalize(_request: ReconcileRequest) -> Result<FinalizeResponse, PluginError> {
        Ok(FinalizeResponse {
            done: true,
            sql: Vec::new(),
            events: Vec::new(),
            requeue_after_ms: None,
        })
    }
}

export!(NoReconcile);

#[cfg(test)]
mod tests {
    const CONTRACT: &str = include_str!("../../../../../../wit/plugin.wit");
    const COPY: &str = include_str!("../wit/plugin.wit");
    const RECONCILE: &str = "    /// Decides the desired state of one object.
    reconcile: func(request: reconcile-request) -> result<reconcile-response, plugin-error>;

";

    #[test]
    fn wit_copy_is_the_contract_without_reconcile() {
        assert!(
            CONTRACT.contains(RECONCILE),
            "the contract's reconcile changed; update this guest"
        );
        assert_eq!(COPY, CONTRACT.replacen(RECONCILE, "", 1));
    }
}
