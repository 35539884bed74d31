//! Hostile test guest: a component whose `reconciler` describes one plugin
//! (Greetings) while its `admission-info` describes another (Pods), to test
//! that the host refuses it naming both: a component admits for the plugin
//! and kind it reconciles.

use wasm_operator_sdk::prelude::*;
use wasm_operator_sdk::{AdmissionOnlyPlugin, AdmitterInfo, export_admission_only_plugin};

/// The reconciler: Greetings.
pub struct Reconciles;

impl Plugin for Reconciles {
    fn describe() -> PluginInfo {
        PluginInfo::new(
            "hostile-admission-mismatch",
            "0.1.0",
            GroupVersionKind::new("examples.systems.mikemiller.tech", "v1alpha1", "Greeting"),
        )
    }

    fn reconcile(_ctx: &Context<'_>, _req: &Request) -> Result<Response, PluginError> {
        Ok(Response::new())
    }
}

/// The admission side: another name, another kind.
pub struct Admits;

impl AdmissionOnlyPlugin for Admits {
    fn describe() -> AdmitterInfo {
        AdmitterInfo::new("someone-else", "0.1.0", GroupVersionKind::core("v1", "Pod"))
    }
}

export_plugin!(Reconciles);
export_admission_only_plugin!(Admits);
