//! A minimal plugin that also makes admission decisions: it refuses Greetings
//! with an empty `spec.greeting` and fills in a default audience.
//!
//! Build: `cargo build --target wasm32-wasip2 -p wasm-operator-sdk --example admission`.

use serde_json::Value;
use wasm_operator_sdk::{
    AdmissionPlugin, AdmissionRequest, Context, GroupVersionKind, Mutation, Plugin, PluginError,
    PluginInfo, Request, Response, Validation, export_admission_plugin,
};

/// Validates and defaults Greetings; its reconcile changes nothing.
pub struct GreetingAdmission;

impl Plugin for GreetingAdmission {
    fn describe() -> PluginInfo {
        PluginInfo::new(
            "example-greeting-admission",
            "0.1.0",
            GroupVersionKind::new("examples.systems.mikemiller.tech", "v1alpha1", "Greeting"),
        )
    }

    fn reconcile(_ctx: &Context<'_>, _req: &Request) -> Result<Response, PluginError> {
        Ok(Response::new())
    }
}

impl AdmissionPlugin for GreetingAdmission {
    fn validate(_ctx: &Context<'_>, req: &AdmissionRequest) -> Result<Validation, PluginError> {
        let greeting = req.object.as_ref().and_then(|o| o.str_at("/spec/greeting"));
        Ok(match greeting {
            Some(g) if !g.trim().is_empty() => Validation::allow(),
            _ => Validation::deny("spec.greeting is required and must not be empty"),
        })
    }

    fn mutate(_ctx: &Context<'_>, req: &AdmissionRequest) -> Result<Mutation, PluginError> {
        let Some(object) = &req.object else {
            return Ok(Mutation::unchanged());
        };
        if object.pointer("/spec/audienceFrom").is_some() {
            return Ok(Mutation::unchanged());
        }
        let mut value = object.as_value().clone();
        if let Some(spec) = value.get_mut("spec").and_then(Value::as_object_mut) {
            spec.insert(
                "audienceFrom".into(),
                serde_json::json!({"configMap": "audience", "key": "who"}),
            );
        }
        Ok(Mutation::replace(value))
    }
}

export_admission_plugin!(GreetingAdmission);
