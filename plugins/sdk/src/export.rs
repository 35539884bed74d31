//! Glue between the wit-bindgen exports and the [`Plugin`] traits.
//!
//! [`Exported<P>`] implements the generated `Guest` traits for any plugin,
//! and [`ExportedAdmitter<P>`] those of an admission-only plugin; the export
//! macros name them. Requests are parsed here and decisions turned
//! back into WIT records, so plugin code never sees JSON text.

use std::marker::PhantomData;
use std::time::Duration;

use crate::admission::{AdmissionRequest, AdmissionScope, Mutation, Operation, Validation};
use crate::admitter::{AdmissionOnlyPlugin, AdmitterInfo};
use crate::bindings::admission::exports::wasm_operator::plugin::admission as wit_admission;
use crate::bindings::admission::exports::wasm_operator::plugin::admission_info as wit_info;
use crate::bindings::plugin::exports::wasm_operator::plugin::reconciler as wit;
use crate::bindings::plugin::wasm_operator::plugin::types as wit_types;
use crate::context::Context;
use crate::error::PluginError;
use crate::event::{Event, EventType};
use crate::object::{DecodeError, Object, parse_json};
use crate::plugin::{AdmissionPlugin, Plugin, PluginInfo};
use crate::reconcile::{FinalizeResponse, Request, Response};
use crate::sql::SqlPlan;
use crate::wasm_host::{AdmissionHost, WasmHost, to_wit_gvk, to_wit_sql_value};

/// Implements the generated export traits for plugin `P`. Named only by the
/// export macros.
pub struct Exported<P>(PhantomData<P>);

impl<P: Plugin> wit::Guest for Exported<P> {
    fn describe() -> wit::PluginInfo {
        info_to_wit(P::describe())
    }

    fn reconcile(
        request: wit::ReconcileRequest,
    ) -> Result<wit::ReconcileResponse, wit_types::PluginError> {
        let request = request_from_wit(request).map_err(error_to_wit)?;
        let host = WasmHost;
        P::reconcile(&Context::new(&host), &request)
            .map(response_to_wit)
            .map_err(error_to_wit)
    }

    fn finalize(
        request: wit::ReconcileRequest,
    ) -> Result<wit::FinalizeResponse, wit_types::PluginError> {
        let request = request_from_wit(request).map_err(error_to_wit)?;
        let host = WasmHost;
        P::finalize(&Context::new(&host), &request)
            .map(finalize_to_wit)
            .map_err(error_to_wit)
    }
}

impl<P: AdmissionPlugin> wit_admission::Guest for Exported<P> {
    fn validate(
        request: wit_admission::AdmissionRequest,
    ) -> Result<wit_admission::Validation, wit_types::PluginError> {
        let request = admission_from_wit(request).map_err(error_to_wit)?;
        let host = WasmHost;
        P::validate(&Context::new(&host), &request)
            .map(validation_to_wit)
            .map_err(error_to_wit)
    }

    fn mutate(
        request: wit_admission::AdmissionRequest,
    ) -> Result<wit_admission::Mutation, wit_types::PluginError> {
        let request = admission_from_wit(request).map_err(error_to_wit)?;
        let host = WasmHost;
        P::mutate(&Context::new(&host), &request)
            .map(mutation_to_wit)
            .map_err(error_to_wit)
    }
}

impl<P: AdmissionPlugin> wit_info::Guest for Exported<P> {
    fn describe() -> wit_info::AdmitterInfo {
        admitter_to_wit(AdmitterInfo::from(P::describe()).scope(P::admission_scope()))
    }
}

/// Implements the generated export traits for admission-only plugin `P`.
/// Named only by [`export_admission_only_plugin!`](crate::export_admission_only_plugin).
pub struct ExportedAdmitter<P>(PhantomData<P>);

impl<P: AdmissionOnlyPlugin> wit_admission::Guest for ExportedAdmitter<P> {
    fn validate(
        request: wit_admission::AdmissionRequest,
    ) -> Result<wit_admission::Validation, wit_types::PluginError> {
        let request = admission_from_wit(request).map_err(error_to_wit)?;
        let host = AdmissionHost;
        P::validate(&Context::new(&host), &request)
            .map(validation_to_wit)
            .map_err(error_to_wit)
    }

    fn mutate(
        request: wit_admission::AdmissionRequest,
    ) -> Result<wit_admission::Mutation, wit_types::PluginError> {
        let request = admission_from_wit(request).map_err(error_to_wit)?;
        let host = AdmissionHost;
        P::mutate(&Context::new(&host), &request)
            .map(mutation_to_wit)
            .map_err(error_to_wit)
    }
}

