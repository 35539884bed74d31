//! Hostile test guest: `reconcile` spins forever, to test the host's deadline.

use std::hint::black_box;

use wasm_operator_sdk::{
    Context, GroupVersionKind, Plugin, PluginError, PluginInfo, Request, Response, export_plugin,
};

/// Loops until the host interrupts it.
pub struct Loop;

impl Plugin for Loop {
    fn describe() -> PluginInfo {
        PluginInfo::new(
            "hostile-loop",
            "0.1.0",
            GroupVersionKind::new("examples.systems.mikemiller.tech", "v1alpha1", "Greeting"),
        )
    }

    fn reconcile(_ctx: &Context<'_>, _req: &Request) -> Result<Response, PluginError> {
        let mut spins = 0_u64;
        loop {
            spins = black_box(spins.wrapping_add(1));
        }
    }
}

export_plugin!(Loop);
