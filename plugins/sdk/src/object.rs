//! Typed read access to a Kubernetes object's JSON.

use std::collections::BTreeMap;

use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::error::PluginError;
use crate::kind::GroupVersionKind;

/// A Kubernetes object as the API server serves it, with typed accessors.
///
/// Plugins work with any kind, so the object stays JSON; deserialize the part
/// you need with [`spec`](Self::spec) or read fields with the accessors.
#[derive(Debug, Clone, PartialEq)]
pub struct Object(Value);

/// Which part of the input a [`DecodeError`] is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecodeTarget {
    /// The object's `.spec`.
    Spec,
    /// The object's `.status`.
    Status,
    /// The binding's settings.
    Settings,
    /// JSON text the host sent (a host bug, or a version mismatch).
    Input,
}

/// JSON could not be deserialized into the type a plugin asked for.
///
/// The message names the field path (`spec.audienceFrom.key: invalid type: …`).
/// Converts into a non-retryable [`PluginError`] with reason `InvalidSpec`,
/// `InvalidStatus`, `InvalidSettings` or `InvalidInput`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {message}")]
pub struct DecodeError {
    /// What was being decoded.
    pub target: DecodeTarget,
    /// The path of the offending field, starting with `spec`, `status` or `settings`.
    pub path: String,
    /// What was wrong with it.
    pub message: String,
}

impl From<DecodeError> for PluginError {
    fn from(error: DecodeError) -> Self {
        let reason = match error.target {
            DecodeTarget::Spec => "InvalidSpec",
            DecodeTarget::Status => "InvalidStatus",
            DecodeTarget::Settings => "InvalidSettings",
            DecodeTarget::Input => "InvalidInput",
        };
        PluginError::permanent(reason, error.to_string())
    }
}

/// Deserializes `value` into `T`, naming the field path below `root` on failure.
pub(crate) fn decode<T: DeserializeOwned>(
    value: &Value,
    target: DecodeTarget,
    root: &str,
) -> Result<T, DecodeError> {
    serde_path_to_error::deserialize(value).map_err(|error| {
        let inner = error.path().to_string();
        let path = if inner == "." {
            root.to_owned()
        } else {
            format!("{root}.{inner}")
        };
        DecodeError {
            target,
            path,
            message: error.into_inner().to_string(),
        }
    })
}

/// Parses JSON text the host sent.
pub(crate) fn parse_json(text: &str, what: &str) -> Result<Value, DecodeError> {
    serde_json::from_str(text).map_err(|error| DecodeError {
        target: DecodeTarget::Input,
        path: what.to_owned(),
        message: error.to_string(),
    })
}

impl Object {
    /// Wraps a JSON value (normally an object with `apiVersion`, `kind`, `metadata`).
    #[must_use]
    pub fn new(value: Value) -> Self {
        Self(value)
    }

    /// The underlying JSON.
    #[must_use]
    pub fn as_value(&self) -> &Value {
        &self.0
    }

    /// Consumes the wrapper and returns the JSON.
    #[must_use]
    pub fn into_value(self) -> Value {
        self.0
    }

    /// The value at a JSON pointer (`/data/key`), if present.
    #[must_use]
    pub fn pointer(&self, pointer: &str) -> Option<&Value> {
        self.0.pointer(pointer)
    }

    /// The string at a JSON pointer, if present and a string.
    #[must_use]
    pub fn str_at(&self, pointer: &str) -> Option<&str> {
        self.0.pointer(pointer).and_then(Value::as_str)
    }

    /// `apiVersion`, or the empty string.
    #[must_use]
    pub fn api_version(&self) -> &str {
        self.str_at("/apiVersion").unwrap_or_default()
    }

    /// `kind`, or the empty string.
    #[must_use]
    pub fn kind(&self) -> &str {
        self.str_at("/kind").unwrap_or_default()
    }

    /// The object's group, version and kind, from `apiVersion` and `kind`.
    #[must_use]
    pub fn gvk(&self) -> GroupVersionKind {
        GroupVersionKind::from_api_version(self.api_version(), self.kind())
    }

    /// `metadata.name`, or the empty string.
    #[must_use]
    pub fn name(&self) -> &str {
        self.str_at("/metadata/name").unwrap_or_default()
    }

    /// `metadata.namespace`; none for cluster-scoped objects.
    #[must_use]
    pub fn namespace(&self) -> Option<&str> {
        self.str_at("/metadata/namespace")
    }

    /// `metadata.uid`, or the empty string.
    #[must_use]
    pub fn uid(&self) -> &str {
        self.str_at("/metadata/uid").unwrap_or_default()
    }

    /// `metadata.generation`; none when the API server did not set one.
    #[must_use]
    pub fn generation(&self) -> Option<i64> {
        self.0
            .pointer("/metadata/generation")
            .and_then(Value::as_i64)
    }

