//! What a plugin answers, parsed once into typed values and checked for
//! shape and size before anything else of the host sees it.
//!
//! A desired child carries its kind, namespace and name; an SQL plan names
//! its server as a [`ServerKey`]; events have valid reasons. The reconcile
//! pipeline works on these types and never re-reads the plugin's JSON.

use std::fmt;
use std::time::Duration;

use serde_json::{Map, Value};

use super::bindings::{admission, reconciler};
use super::error::CallError;
use super::limits::PluginLimits;
use crate::vocabulary::{ObjectKind, ServerKey};

pub use super::bindings::types::{Event, EventType, SqlValue};

/// A child the plugin wants to exist, as it returned it.
#[derive(Debug, Clone, PartialEq)]
pub struct DesiredChild {
    /// Its kind, from `apiVersion` and `kind`.
    pub kind: ObjectKind,
    /// `metadata.name`.
    pub name: String,
    /// `metadata.namespace`, when the plugin set one.
    pub namespace: Option<String>,
    /// The whole object; `metadata` is a JSON object.
    pub object: Map<String, Value>,
}

impl DesiredChild {
    /// The child's `metadata`.
    pub fn metadata_mut(&mut self) -> &mut Map<String, Value> {
        match self.object.get_mut("metadata") {
            Some(Value::Object(metadata)) => metadata,
            // Parsing made sure `metadata` is an object with a name.
            _ => unreachable!("a parsed child has a metadata object"),
        }
    }
}

/// One statement of an SQL plan. Its `Debug` and `Display` never show the
/// text or parameters of a sensitive statement.
#[derive(Clone)]
pub struct SqlStatement {
    /// The statement with `$n` placeholders.
    pub statement: String,
    /// Bound parameters.
    pub params: Vec<SqlValue>,
    /// Must run outside a transaction.
    pub non_transactional: bool,
    /// Carries a secret: only `summary` may be shown.
    pub sensitive: bool,
    /// A description safe to log.
    pub summary: String,
}

impl fmt::Display for SqlStatement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.sensitive {
            write!(f, "{} [statement redacted: carries a secret]", self.summary)
        } else {
            f.write_str(&self.statement)
        }
    }
}

impl fmt::Debug for SqlStatement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut s = f.debug_struct("SqlStatement");
        if self.sensitive {
            s.field("statement", &"<redacted>")
                .field("params", &"<redacted>");
        } else {
            s.field("statement", &self.statement)
                .field("params", &self.params);
        }
        s.field("non_transactional", &self.non_transactional)
            .field("sensitive", &self.sensitive)
            .field("summary", &self.summary)
            .finish()
    }
}

impl From<reconciler::SqlStatement> for SqlStatement {
    fn from(s: reconciler::SqlStatement) -> Self {
        Self {
            statement: s.statement,
            params: s.params,
            non_transactional: s.non_transactional,
            sensitive: s.sensitive,
            summary: s.summary,
        }
    }
}

/// An ordered list of statements for one server.
#[derive(Debug, Clone)]
pub struct SqlPlan {
    /// The server.
    pub server: ServerKey,
    /// Database to connect to; `None`: the maintenance database.
    pub database: Option<String>,
    /// The statements, in order.
    pub statements: Vec<SqlStatement>,
}

/// A plugin's decision for one object.
#[derive(Debug, Clone)]
pub struct Decision {
    /// The complete desired set of children.
    pub children: Vec<DesiredChild>,
    /// The desired `.status`, if the plugin set one (a JSON object).
    pub status: Option<Value>,
    /// SQL to run before applying children.
    pub sql: Vec<SqlPlan>,
    /// Events to record, at most the plugin's cap.
    pub events: Vec<Event>,
    /// Events over the cap, dropped.
    pub dropped_events: usize,
    /// Reconcile again after this long (never sooner than the plugin's floor).
    pub requeue_after: Option<Duration>,
}

/// A plugin's decision while its object is being deleted.
#[derive(Debug, Clone)]
pub struct FinalizeDecision {
    /// Cleanup is complete; the finalizer may go.
    pub done: bool,
    /// SQL to run.
    pub sql: Vec<SqlPlan>,
    /// Events to record, at most the plugin's cap.
    pub events: Vec<Event>,
    /// Events over the cap, dropped.
    pub dropped_events: usize,
    /// Ask again after this long when not done (never sooner than the
    /// plugin's floor).
    pub requeue_after: Option<Duration>,
}

