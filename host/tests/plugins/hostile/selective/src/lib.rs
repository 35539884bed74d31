//! Hostile test guest: `reconcile` panics for objects whose name starts with
//! `trap-` and publishes a ConfigMap for every other object, to test that a
//! trap on one object does not stop the reconciles of the others.

use wasm_operator_sdk::{
    ChildBuilder, Context, GroupVersionKind, Plugin, PluginError, PluginInfo, Request, Response,
    export_plugin,
};

/// Traps on `trap-*`, reconciles the rest.
pub struct Selective;

impl Plugin for Selective {
    fn describe() -> PluginInfo {
        PluginInfo::new(
            "hostile-selective",
            "0.1.0",
            GroupVersionKind::new("examples.systems.mikemiller.tech", "v1alpha1", "Greeting"),
        )
        .child_kind(GroupVersionKind::core("v1", "ConfigMap"))
    }

    fn reconcile(_ctx: &Context<'_>, req: &Request) -> Result<Response, PluginError> {
        let name = req.object.name();
        if name.starts_with("trap-") {
            panic!("hostile-selective traps on {name}");
        }
        let child = ChildBuilder::config_map(format!("{name}-greeting"))
            .namespace(req.object.namespace().unwrap_or_default())
            .data("message", "reconciled")
            .build();
        Ok(Response::new().child(child))
    }
}

export_plugin!(Selective);
