//! Test guest: an admission-only component for Greetings (WIT 0.2.0, world
//! `admission-only-plugin`), exported with the SDK's
//! `export_admission_only_plugin!`.
//!
//! It gives itself the example plugin's name (`example-greeting`) and kind,
//! so a binding can swap between it and a version that reconciles: the host
//! must run no controller and open no watch of Greetings while this version
//! is in service. It refuses Greetings whose `spec.greeting` is empty, on
//! create only, and only for Greetings labelled `admission=checked` that
//! carry a greeting field at all (its scope says so).

use wasm_operator_sdk::{
    AdmissionOnlyPlugin, AdmissionRequest, AdmissionScope, AdmitterInfo, Context, GroupVersionKind,
    Mutation, Operation, PluginError, Validation, export_admission_only_plugin,
};

/// The label its scope selects.
pub const SELECTOR: &str = "admission=checked";

/// Validates and annotates Greetings; reconciles nothing.
pub struct GreetingAdmitter;

impl AdmissionOnlyPlugin for GreetingAdmitter {
    fn describe() -> AdmitterInfo {
        AdmitterInfo::new(
            "example-greeting",
            "0.2.0-admission-only",
            GroupVersionKind::new("examples.systems.mikemiller.tech", "v1alpha1", "Greeting"),
        )
        .read_kind(GroupVersionKind::core("v1", "ConfigMap"))
        .scope(
            AdmissionScope::on([Operation::Create])
                .object_selector(SELECTOR)
                .match_condition("has-greeting", "has(object.spec.greeting)"),
        )
    }

    fn validate(ctx: &Context<'_>, req: &AdmissionRequest) -> Result<Validation, PluginError> {
        // A query proves the component has no SQL: the SDK refuses it
        // without calling the host (the component does not import `sql`).
        if let Err(error) = ctx.query("ns/db", None, "SELECT 1", &[]) {
            ctx.info("no SQL at admission", &[("error", &error.message)]);
        }
        let greeting = req.object.as_ref().and_then(|o| o.str_at("/spec/greeting"));
        Ok(match greeting {
            Some(g) if !g.trim().is_empty() => Validation::allow(),
            _ => Validation::deny("spec.greeting must not be empty (admission-only plugin)"),
        })
    }

    fn mutate(_ctx: &Context<'_>, req: &AdmissionRequest) -> Result<Mutation, PluginError> {
        let Some(object) = &req.object else {
            return Ok(Mutation::unchanged());
        };
        let mut value = object.as_value().clone();
        value["metadata"]["annotations"]["examples.systems.mikemiller.tech/admitted-by"] =
            "admission-only".into();
        Ok(Mutation::replace(value))
    }
}

export_admission_only_plugin!(GreetingAdmitter);
