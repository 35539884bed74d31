//! The traits a plugin implements and the description it gives of itself.

use schemars::JsonSchema;
use schemars::generate::SchemaSettings;
use serde_json::Value;

use crate::admission::{AdmissionRequest, AdmissionScope, Mutation, Validation};
use crate::context::Context;
use crate::error::PluginError;
use crate::kind::GroupVersionKind;
use crate::reconcile::{FinalizeResponse, Request, Response};
use crate::vocabulary::finalizer_name;

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

    /// Sets the JSON Schema of the binding's settings, written by hand.
    /// Prefer [`settings`](Self::settings), which derives it from the type
    /// the plugin reads the settings into.
    pub fn settings_schema(mut self, schema: Value) -> Self {
        self.settings_schema = schema;
        self
    }

    /// Sets the settings schema to the one derived from `T`, the type the
    /// plugin reads the settings into with
    /// [`Request::settings_as`](crate::Request::settings_as), so the two
    /// cannot disagree.
    ///
    /// The schema (draft 2020-12) follows `T`'s serde attributes: fields
    /// with `#[serde(default)]` or of an `Option` type are optional (a
    /// `default = "…"` function's value is recorded as the `default`),
    /// `rename_all` names the properties, and `#[serde(deny_unknown_fields)]`
    /// becomes `"additionalProperties": false` — without it the host accepts
    /// unknown settings. Doc comments become descriptions.
    ///
    /// ```
    /// use schemars::JsonSchema;
    /// use serde::Deserialize;
    /// use wasm_operator_sdk::{GroupVersionKind, PluginInfo};
    ///
    /// /// The binding's settings.
    /// #[derive(Deserialize, JsonSchema)]
    /// #[serde(rename_all = "camelCase", deny_unknown_fields)]
    /// struct Settings {
    ///     /// Who is greeted when the spec names no one.
    ///     #[serde(default)]
    ///     default_audience: Option<String>,
    /// }
    ///
    /// let info = PluginInfo::new("motd", "0.1.0", GroupVersionKind::new("example.com", "v1", "Motd"))
    ///     .settings::<Settings>();
    /// assert_eq!(info.settings_schema["additionalProperties"], false);
    /// assert!(info.settings_schema["properties"]["defaultAudience"].is_object());
    /// ```
    pub fn settings<T: JsonSchema>(self) -> Self {
        let schema = SchemaSettings::draft2020_12()
            .into_generator()
            .into_root_schema_for::<T>();
        self.settings_schema(schema.to_value())
    }

    /// The finalizer the host puts on the objects this plugin reconciles,
    /// [`finalizer_name`] of its [`name`](Self::name).
    #[must_use]
    pub fn finalizer(&self) -> String {
        finalizer_name(&self.name)
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
/// [`export_admission_plugin!`](crate::export_admission_plugin). The host
/// serves them as webhooks at `/validate/<binding>` and `/mutate/<binding>`
/// for the requests [`admission_scope`](Self::admission_scope) selects (see
/// the README's "Admission" section). For admission without a reconciler,
/// see [`AdmissionOnlyPlugin`](crate::AdmissionOnlyPlugin).
pub trait AdmissionPlugin: Plugin {
    /// Which requests the plugin is called for. The default is creates and
    /// updates of every object of its kind.
    fn admission_scope() -> AdmissionScope {
        AdmissionScope::default()
    }

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

#[cfg(test)]
mod tests {
    use schemars::JsonSchema;
    use serde::Deserialize;
    use serde_json::json;

    use super::*;

    fn info() -> PluginInfo {
        PluginInfo::new(
            "motd",
            "0.1.0",
            GroupVersionKind::new("example.com", "v1", "Motd"),
        )
    }

    fn default_port() -> u16 {
        5432
    }

    /// Strict settings.
    #[derive(Deserialize, JsonSchema)]
    #[serde(rename_all = "camelCase", deny_unknown_fields)]
    #[allow(dead_code, reason = "fields exist to be described")]
    struct Strict {
        /// Required: no default.
        server_name: String,
        /// Optional, with a default.
        #[serde(default = "default_port")]
        port: u16,
        /// Optional.
        label: Option<String>,
    }

    /// Lenient settings.
    #[derive(Deserialize, JsonSchema)]
    #[allow(dead_code, reason = "fields exist to be described")]
    struct Lenient {
        #[serde(default)]
        name: String,
    }

    #[test]
    fn derived_settings_schema_is_draft_2020_12_with_required_fields_and_defaults() {
        let schema = info().settings::<Strict>().settings_schema;
        assert_eq!(
            schema["$schema"],
            "https://json-schema.org/draft/2020-12/schema"
        );
        assert_eq!(schema["type"], "object");
        assert_eq!(schema["required"], json!(["serverName"]));
        assert_eq!(schema["properties"]["port"]["default"], 5432);
        assert_eq!(
            schema["properties"]["serverName"]["description"],
            "Required: no default."
        );
        assert!(schema["properties"]["label"].is_object());
    }

    #[test]
    fn deny_unknown_fields_is_what_makes_the_host_refuse_unknown_settings() {
        let strict = info().settings::<Strict>().settings_schema;
        assert_eq!(strict["additionalProperties"], false);
        let lenient = info().settings::<Lenient>().settings_schema;
        assert_eq!(lenient.get("additionalProperties"), None);
        assert_eq!(lenient.get("required"), None);
    }

    #[test]
    fn a_plugin_finalizer_is_the_prefix_and_its_name() {
        assert_eq!(info().finalizer(), "plugins.systems.mikemiller.tech/motd");
    }
}
