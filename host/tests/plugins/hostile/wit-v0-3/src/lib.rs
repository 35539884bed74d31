//! Hostile test guest: a working plugin built against a copy of the WIT whose
//! package version is 0.3.0, a newer minor version than the host implements
//! (and otherwise the same contract), to test that the host refuses it and
//! names the versions it accepts: a host cannot know what a newer minor
//! version added.
//!
//! `wit/plugin.wit` is the contract with only the version changed; a test keeps it so.

wit_bindgen::generate!({
    path: "wit",
    world: "plugin",
});

use exports::wasm_operator::plugin::reconciler::{
    Capabilities, FinalizeResponse, Guest, PluginInfo, ReconcileRequest, ReconcileResponse,
};
use wasm_operator::plugin::types::{GroupVersionKind, PluginError};

/// Reconciles by setting a fixed status.
struct WitV03;

impl Guest for WitV03 {
    fn describe() -> PluginInfo {
        PluginInfo {
            name: "hostile-wit-v0-3".into(),
            version: "0.3.0".into(),
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

    fn reconcile(_request: ReconcileRequest) -> Result<ReconcileResponse, PluginError> {
        Ok(ReconcileResponse {
            children: Vec::new(),
            status: Some(r#"{"message":"reconciled by a 0.3.0 plugin"}"#.into()),
            sql: Vec::new(),
            events: Vec::new(),
            requeue_after_ms: None,
        })
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

export!(WitV03);

#[cfg(test)]
mod tests {
    const CONTRACT: &str = include_str!("../../../../../../wit/plugin.wit");
    const COPY: &str = include_str!("../wit/plugin.wit");

    #[test]
    fn wit_copy_is_the_contract_with_only_the_version_changed_to_a_newer_minor() {
        let expected = CONTRACT.replacen(
            "package wasm-operator:plugin@0.2.0;",
            "package wasm-operator:plugin@0.3.0;",
            1,
        );
        assert_ne!(
            expected, CONTRACT,
            "the contract's version changed; update this guest"
        );
        assert_eq!(COPY, expected);
    }
}