impl<P: AdmissionOnlyPlugin> wit_info::Guest for ExportedAdmitter<P> {
    fn describe() -> wit_info::AdmitterInfo {
        admitter_to_wit(P::describe())
    }
}

fn object_from_text(text: &str, what: &str) -> Result<Object, PluginError> {
    Ok(Object::new(parse_json(text, what)?))
}

fn request_from_wit(request: wit::ReconcileRequest) -> Result<Request, PluginError> {
    Ok(Request {
        object: object_from_text(&request.object, "request.object")?,
        children: request
            .children
            .iter()
            .map(|child| object_from_text(child, "request.children"))
            .collect::<Result<_, _>>()?,
        settings: parse_json(&request.settings, "request.settings").map_err(PluginError::from)?,
        servers: request.servers,
    })
}

fn admission_from_wit(
    request: wit_admission::AdmissionRequest,
) -> Result<AdmissionRequest, PluginError> {
    let optional = |text: Option<String>, what: &str| -> Result<Option<Object>, DecodeError> {
        text.map(|text| parse_json(&text, what).map(Object::new))
            .transpose()
    };
    Ok(AdmissionRequest {
        operation: match request.operation {
            wit_admission::Operation::Create => Operation::Create,
            wit_admission::Operation::Update => Operation::Update,
            wit_admission::Operation::Delete => Operation::Delete,
            wit_admission::Operation::Connect => Operation::Connect,
        },
        object: optional(request.object, "request.object")?,
        old_object: optional(request.old_object, "request.oldObject")?,
        user: request.user,
        dry_run: request.dry_run,
        settings: parse_json(&request.settings, "request.settings")?,
    })
}

fn info_to_wit(info: PluginInfo) -> wit::PluginInfo {
    wit::PluginInfo {
        name: info.name,
        version: info.version,
        target: to_wit_gvk(&info.target),
        child_kinds: info.child_kinds.iter().map(to_wit_gvk).collect(),
        capabilities: wit::Capabilities {
            read_kinds: info.read_kinds.iter().map(to_wit_gvk).collect(),
            sql: info.sql,
        },
        settings_schema: info.settings_schema.to_string(),
    }
}

fn admitter_to_wit(info: AdmitterInfo) -> wit_info::AdmitterInfo {
    wit_info::AdmitterInfo {
        name: info.name,
        version: info.version,
        target: to_wit_gvk(&info.target),
        read_kinds: info.read_kinds.iter().map(to_wit_gvk).collect(),
        settings_schema: info.settings_schema.to_string(),
        scope: scope_to_wit(info.scope),
    }
}

fn scope_to_wit(scope: AdmissionScope) -> wit_info::AdmissionScope {
    wit_info::AdmissionScope {
        operations: scope
            .operations
            .into_iter()
            .map(|operation| match operation {
                Operation::Create => wit_admission::Operation::Create,
                Operation::Update => wit_admission::Operation::Update,
                Operation::Delete => wit_admission::Operation::Delete,
                Operation::Connect => wit_admission::Operation::Connect,
            })
            .collect(),
        object_selector: scope.object_selector,
        match_conditions: scope
            .match_conditions
            .into_iter()
            .map(|c| wit_info::MatchCondition {
                name: c.name,
                expression: c.expression,
            })
            .collect(),
    }
}

