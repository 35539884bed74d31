//! Hostile test guest: `reconcile` allocates and touches 1 GiB, to test the host's memory cap.

use std::hint::black_box;

use serde_json::json;
use wasm_operator_sdk::{
    Context, GroupVersionKind, Plugin, PluginError, PluginInfo, Request, Response, export_plugin,
};

/// How much it allocates.
const SIZE: usize = 1 << 30;
/// Wasm page size: writing one byte per page commits the whole allocation.
const PAGE: usize = 64 * 1024;

/// Allocates 1 GiB. The allocation is infallible, so when the host refuses to
/// grow memory the guest aborts (a trap) instead of returning an error.
pub struct Memory;

impl Plugin for Memory {
    fn describe() -> PluginInfo {
        PluginInfo::new(
            "hostile-memory",
            "0.1.0",
            GroupVersionKind::new("examples.systems.mikemiller.tech", "v1alpha1", "Greeting"),
        )
    }

    fn reconcile(_ctx: &Context<'_>, _req: &Request) -> Result<Response, PluginError> {
        let mut block = black_box(vec![0_u8; SIZE]);
        for offset in (0..SIZE).step_by(PAGE) {
            block[offset] = 1;
        }
        let touched = black_box(&block)
            .iter()
            .step_by(PAGE)
            .filter(|&&b| b == 1)
            .count();
        Ok(Response::new().status(json!({ "touchedPages": touched })))
    }
}

export_plugin!(Memory);
