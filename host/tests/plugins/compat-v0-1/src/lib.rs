//! Test guest: a reconciler that also admits, built with wit-bindgen
//! against the frozen WIT 0.1.0 text (`wit/compat/0.1.0/plugin.wit`, world
//! `admission-plugin`), to prove that a host implementing a newer minor
//! version keeps loading and running components of 0.1.0: their imports
//! (`log`, `kube`, `sql` under `@0.1.0`), their reconciler and their
//! admission.
//!
//! It reconciles Greetings as the example plugin does, with a marked
//! message (`Hello, operators! (WIT 0.1.0)`), and gives itself the example
//! plugin's name so that a binding can swap between them. It uses no SDK:
//! the SDK builds for the newest version.

wit_bindgen::generate!({
    path: "../../../../wit/compat/0.1.0",
    world: "wasm-operator:plugin/admission-plugin@0.1.0",
});

use exports::wasm_operator::plugin::admission::{
    AdmissionRequest, Guest as Admission, Mutation, Operation, Validation,
};
use exports::wasm_operator::plugin::reconciler::{
    Capabilities, FinalizeResponse, Guest as Reconciler, PluginInfo, ReconcileRequest,
    ReconcileResponse,
};
use serde_json::{Value, json};
use wasm_operator::plugin::types::{GroupVersionKind, PluginError};
use wasm_operator::plugin::{kube, log, sql};

/// What its messages end with, so tests can tell it from the example plugin.
const MARK: &str = "(WIT 0.1.0)";

fn greeting_kind() -> GroupVersionKind {
    GroupVersionKind {
        group: "examples.systems.mikemiller.tech".into(),
        version: "v1alpha1".into(),
        kind: "Greeting".into(),
    }
}

fn config_map_kind() -> GroupVersionKind {
    GroupVersionKind {
        group: String::new(),
        version: "v1".into(),
        kind: "ConfigMap".into(),
    }
}

fn error(reason: &str, message: impl Into<String>, retryable: bool) -> PluginError {
    PluginError {
        reason: reason.into(),
        message: message.into(),
        retryable,
    }
}

fn parse(text: &str, what: &str) -> Result<Value, PluginError> {
    serde_json::from_str(text).map_err(|e| error("InvalidInput", format!("{what}: {e}"), false))
}

/// The audience: from the ConfigMap `spec.audienceFrom` names (read through
/// `kube.get`), else the binding's `defaultAudience`, else `world`.
fn audience(object: &Value, settings: &Value) -> Result<String, PluginError> {
    let fallback = settings["defaultAudience"].as_str().unwrap_or("world");
    let from = &object["spec"]["audienceFrom"];
    let (Some(name), Some(key)) = (from["configMap"].as_str(), from["key"].as_str()) else {
        return Ok(fallback.to_owned());
    };
    let namespace = object["metadata"]["namespace"].as_str();
    let found = kube::get(&config_map_kind(), namespace, name)
        .map_err(|e| error("KubeReadFailed", e, true))?;
    let Some(text) = found else {
        return Ok(fallback.to_owned());
    };
    let config_map = parse(&text, "configMap")?;
    Ok(config_map["data"][key]
        .as_str()
        .unwrap_or(fallback)
        .to_owned())
}

/// An RFC 3339 timestamp (UTC, seconds) of the wall clock.
fn now() -> String {
    let seconds = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let (days, rest) = (seconds / 86_400, seconds % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

/// Reconciles Greetings and admits them, in the 0.1.0 contract.
struct CompatPlugin;

impl Reconciler for CompatPlugin {
    fn describe() -> PluginInfo {
        PluginInfo {
            name: "example-greeting".into(),
            version: "0.1.0-compat".into(),
            target: greeting_kind(),
            child_kinds: vec![config_map_kind()],
            capabilities: Capabilities {
                read_kinds: vec![config_map_kind()],
                sql: false,
            },
            settings_schema: "{}".into(),
        }
    }

    fn reconcile(request: ReconcileRequest) -> Result<ReconcileResponse, PluginError> {
        let object = parse(&request.object, "request.object")?;
        let settings = parse(&request.settings, "request.settings")?;
        let greeting = object["spec"]["greeting"].as_str().unwrap_or_default();
        if greeting.trim().is_empty() {
            return Err(error(
                "InvalidSpec",
                format!("spec.greeting is required and must not be empty {MARK}"),
                false,
            ));
        }
        let name = object["metadata"]["name"].as_str().unwrap_or_default();
        let namespace = object["metadata"]["namespace"].as_str().unwrap_or_default();
        let message = format!("{greeting}, {}! {MARK}", audience(&object, &settings)?);
        log::log(
            log::Level::Info,
            "reconciled greeting",
            &[
                ("greeting".into(), name.into()),
                ("message".into(), message.clone()),
            ],
        );
        let mut status = json!({
            "message": message,
            "conditions": [{
                "type": "Ready",
                "status": "True",
                "reason": "Reconciled",
                "message": "the greeting is published by a WIT 0.1.0 component",
                "lastTransitionTime": now(),
                "observedGeneration": object["metadata"]["generation"],
            }],
        });
        // The `sql` import under its 0.1.0 name: the host answers (here,
        // that no server is granted), which the status shows.
        if let Some(server) = object["spec"]["probeServer"].as_str() {
            status["sqlProbe"] = match sql::query(server, None, "SELECT 1", &[]) {
                Ok(result) => json!({"columns": result.columns}),
                Err(e) => json!({"error": e}),
            };
        }
        let child = json!({
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": format!("{name}-greeting"), "namespace": namespace},
            "data": {"message": message},
        });
        Ok(ReconcileResponse {
            children: vec![child.to_string()],
            status: Some(status.to_string()),
            sql: Vec::new(),
            events: Vec::new(),
            requeue_after_ms: None,
        })
    }

    fn finalize(_request: ReconcileRequest) -> Result<FinalizeResponse, PluginError> {
        Ok(FinalizeResponse {
            done: true,
            sql: Vec::new(),
            events: Vec::new(),
            requeue_after_ms: None,
        })
    }
}

impl Admission for CompatPlugin {
    fn validate(request: AdmissionRequest) -> Result<Validation, PluginError> {
        let object = match &request.object {
            Some(text) => parse(text, "request.object")?,
            None => Value::Null,
        };
        let empty = object["spec"]["greeting"]
            .as_str()
            .is_none_or(|g| g.trim().is_empty());
        Ok(Validation {
            allowed: request.operation == Operation::Delete || !empty,
            message: empty.then(|| format!("spec.greeting must not be empty {MARK}")),
            warnings: Vec::new(),
        })
    }

    fn mutate(request: AdmissionRequest) -> Result<Mutation, PluginError> {
        let Some(text) = &request.object else {
            return Ok(Mutation {
                object: None,
                warnings: Vec::new(),
            });
        };
        let mut object = parse(text, "request.object")?;
        object["metadata"]["labels"]["examples.systems.mikemiller.tech/wit"] = "0.1.0".into();
        Ok(Mutation {
            object: Some(object.to_string()),
            warnings: Vec::new(),
        })
    }
}

export!(CompatPlugin);
