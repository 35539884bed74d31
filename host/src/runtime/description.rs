//! What a plugin says about itself in `describe`, checked at load time.

use serde_json::Value;

use super::bindings::reconciler;
use super::error::CallError;
use crate::vocabulary::ObjectKind;

/// What a plugin says about itself, checked at load time.
#[derive(Debug, Clone, PartialEq)]
pub struct PluginDescription {
    /// Stable name (`example-greeting`).
    pub name: String,
    /// The plugin's own version.
    pub version: String,
    /// The kind it reconciles.
    pub target: ObjectKind,
    /// The kinds of children it returns.
    pub child_kinds: Vec<ObjectKind>,
    /// Kinds it asks to read from the cache.
    pub read_kinds: Vec<ObjectKind>,
    /// Whether it asks to query databases and return SQL plans.
    pub wants_sql: bool,
    /// JSON Schema for the binding's settings.
    pub settings_schema: Value,
    /// The WIT package version it was built against.
    pub wit_version: String,
    /// Whether it exports admission (`validate`, `mutate`).
    pub offers_admission: bool,
}

impl PluginDescription {
    /// Checks what `describe` returned; `loaded` holds what the contract
    /// check learned (the WIT version, the admission export).
    pub(super) fn parse(
        info: reconciler::PluginInfo,
        loaded: &PluginDescription,
    ) -> Result<Self, CallError> {
        let invalid = |field: &str, reason: &str| CallError::InvalidOutput {
            field: field.to_owned(),
            reason: reason.to_owned(),
        };
        let is_dns_label = |s: &str| {
            !s.is_empty()
                && s.len() <= 63
                && s.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !s.starts_with('-')
                && !s.ends_with('-')
        };
        if !is_dns_label(&info.name) {
            return Err(invalid(
                "name",
                "must be 1-63 lower-case letters, digits or '-', starting and ending with a letter or digit",
            ));
        }
        if info.version.is_empty() {
            return Err(invalid("version", "must not be empty"));
        }
        if info.target.kind.is_empty() || info.target.version.is_empty() {
            return Err(invalid("target", "kind and version must not be empty"));
        }
        let settings_schema: Value = serde_json::from_str(&info.settings_schema)
            .map_err(|e| invalid("settings-schema", &format!("not JSON: {e}")))?;
        if !(settings_schema.is_object() || settings_schema.is_boolean()) {
            return Err(invalid(
                "settings-schema",
                "must be a JSON Schema object or boolean",
            ));
        }
        Ok(PluginDescription {
            name: info.name,
            version: info.version,
            target: info.target.into(),
            child_kinds: info.child_kinds.into_iter().map(Into::into).collect(),
            read_kinds: info
                .capabilities
                .read_kinds
                .into_iter()
                .map(Into::into)
                .collect(),
            wants_sql: info.capabilities.sql,
            settings_schema,
            wit_version: loaded.wit_version.clone(),
            offers_admission: loaded.offers_admission,
        })
    }
}
