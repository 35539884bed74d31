//! Builders for the child objects a plugin returns.
//!
//! The host adds owner references, applies children with server-side apply
//! (one field manager per plugin) and prunes children no longer returned.

use serde_json::{Map, Value, json};

use crate::kind::GroupVersionKind;

/// Builds one child object: `apiVersion`, `kind`, `metadata` and any
/// top-level fields (`data`, `spec`, …).
#[derive(Debug, Clone, PartialEq)]
#[must_use]
pub struct ChildBuilder {
    object: Map<String, Value>,
    metadata: Map<String, Value>,
    labels: Map<String, Value>,
    annotations: Map<String, Value>,
}

impl ChildBuilder {
    /// A child of `kind` named `name`.
    pub fn new(kind: &GroupVersionKind, name: impl Into<String>) -> Self {
        let mut object = Map::new();
        object.insert("apiVersion".into(), Value::String(kind.api_version()));
        object.insert("kind".into(), Value::String(kind.kind.clone()));
        let mut metadata = Map::new();
        metadata.insert("name".into(), Value::String(name.into()));
        Self {
            object,
            metadata,
            labels: Map::new(),
            annotations: Map::new(),
        }
    }

    /// A core `v1 ConfigMap` named `name`.
    pub fn config_map(name: impl Into<String>) -> Self {
        Self::new(&GroupVersionKind::core("v1", "ConfigMap"), name)
    }

    /// A core `v1 Secret` named `name`.
    pub fn secret(name: impl Into<String>) -> Self {
        Self::new(&GroupVersionKind::core("v1", "Secret"), name)
    }

    /// Sets `metadata.namespace` (children of a namespaced object normally
    /// live in its namespace).
    pub fn namespace(mut self, namespace: impl Into<String>) -> Self {
        self.metadata
            .insert("namespace".into(), Value::String(namespace.into()));
        self
    }

    /// Adds a label.
    pub fn label(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.labels.insert(key.into(), Value::String(value.into()));
        self
    }

    /// Adds an annotation.
    pub fn annotation(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.annotations
            .insert(key.into(), Value::String(value.into()));
        self
    }

    /// Sets a top-level field (`data`, `spec`, `stringData`, …).
    pub fn field(mut self, key: impl Into<String>, value: Value) -> Self {
        self.object.insert(key.into(), value);
        self
    }

    /// Sets one entry of `data` (a ConfigMap's string data).
    pub fn data(self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.entry("data", key, value)
    }

    /// Sets one entry of `stringData` (a Secret's plain-text data).
    pub fn string_data(self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.entry("stringData", key, value)
    }

    fn entry(mut self, field: &str, key: impl Into<String>, value: impl Into<String>) -> Self {
        let map = self.object.entry(field).or_insert_with(|| json!({}));
        if let Value::Object(map) = map {
            map.insert(key.into(), Value::String(value.into()));
        }
        self
    }

    /// The child's JSON.
    #[must_use]
    pub fn build(mut self) -> Value {
        if !self.labels.is_empty() {
            self.metadata
                .insert("labels".into(), Value::Object(self.labels));
        }
        if !self.annotations.is_empty() {
            self.metadata
                .insert("annotations".into(), Value::Object(self.annotations));
        }
        self.object
            .insert("metadata".into(), Value::Object(self.metadata));
        Value::Object(self.object)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_map_child_has_metadata_labels_and_data() {
        let child = ChildBuilder::config_map("hello-greeting")
            .namespace("demo")
            .label("app.kubernetes.io/name", "greeting")
            .data("message", "Hello, world!")
            .build();
        assert_eq!(
            child,
            json!({
                "apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": "hello-greeting", "namespace": "demo",
                             "labels": {"app.kubernetes.io/name": "greeting"}},
                "data": {"message": "Hello, world!"}
            })
        );
    }

    #[test]
    fn grouped_kind_gets_group_slash_version() {
        let kind = GroupVersionKind::new("apps", "v1", "Deployment");
        assert_eq!(
            ChildBuilder::new(&kind, "web").build()["apiVersion"],
            "apps/v1"
        );
    }
}
