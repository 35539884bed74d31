//! Builders for the child objects a plugin returns.
//!
//! The host adds owner references, applies children with server-side apply
//! (one field manager per plugin) and prunes children no longer returned.
//! A child is garbage-collected with its owner unless it is marked with
//! [`retain_on_delete`].

use serde_json::{Map, Value, json};

use crate::kind::GroupVersionKind;
use crate::vocabulary::RETAIN_ANNOTATION;

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

    /// Marks the child to outlive its owner (see
    /// [`retain_on_delete`](crate::retain_on_delete)).
    pub fn retain_on_delete(self) -> Self {
        self.annotation(RETAIN_ANNOTATION, "true")
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

/// Marks a built child to outlive its owner: it carries
/// [`RETAIN_ANNOTATION`], so when the owner is deleted and its `finalize`
/// is done, the host releases the child before it removes the finalizer.
/// The released child loses its owner reference to the owner and the
/// host's labels ([`PLUGIN_LABEL`](crate::PLUGIN_LABEL),
/// [`OWNER_UID_LABEL`](crate::OWNER_UID_LABEL)), gets
/// [`RETAINED_FROM_ANNOTATION`](crate::RETAINED_FROM_ANNOTATION) naming the
/// owner, and stays: the garbage collector no longer deletes it, and the
/// operator no longer manages it. For what must survive the owner, such as
/// the credentials of a database kept on the server.
///
/// The mark is read from the child as it exists when the owner is
/// deleted, so return it on every reconcile while it applies; a child
/// returned without it loses it. A child the plugin stops returning is
/// still pruned: the mark only changes what the owner's deletion does.
///
/// ```
/// let mut child = wasm_operator_sdk::ChildBuilder::secret("app-credentials").build();
/// wasm_operator_sdk::retain_on_delete(&mut child);
/// assert_eq!(
///     child["metadata"]["annotations"][wasm_operator_sdk::RETAIN_ANNOTATION],
///     "true"
/// );
/// ```
pub fn retain_on_delete(child: &mut Value) {
    let Some(object) = child.as_object_mut() else {
        return;
    };
    let metadata = object.entry("metadata").or_insert_with(|| json!({}));
    let Some(metadata) = metadata.as_object_mut() else {
        return;
    };
    let annotations = metadata.entry("annotations").or_insert_with(|| json!({}));
    if let Some(annotations) = annotations.as_object_mut() {
        annotations.insert(RETAIN_ANNOTATION.into(), Value::String("true".into()));
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
    fn a_child_retained_on_delete_carries_the_retain_annotation_beside_its_own() {
        let built = ChildBuilder::secret("app-credentials")
            .annotation("team", "billing")
            .retain_on_delete()
            .build();
        assert_eq!(
            built["metadata"]["annotations"],
            json!({"team": "billing", RETAIN_ANNOTATION: "true"})
        );
        let mut marked = ChildBuilder::secret("app-credentials")
            .annotation("team", "billing")
            .build();
        retain_on_delete(&mut marked);
        assert_eq!(
            marked, built,
            "marking a built child is the same as the builder"
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