fn millis(duration: Option<Duration>) -> Option<u64> {
    duration.map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn response_to_wit(response: Response) -> wit::ReconcileResponse {
    wit::ReconcileResponse {
        children: response.children.iter().map(ToString::to_string).collect(),
        status: response.status.as_ref().map(ToString::to_string),
        sql: response.sql.into_iter().map(plan_to_wit).collect(),
        events: response.events.into_iter().map(event_to_wit).collect(),
        requeue_after_ms: millis(response.requeue_after),
    }
}

fn finalize_to_wit(response: FinalizeResponse) -> wit::FinalizeResponse {
    wit::FinalizeResponse {
        done: response.done,
        sql: response.sql.into_iter().map(plan_to_wit).collect(),
        events: response.events.into_iter().map(event_to_wit).collect(),
        requeue_after_ms: millis(response.requeue_after),
    }
}

fn plan_to_wit(plan: SqlPlan) -> wit::SqlPlan {
    wit::SqlPlan {
        server: plan.server,
        database: plan.database,
        statements: plan
            .statements
            .into_iter()
            .map(|s| wit::SqlStatement {
                statement: s.statement,
                params: s.params.into_iter().map(to_wit_sql_value).collect(),
                non_transactional: s.non_transactional,
                sensitive: s.sensitive,
                summary: s.summary,
            })
            .collect(),
    }
}

fn event_to_wit(event: Event) -> wit_types::Event {
    wit_types::Event {
        type_: match event.event_type {
            EventType::Normal => wit_types::EventType::Normal,
            EventType::Warning => wit_types::EventType::Warning,
        },
        reason: event.reason,
        note: event.note,
        action: event.action,
    }
}

fn validation_to_wit(validation: Validation) -> wit_admission::Validation {
    wit_admission::Validation {
        allowed: validation.allowed,
        message: validation.message,
        warnings: validation.warnings,
    }
}

fn mutation_to_wit(mutation: Mutation) -> wit_admission::Mutation {
    wit_admission::Mutation {
        object: mutation.object.as_ref().map(ToString::to_string),
        warnings: mutation.warnings,
    }
}

fn error_to_wit(error: PluginError) -> wit_types::PluginError {
    wit_types::PluginError {
        reason: error.reason,
        message: error.message,
        retryable: error.retryable,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::kind::GroupVersionKind;
    use crate::sql::{SqlStatement, SqlValue};
    use wit::Guest as _;

    /// Echoes the request into its decision without calling the host, so the
    /// glue can run natively.
    struct Echo;

    impl Plugin for Echo {
        fn describe() -> PluginInfo {
            PluginInfo::new("echo", "1.2.3", GroupVersionKind::new("g", "v1", "K"))
                .child_kind(GroupVersionKind::core("v1", "Secret"))
                .sql()
        }

        fn reconcile(_ctx: &Context<'_>, req: &Request) -> Result<Response, PluginError> {
            if req.object.name() == "fail" {
                return Err(PluginError::retryable("Later", "try again"));
            }
            Ok(Response::new()
                .child(json!({"kind": "Secret", "n": req.children.len()}))
                .status(json!({"servers": req.servers, "settings": req.settings}))
                .sql(
                    SqlPlan::new("ns/db").statement(
                        SqlStatement::new("SELECT $1", "select").param(SqlValue::Int(7)),
                    ),
                )
                .sql(SqlPlan::new("ns/empty"))
                .event(Event::warning("Odd", "Reconcile", "note"))
                .requeue_after(Duration::from_secs(2)))
        }
    }

    fn request(object: &str) -> wit::ReconcileRequest {
        wit::ReconcileRequest {
            object: object.into(),
            children: vec![r#"{"kind":"Secret"}"#.into()],
            settings: r#"{"a":1}"#.into(),
            servers: vec!["ns/db".into()],
        }
    }

    #[test]
    fn describe_is_converted_to_the_wit_record() {
        let info = Exported::<Echo>::describe();
        assert_eq!(
            (info.name.as_str(), info.version.as_str()),
            ("echo", "1.2.3")
        );
        assert_eq!(info.child_kinds[0].kind, "Secret");
        assert!(info.capabilities.sql && info.capabilities.read_kinds.is_empty());
        assert_eq!(info.settings_schema, "{}");
    }

    #[test]
    fn reconcile_decision_is_converted_to_json_text_and_milliseconds() {
        let response =
            Exported::<Echo>::reconcile(request(r#"{"metadata":{"name":"x"}}"#)).unwrap();
        assert_eq!(
            response.children,
            vec![r#"{"kind":"Secret","n":1}"#.to_owned()]
        );
        let status: serde_json::Value =
            serde_json::from_str(response.status.as_deref().unwrap()).unwrap();
        assert_eq!(status, json!({"servers": ["ns/db"], "settings": {"a": 1}}));
        assert_eq!(response.sql.len(), 1, "empty plans are dropped");
        assert!(matches!(
            response.sql[0].statements[0].params[0],
            wit_types::SqlValue::Int(7)
        ));
        assert!(matches!(
            response.events[0].type_,
            wit_types::EventType::Warning
        ));
        assert_eq!(response.requeue_after_ms, Some(2000));
    }

    #[test]
    fn plugin_error_and_unparsable_input_become_wit_errors() {
        let error =
            Exported::<Echo>::reconcile(request(r#"{"metadata":{"name":"fail"}}"#)).unwrap_err();
        assert_eq!((error.reason.as_str(), error.retryable), ("Later", true));
        let error = Exported::<Echo>::reconcile(request("{not json")).unwrap_err();
        assert_eq!(error.reason, "InvalidInput");
        assert!(!error.retryable);
        assert!(
            error.message.starts_with("request.object: "),
            "{}",
            error.message
        );
    }

    #[test]
    fn default_finalize_is_done() {
        let response = Exported::<Echo>::finalize(request("{}")).unwrap();
        assert!(response.done && response.sql.is_empty());
    }
}
