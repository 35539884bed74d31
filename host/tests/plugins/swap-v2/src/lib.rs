//! Version 2 of the example Greeting plugin, for the hot-swap tests.
//!
//! The same plugin as `plugins/example` in every way the operator checks
//! before a swap (name `example-greeting`, kind `Greeting`, ConfigMap
//! children and reads, the same settings schema), with a visibly different
//! decision: the message ends in ` (v2)` and the child carries
//! `pluginVersion: 0.2.0`. It ignores `spec.audienceFrom`.

use serde::Deserialize;
use serde_json::json;
use wasm_operator_sdk::{
    ChildBuilder, Condition, Conditions, Context, GroupVersionKind, Plugin, PluginError,
    PluginInfo, Request, Response, export_plugin,
};

/// The plugin's version, also written into every child.
pub const VERSION: &str = "0.2.0";

/// `Greeting.spec`, as far as version 2 reads it.
#[derive(Debug, Deserialize)]
struct GreetingSpec {
    #[serde(default)]
    greeting: String,
}

/// The binding's settings (the same as version 1's).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Settings {
    #[serde(default = "default_audience")]
    default_audience: String,
}

fn default_audience() -> String {
    "world".to_owned()
}

fn config_map_kind() -> GroupVersionKind {
    GroupVersionKind::core("v1", "ConfigMap")
}

/// The Greeting plugin, version 2.
pub struct GreetingV2;

impl Plugin for GreetingV2 {
    fn describe() -> PluginInfo {
        PluginInfo::new(
            "example-greeting",
            VERSION,
            GroupVersionKind::new("examples.systems.mikemiller.tech", "v1alpha1", "Greeting"),
        )
        .child_kind(config_map_kind())
        .read_kind(config_map_kind())
        .settings_schema(json!({
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "type": "object",
            "properties": {"defaultAudience": {"type": "string", "default": "world"}},
            "additionalProperties": false
        }))
    }

    fn reconcile(ctx: &Context<'_>, req: &Request) -> Result<Response, PluginError> {
        let object = &req.object;
        let spec: GreetingSpec = object.spec()?;
        if spec.greeting.trim().is_empty() {
            return Err(PluginError::invalid_spec(
                "spec.greeting is required and must not be empty",
            ));
        }
        let namespace = object.namespace().ok_or_else(|| {
            PluginError::permanent("InvalidObject", "a Greeting must have a namespace")
        })?;
        let settings: Settings = req.settings_as()?;
        let message = format!("{}, {}! (v2)", spec.greeting, settings.default_audience);
        let child = ChildBuilder::new(&config_map_kind(), format!("{}-greeting", object.name()))
            .namespace(namespace)
            .label("app.kubernetes.io/name", "greeting")
            .data("message", &message)
            .data("pluginVersion", VERSION)
            .build();
        let conditions = Conditions::from_object(object).set(
            Condition::ready("Reconciled", "the greeting is published by version 2"),
            ctx.now(),
        );
        Ok(Response::new()
            .child(child)
            .status(json!({ "message": message, "conditions": conditions })))
    }
}

export_plugin!(GreetingV2);