impl Decision {
    /// Parses a `reconcile` response under the plugin's `limits`.
    pub(super) fn parse(
        response: reconciler::ReconcileResponse,
        limits: &PluginLimits,
    ) -> Result<Self, CallError> {
        check_size(reconcile_size(&response), limits.max_output_bytes)?;
        let (events, dropped_events) = cap_events(check_events(response.events)?, limits);
        Ok(Self {
            children: response
                .children
                .iter()
                .enumerate()
                .map(|(i, c)| parse_child(i, c))
                .collect::<Result<_, _>>()?,
            status: response
                .status
                .as_deref()
                .map(|s| parse_object("status", s))
                .transpose()?,
            sql: parse_plans(response.sql)?,
            events,
            dropped_events,
            requeue_after: requeue_after(response.requeue_after_ms, limits),
        })
    }
}

impl FinalizeDecision {
    /// Parses a `finalize` response under the plugin's `limits`.
    pub(super) fn parse(
        response: reconciler::FinalizeResponse,
        limits: &PluginLimits,
    ) -> Result<Self, CallError> {
        let size = response.events.iter().map(event_size).sum::<usize>()
            + response.sql.iter().map(plan_size).sum::<usize>();
        check_size(size, limits.max_output_bytes)?;
        let (events, dropped_events) = cap_events(check_events(response.events)?, limits);
        Ok(Self {
            done: response.done,
            sql: parse_plans(response.sql)?,
            events,
            dropped_events,
            requeue_after: requeue_after(response.requeue_after_ms, limits),
        })
    }
}

/// The first `max_events` of `events`, and how many were dropped.
fn cap_events(mut events: Vec<Event>, limits: &PluginLimits) -> (Vec<Event>, usize) {
    let dropped = events.len().saturating_sub(limits.max_events);
    events.truncate(limits.max_events);
    (events, dropped)
}

/// A requeue no sooner than the plugin's floor: a plugin asking for 0 ms
/// must not spin one object in a busy loop.
fn requeue_after(millis: Option<u64>, limits: &PluginLimits) -> Option<Duration> {
    millis.map(|ms| Duration::from_millis(ms).max(limits.min_requeue))
}

/// Checks a `validate` answer's size.
pub(super) fn check_validation(
    validation: &admission::Validation,
    max_bytes: usize,
) -> Result<(), CallError> {
    let size = validation.message.as_ref().map_or(0, String::len)
        + validation.warnings.iter().map(String::len).sum::<usize>();
    check_size(size, max_bytes)
}

/// Checks a `mutate` answer's size and that its object is a JSON object.
pub(super) fn check_mutation(
    mutation: &admission::Mutation,
    max_bytes: usize,
) -> Result<(), CallError> {
    let size = mutation.object.as_ref().map_or(0, String::len)
        + mutation.warnings.iter().map(String::len).sum::<usize>();
    check_size(size, max_bytes)?;
    if let Some(object) = &mutation.object {
        parse_object("object", object)?;
    }
    Ok(())
}

fn check_size(size: usize, limit: usize) -> Result<(), CallError> {
    if size > limit {
        Err(CallError::OutputTooLarge { size, limit })
    } else {
        Ok(())
    }
}

/// The bytes a value takes on the wire to a plugin (fixed-size values
/// count 8): how result and plan sizes are measured against caps.
pub fn sql_value_size(value: &SqlValue) -> usize {
    match value {
        SqlValue::Text(s) | SqlValue::Json(s) => s.len(),
        SqlValue::Bytes(b) => b.len(),
        _ => 8,
    }
}

fn plan_size(plan: &reconciler::SqlPlan) -> usize {
    plan.server.len()
        + plan.database.as_ref().map_or(0, String::len)
        + plan
            .statements
            .iter()
            .map(|s| {
                s.statement.len()
                    + s.summary.len()
                    + s.params.iter().map(sql_value_size).sum::<usize>()
            })
            .sum::<usize>()
}

fn event_size(event: &Event) -> usize {
    event.reason.len() + event.note.len() + event.action.len()
}

fn reconcile_size(response: &reconciler::ReconcileResponse) -> usize {
    response.children.iter().map(String::len).sum::<usize>()
        + response.status.as_ref().map_or(0, String::len)
        + response.sql.iter().map(plan_size).sum::<usize>()
        + response.events.iter().map(event_size).sum::<usize>()
}

