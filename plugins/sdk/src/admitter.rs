//! Components that only admit: an [`AdmissionOnlyPlugin`] and the
//! [`AdmitterInfo`] it gives of itself.
//!
//! An admission-only component (WIT world `admission-only-plugin`, 0.2.0)
//! exports `validate`, `mutate` and a description, and no reconciler: the
//! host starts no controller for its binding and opens no watch of its kind
//! (a Pod injector must not watch every Pod). It may read granted kinds
//! while admitting, and has no SQL.

use schemars::JsonSchema;
use serde_json::Value;

use crate::admission::{AdmissionRequest, AdmissionScope, Mutation, Validation};
use crate::context::Context;
use crate::error::PluginError;
use crate::kind::GroupVersionKind;
use crate::plugin::PluginInfo;

/// An admission-only plugin's description of itself, read once when it is
/// loaded.
#[derive(Debug, Clone, PartialEq)]
#[must_use]
pub struct AdmitterInfo {
    /// Stable name, lower-case DNS label style (`postgres-inject`).
    pub name: String,
    /// The plugin's own version (semver).
    pub version: String,
    /// The kind it admits.
    pub target: GroupVersionKind,
    /// Kinds it reads through [`Context::get`] and [`Context::list`].
    pub read_kinds: Vec<GroupVersionKind>,
    /// JSON Schema (draft 2020-12) for the binding's settings; `{}` accepts anything.
    pub settings_schema: Value,
    /// Which requests it is called for.
    pub scope: AdmissionScope,
}

impl AdmitterInfo {
    /// An admission plugin named `name` at `version` for `target`, with no
    /// reads, settings schema `{}` and the default scope (creates and
    /// updates of every object).
    pub fn new(
        name: impl Into<String>,
        version: impl Into<String>,
        target: GroupVersionKind,
    ) -> Self {
        Self::from(PluginInfo::new(name, version, target))
    }

    /// Requests read access to a kind.
    pub fn read_kind(mut self, kind: GroupVersionKind) -> Self {
        self.read_kinds.push(kind);
        self
    }

    /// Sets the settings schema to the one derived from `T` (see
    /// [`PluginInfo::settings`]).
    pub fn settings<T: JsonSchema>(mut self) -> Self {
        self.settings_schema = PluginInfo::new("", "", self.target.clone())
            .settings::<T>()
            .settings_schema;
        self
    }

    /// Sets which requests the plugin is called for.
    pub fn scope(mut self, scope: AdmissionScope) -> Self {
        self.scope = scope;
        self
    }
}

impl From<PluginInfo> for AdmitterInfo {
    /// The admission side of a reconciler's description: its name, version,
    /// target, reads and settings schema, with the default scope. Child
    /// kinds and SQL do not apply to admission and are dropped.
    fn from(info: PluginInfo) -> Self {
        Self {
            name: info.name,
            version: info.version,
            target: info.target,
            read_kinds: info.read_kinds,
            settings_schema: info.settings_schema,
            scope: AdmissionScope::default(),
        }
    }
}

/// Admission logic without a reconciler. Implement it on a unit struct and
/// export it with [`export_admission_only_plugin!`](crate::export_admission_only_plugin).
/// The host serves it as webhooks at `/validate/<binding>` and
/// `/mutate/<binding>` for the requests [`AdmitterInfo::scope`] selects, and
/// runs no controller for it.
///
/// ```
/// use wasm_operator_sdk::{
///     AdmissionOnlyPlugin, AdmissionRequest, AdmissionScope, AdmitterInfo, Context,
///     GroupVersionKind, Operation, PluginError, TestHost, Validation,
///     export_admission_only_plugin,
/// };
///
/// /// Refuses Pods without an `owner` label.
/// struct OwnerRequired;
///
/// impl AdmissionOnlyPlugin for OwnerRequired {
///     fn describe() -> AdmitterInfo {
///         AdmitterInfo::new("owner-required", "0.1.0", GroupVersionKind::core("v1", "Pod"))
///             .scope(AdmissionScope::on([Operation::Create]))
///     }
///
///     fn validate(_ctx: &Context<'_>, req: &AdmissionRequest) -> Result<Validation, PluginError> {
///         let labelled = req.object.as_ref().is_some_and(|pod| pod.labels().contains_key("owner"));
///         Ok(if labelled { Validation::allow() } else { Validation::deny("label the Pod with its owner") })
///     }
/// }
///
/// export_admission_only_plugin!(OwnerRequired);
///
/// // The same logic, natively:
/// let host = TestHost::new();
/// let pod = serde_json::json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}});
/// let req = AdmissionRequest::new(Operation::Create, pod);
/// let verdict = OwnerRequired::validate(&Context::new(&host), &req).unwrap();
/// assert!(!verdict.allowed);
/// assert_eq!(OwnerRequired::describe().scope.operations, [Operation::Create]);
/// ```
pub trait AdmissionOnlyPlugin {
    /// Describes the plugin. Called once at load time; must not use the context.
    fn describe() -> AdmitterInfo;

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
