//! Hostile test guest: a new "version" of the Greeting plugin whose
//! `describe` names another kind (`Farewell`), to test that the operator
//! refuses to swap it into a binding that reconciles `Greeting`.

use wasm_operator_sdk::{
    Context, GroupVersionKind, Plugin, PluginError, PluginInfo, Request, Response, export_plugin,
};

/// Reconciles `Farewell` with an empty decision.
pub struct OtherKind;

impl Plugin for OtherKind {
    fn describe() -> PluginInfo {
        PluginInfo::new(
            "example-greeting",
            "0.3.0",
            GroupVersionKind::new("examples.systems.mikemiller.tech", "v1alpha1", "Farewell"),
        )
    }

    fn reconcile(_ctx: &Context<'_>, _req: &Request) -> Result<Response, PluginError> {
        Ok(Response::new())
    }
}

export_plugin!(OtherKind);
