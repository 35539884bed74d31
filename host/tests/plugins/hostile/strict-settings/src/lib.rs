//! Hostile test guest: a new "version" of the Greeting plugin whose settings
//! schema requires `greetingStyle` and allows nothing else, so it rejects
//! the example binding's `{"defaultAudience": …}`; to test that the operator
//! refuses to swap in a version that the binding's settings do not satisfy.

use serde_json::json;
use wasm_operator_sdk::{
    Context, GroupVersionKind, Plugin, PluginError, PluginInfo, Request, Response, export_plugin,
};

/// Reconciles `Greeting` with an empty decision, under strict settings.
pub struct StrictSettings;

impl Plugin for StrictSettings {
    fn describe() -> PluginInfo {
        let config_map = GroupVersionKind::core("v1", "ConfigMap");
        PluginInfo::new(
            "example-greeting",
            "0.3.0",
            GroupVersionKind::new("examples.systems.mikemiller.tech", "v1alpha1", "Greeting"),
        )
        .child_kind(config_map.clone())
        .read_kind(config_map)
        .settings_schema(json!({
            "type": "object",
            "required": ["greetingStyle"],
            "properties": {"greetingStyle": {"enum": ["formal", "casual"]}},
            "additionalProperties": false
        }))
    }

    fn reconcile(_ctx: &Context<'_>, _req: &Request) -> Result<Response, PluginError> {
        Ok(Response::new())
    }
}

export_plugin!(StrictSettings);