fn invalid(field: String, reason: &str) -> CallError {
    CallError::InvalidOutput {
        field,
        reason: reason.to_owned(),
    }
}

fn parse_object(field: &str, text: &str) -> Result<Value, CallError> {
    let value: Value = serde_json::from_str(text)
        .map_err(|e| invalid(field.to_owned(), &format!("not JSON: {e}")))?;
    if !value.is_object() {
        return Err(invalid(field.to_owned(), "must be a JSON object"));
    }
    Ok(value)
}

fn parse_child(index: usize, text: &str) -> Result<DesiredChild, CallError> {
    let field = format!("children[{index}]");
    let Value::Object(object) = parse_object(&field, text)? else {
        unreachable!("parse_object returns objects")
    };
    let text_at = |path: &str, value: Option<&Value>| match value.and_then(Value::as_str) {
        Some(text) if !text.is_empty() => Ok(text.to_owned()),
        _ => Err(invalid(
            format!("{field}.{path}"),
            "is required and must be a non-empty string",
        )),
    };
    let api_version = text_at("apiVersion", object.get("apiVersion"))?;
    let kind = text_at("kind", object.get("kind"))?;
    let metadata = object.get("metadata").and_then(Value::as_object);
    let name = text_at("metadata.name", metadata.and_then(|m| m.get("name")))?;
    let namespace = metadata
        .and_then(|m| m.get("namespace"))
        .and_then(Value::as_str)
        .map(str::to_owned);
    Ok(DesiredChild {
        kind: ObjectKind::from_api_version(&api_version, &kind),
        name,
        namespace,
        object,
    })
}

fn parse_plans(plans: Vec<reconciler::SqlPlan>) -> Result<Vec<SqlPlan>, CallError> {
    plans
        .into_iter()
        .enumerate()
        .map(|(index, plan)| {
            let server = ServerKey::parse(&plan.server).ok_or_else(|| {
                invalid(
                    format!("sql[{index}].server"),
                    "must be the namespace/name of a PostgresServer",
                )
            })?;
            Ok(SqlPlan {
                server,
                database: plan.database,
                statements: plan.statements.into_iter().map(Into::into).collect(),
            })
        })
        .collect()
}

fn check_events(events: Vec<Event>) -> Result<Vec<Event>, CallError> {
    for (i, event) in events.iter().enumerate() {
        let upper_camel = event
            .reason
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_uppercase())
            && event.reason.chars().all(|c| c.is_ascii_alphanumeric())
            && event.reason.len() <= 128;
        if !upper_camel {
            return Err(invalid(
                format!("events[{i}].reason"),
                "must be UpperCamelCase letters and digits, at most 128",
            ));
        }
    }
    Ok(events)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sensitive_statements_never_show_their_text() {
        let statement = SqlStatement {
            statement: "ALTER ROLE \"foo\" PASSWORD 'SCRAM-SHA-256$4096:Zm9vYmFyYmF6'".into(),
            params: vec![SqlValue::Text("hunter2".into())],
            non_transactional: false,
            sensitive: true,
            summary: "set password of role \"foo\"".into(),
        };
        for shown in [format!("{statement}"), format!("{statement:?}")] {
            assert!(!shown.contains("Zm9vYmFyYmF6"), "{shown}");
            assert!(!shown.contains("hunter2"), "{shown}");
            assert!(shown.contains("set password of role"), "{shown}");
        }
    }

    #[test]
    fn children_without_a_name_are_refused_naming_the_field() {
        let error =
            parse_child(3, r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{}}"#).unwrap_err();
        assert!(
            error.to_string().contains("children[3].metadata.name"),
            "{error}"
        );
    }

    #[test]
    fn a_child_is_parsed_once_into_its_kind_namespace_and_name() {
        let child = parse_child(
            0,
            r#"{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"web","namespace":"ns"}}"#,
        )
        .unwrap();
        assert_eq!(child.kind, ObjectKind::new("apps", "v1", "Deployment"));
        assert_eq!(
            (child.name.as_str(), child.namespace.as_deref()),
            ("web", Some("ns"))
        );
    }

    #[test]
    fn a_plan_for_something_that_is_not_a_server_key_is_refused_naming_the_field() {
        let plan = |server: &str| reconciler::SqlPlan {
            server: server.into(),
            database: None,
            statements: Vec::new(),
        };
        let error = parse_plans(vec![plan("db/main"), plan("main")]).unwrap_err();
        assert!(error.to_string().contains("sql[1].server"), "{error}");
    }
}