    /// `metadata.labels` (string values only).
    #[must_use]
    pub fn labels(&self) -> BTreeMap<&str, &str> {
        self.string_map("/metadata/labels")
    }

    /// `metadata.annotations` (string values only).
    #[must_use]
    pub fn annotations(&self) -> BTreeMap<&str, &str> {
        self.string_map("/metadata/annotations")
    }

    /// One label's value.
    #[must_use]
    pub fn label(&self, key: &str) -> Option<&str> {
        self.0.pointer("/metadata/labels")?.get(key)?.as_str()
    }

    /// Whether `metadata.deletionTimestamp` is set.
    #[must_use]
    pub fn is_being_deleted(&self) -> bool {
        self.0
            .pointer("/metadata/deletionTimestamp")
            .is_some_and(|v| !v.is_null())
    }

    /// Deserializes `.spec` into `T`. A missing spec deserializes from `{}`.
    ///
    /// # Errors
    /// A [`DecodeError`] naming the field path (`spec.port: invalid type: …`);
    /// `?` turns it into a non-retryable `InvalidSpec` [`PluginError`].
    pub fn spec<T: DeserializeOwned>(&self) -> Result<T, DecodeError> {
        self.part("spec", DecodeTarget::Spec)
    }

    /// Deserializes `.status` into `T`. A missing status deserializes from `{}`.
    ///
    /// # Errors
    /// A [`DecodeError`] naming the field path, as for [`spec`](Self::spec).
    pub fn status<T: DeserializeOwned>(&self) -> Result<T, DecodeError> {
        self.part("status", DecodeTarget::Status)
    }

    /// The raw `.status`, if present.
    #[must_use]
    pub fn status_value(&self) -> Option<&Value> {
        self.0.get("status").filter(|v| !v.is_null())
    }

    fn part<T: DeserializeOwned>(&self, key: &str, target: DecodeTarget) -> Result<T, DecodeError> {
        match self.0.get(key) {
            Some(value) if !value.is_null() => decode(value, target, key),
            _ => decode(&Value::Object(serde_json::Map::new()), target, key),
        }
    }

    fn string_map(&self, pointer: &str) -> BTreeMap<&str, &str> {
        self.0
            .pointer(pointer)
            .and_then(Value::as_object)
            .map(|map| {
                map.iter()
                    .filter_map(|(k, v)| v.as_str().map(|v| (k.as_str(), v)))
                    .collect()
            })
            .unwrap_or_default()
    }
}

impl From<Value> for Object {
    fn from(value: Value) -> Self {
        Self(value)
    }
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;
    use serde_json::json;

    use super::*;

    #[derive(Debug, Deserialize)]
    #[allow(dead_code, reason = "fields exist to be deserialized")]
    struct Spec {
        port: u16,
        inner: Inner,
    }

    #[derive(Debug, Deserialize)]
    #[allow(dead_code, reason = "fields exist to be deserialized")]
    struct Inner {
        key: String,
    }

    fn object() -> Object {
        Object::new(json!({
            "apiVersion": "examples.systems.mikemiller.tech/v1alpha1",
            "kind": "Greeting",
            "metadata": {
                "name": "hello", "namespace": "demo", "uid": "u-1", "generation": 3,
                "labels": {"app": "web", "n": 1}
            },
            "spec": {"port": 80, "inner": {"key": 5}}
        }))
    }

    #[test]
    fn metadata_accessors_read_the_object() {
        let object = object();
        assert_eq!(object.name(), "hello");
        assert_eq!(object.namespace(), Some("demo"));
        assert_eq!(object.uid(), "u-1");
        assert_eq!(object.generation(), Some(3));
        assert_eq!(
            object.labels().into_iter().collect::<Vec<_>>(),
            vec![("app", "web")]
        );
        assert_eq!(
            object.gvk(),
            GroupVersionKind::new("examples.systems.mikemiller.tech", "v1alpha1", "Greeting")
        );
    }

    #[test]
    fn spec_error_names_the_nested_field_path() {
        let error = object().spec::<Spec>().unwrap_err();
        assert_eq!(error.path, "spec.inner.key");
        let plugin_error = PluginError::from(error);
        assert_eq!(plugin_error.reason, "InvalidSpec");
        assert!(!plugin_error.retryable);
        assert!(
            plugin_error
                .message
                .starts_with("spec.inner.key: invalid type"),
            "{}",
            plugin_error.message
        );
    }

    #[test]
    fn missing_field_error_names_the_spec() {
        let object = Object::new(json!({"spec": {"inner": {"key": "k"}}}));
        let error = object.spec::<Spec>().unwrap_err();
        assert_eq!(error.path, "spec");
        assert!(error.message.contains("missing field `port`"));
    }
}
