//! Hostile test guest: `reconcile` returns a 16 MiB status, to test the host's output cap.

use serde_json::json;
use wasm_operator_sdk::{
    Context, GroupVersionKind, Plugin, PluginError, PluginInfo, Request, Response, export_plugin,
};

/// The length of the status string.
const SIZE: usize = 16 << 20;

/// Returns a status of 16 MiB.
pub struct Output;

impl Plugin for Output {
    fn describe() -> PluginInfo {
        PluginInfo::new(
            "hostile-output",
            "0.1.0",
            GroupVersionKind::new("examples.systems.mikemiller.tech", "v1alpha1", "Greeting"),
        )
    }

    fn reconcile(_ctx: &Context<'_>, _req: &Request) -> Result<Response, PluginError> {
        Ok(Response::new().status(json!({ "blob": "x".repeat(SIZE) })))
    }
}

export_plugin!(Output);
