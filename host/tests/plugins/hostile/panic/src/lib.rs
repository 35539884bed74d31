//! Hostile test guest: `reconcile` panics, to test that a trap fails only that call.

use wasm_operator_sdk::{
    Context, GroupVersionKind, Plugin, PluginError, PluginInfo, Request, Response, export_plugin,
};

/// The panic message, which the host may find on the guest's stderr.
pub const MESSAGE: &str = "deliberate panic from hostile-panic";

/// Panics in `reconcile`.
pub struct Panic;

impl Plugin for Panic {
    fn describe() -> PluginInfo {
        PluginInfo::new(
            "hostile-panic",
            "0.1.0",
            GroupVersionKind::new("examples.systems.mikemiller.tech", "v1alpha1", "Greeting"),
        )
    }

    fn reconcile(_ctx: &Context<'_>, _req: &Request) -> Result<Response, PluginError> {
        panic!("{MESSAGE}");
    }
}

export_plugin!(Panic);
