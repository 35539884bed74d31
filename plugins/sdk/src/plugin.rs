//! The traits a plugin implements and the description it gives of itself.

use serde_json::Value;

use crate::admission::{AdmissionRequest, Mutation, Validation};
use crate::context::Context;
use crate::error::PluginError;
use crate::kind::GroupVersionKind;
use crate::reconcile::{FinalizeResponse, Request, Response};

/// A plugin's description of itself, read once when it is loaded.
#[derive(Debug, Clone, PartialEq)]
#[must_use]
pub struct PluginInfo {
    /// Stable name, lower-case DNS label style (`postgres-database`).
    pub name: String,
    /// The plugin's own version (semver).
    pub version: String,
    /// The kind the plugin reconciles.
    pub target: GroupVersionKind,
    /// The kinds of the children it returns.
    pub child_kinds: Vec<GroupVersionKind>,
    /// Kinds it reads through [`Context::get`] and [`Context::list`].
    pub read_kinds: Vec<GroupVersionKind>,
    /// Whether it queries database servers and returns SQL plans.
    pub sql: bool,
    /// JSON Schema (draft 2020-12) for the binding's settings; `{}` accepts anything.
    pub settings_schema: Value,
}

impl PluginInfo {
    /// A plugin named `name` at `version` reconciling `target`, with no
    /// children, no reads, no SQL and settings schema `{}`.
    pub fn new(
        name: impl Into<String>,
        version: impl Into<String>,
        target: GroupVersionKind,
    ) -> Self {
        Self {
            name: name.into(),
            version: version.into(),
            target,
            child_kinds: Vec::new(),
            read_kinds: Vec::new(),
            sql: false,
            settings_schema: Value::Object(serde_json::Map::new()),
        }
    }

    /// Declares a kind of child the plugin returns (the host owns and prunes them).
    pub fn child_kind(mut self, kind: GroupVersionKind) -> Self {
        self.child_kinds.push(kind);
        self
    }

    /// Requests read access to a kind.
    pub fn read_kind(mut self, kind: GroupVersionKind) -> Self {
        self.read_kinds.push(kind);
        self
    }

    /// Requests SQL access (queries and plans).
    pub fn sql(mut self) -> Self {
        self.sql = true;
        self
    }

    /// Sets the JSON Schema of the binding's settings.
    pub fn settings_schema(mut self, schema: Value) -> Self {
        self.settings_schema = schema;
        self
    }
}

/// Reconcile logic. Implement it on a unit struct and export it with
/// [`export_plugin!`](crate::export_plugin).
///
/// Every function is a pure decision: read what you need through `ctx`, and
/// return children, status, SQL and events as data. The host carries them out.
pub trait Plugin {
    /// Describes the plugin. Called once at load time; must not use the context.
    fn describe() -> PluginInfo;

    /// Decides the desired state of one object.
    ///
    /// # Errors
    /// A [`PluginError`] the host records as `Ready=False` with a Warning event.
    fn reconcile(ctx: &Context<'_>, req: &Request) -> Result<Response, PluginError>;

    /// Decides the cleanup of an object that is being deleted. The default
    /// has nothing to clean up: children are garbage-collected through their
    /// owner references.
    ///
    /// # Errors
    /// A [`PluginError`]; the host keeps the finalizer and retries.
    fn finalize(ctx: &Context<'_>, req: &Request) -> Result<FinalizeResponse, PluginError> {
        let _ = (ctx, req);
        Ok(FinalizeResponse::done())
    }
}

/// Admission logic for the plugin's target kind. Export it with
/// [`export_admission_plugin!`](crate::export_admission_plugin); the host then
/// serves admission webhooks for the kind.
pub trait AdmissionPlugin: Plugin {
    /// Decides whether a request is allowed. The default allows everything.
    ///
    /// # Errors
    /// A [`PluginError`]; the host applies the binding's failure policy.
    fn validate(ctx: &Context<'_>, req: &AdmissionRequest) -> Result<Validation, PluginError> {
        let _ = (ctx, req);
        Ok(Validation::allow())
    }

    /// Decides how the object should be stored. The default changes nothing.
    ///
    /// # Errors
    /// A [`PluginError`]; the host applies the binding's failure policy.
    fn mutate(ctx: &Context<'_>, req: &AdmissionRequest) -> Result<Mutation, PluginError> {
        let _ = (ctx, req);
        Ok(Mutation::unchanged())
    }
}
