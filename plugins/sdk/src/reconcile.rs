//! What a plugin receives for one object and the decision it returns.

use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use crate::error::PluginError;
use crate::event::Event;
use crate::kind::GroupVersionKind;
use crate::object::{DecodeError, DecodeTarget, Object, decode};
use crate::sql::SqlPlan;

/// Everything the host gathered for one reconcile or finalize call.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    /// The object being reconciled.
    pub object: Object,
    /// Its existing children of the declared child kinds.
    pub children: Vec<Object>,
    /// The binding's settings, already validated against the settings schema.
    pub settings: Value,
    /// The database servers this plugin may query and plan against (`namespace/name`).
    pub servers: Vec<String>,
}

impl Request {
    /// A request for `object` with no children, `{}` settings and no servers.
    #[must_use]
    pub fn new(object: impl Into<Object>) -> Self {
        Self {
            object: object.into(),
            children: Vec::new(),
            settings: Value::Object(serde_json::Map::new()),
            servers: Vec::new(),
        }
    }

    /// Adds an existing child (for tests).
    #[must_use]
    pub fn with_child(mut self, child: impl Into<Object>) -> Self {
        self.children.push(child.into());
        self
    }

    /// Sets the binding's settings (for tests).
    #[must_use]
    pub fn with_settings(mut self, settings: Value) -> Self {
        self.settings = settings;
        self
    }

    /// Adds a granted server (for tests).
    #[must_use]
    pub fn with_server(mut self, server: impl Into<String>) -> Self {
        self.servers.push(server.into());
        self
    }

    /// Deserializes the settings into `T`.
    ///
    /// # Errors
    /// A [`DecodeError`] naming the field path (`settings.defaultAudience: …`);
    /// `?` makes it a non-retryable `InvalidSettings` error.
    pub fn settings_as<T: DeserializeOwned>(&self) -> Result<T, DecodeError> {
        decode(&self.settings, DecodeTarget::Settings, "settings")
    }

    /// The existing child of `kind` named `name`, if any.
    #[must_use]
    pub fn existing_child(&self, kind: &GroupVersionKind, name: &str) -> Option<&Object> {
        self.children
            .iter()
            .find(|child| child.name() == name && child.gvk() == *kind)
    }
}

/// A plugin's decision for one object.
///
/// # Children are pruned unless returned
/// [`children`](Self::children) is the complete desired set: the host
/// deletes every existing child of a declared kind that is not in it. A
/// response that returns early (waiting for something, not allowed yet)
/// must therefore still name the children to keep — a credentials Secret
/// left out is deleted, and its password with it. Keep them with
/// [`keep_child`](Self::keep_child), [`keep_children`](Self::keep_children)
/// or [`keep`](Self::keep); the host writes nothing for a kept child.
#[derive(Debug, Clone, PartialEq, Default)]
#[must_use]
pub struct Response {
    /// The complete desired set of children; existing children of declared
    /// kinds not listed here are deleted by the host.
    pub children: Vec<Value>,
    /// The desired `.status`, or none to leave it unchanged.
    pub status: Option<Value>,
    /// SQL to run, in order, before the children are applied.
    pub sql: Vec<SqlPlan>,
    /// Events to record on the object.
    pub events: Vec<Event>,
    /// Reconcile again after this long even if nothing changes.
    pub requeue_after: Option<Duration>,
}

impl Response {
    /// A decision with no children, no status change, no SQL and no events.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a desired child (build it with [`ChildBuilder`](crate::ChildBuilder)).
    pub fn child(mut self, child: Value) -> Self {
        self.children.push(child);
        self
    }

    /// Sets the desired `.status`.
    pub fn status(mut self, status: Value) -> Self {
        self.status = Some(status);
        self
    }

    /// Sets the desired `.status` from a typed status (a `Serialize` struct),
    /// exactly as [`status`](Self::status) with its JSON.
    ///
    /// # Errors
    /// A non-retryable `StatusNotSerializable` [`PluginError`] naming the
    /// field (`status.byKey: key must be a string`) when `status` has no JSON
    /// form, such as a map with non-string keys.
    pub fn status_of<T: Serialize + ?Sized>(self, status: &T) -> Result<Self, PluginError> {
        let value = serde_path_to_error::serialize(status, serde_json::value::Serializer).map_err(
            |error| {
                let inner = error.path().to_string();
                let path = if inner == "." {
                    "status".to_owned()
                } else {
                    format!("status.{inner}")
                };
                PluginError::permanent(
                    "StatusNotSerializable",
                    format!("{path}: {}", error.into_inner()),
                )
            },
        )?;
        Ok(self.status(value))
    }

    /// Keeps an existing child as it is, so that the host does not prune it.
    ///
    /// The child is re-emitted with its `apiVersion`, `kind`, name,
    /// namespace and every top-level field but `metadata` and `status`
    /// (`data`, `type`, `spec`, …) as they are. That is a subset of what
    /// exists, so the host writes nothing. Labels, annotations and other
    /// metadata are left out: the host adds its own labels and owner
    /// reference, and keeping a child never claims fields that others set.
    pub fn keep(self, child: &Object) -> Self {
        let mut kept: Map<String, Value> = child
            .as_value()
            .as_object()
            .into_iter()
            .flatten()
            .filter(|(key, _)| !matches!(key.as_str(), "metadata" | "status"))
            .map(|(key, value)| (key.clone(), value.clone()))
            .collect();
        let mut metadata = Map::new();
        for key in ["name", "namespace"] {
            if let Some(value) = child.pointer(&format!("/metadata/{key}")) {
                metadata.insert(key.into(), value.clone());
            }
        }
        kept.insert("metadata".into(), Value::Object(metadata));
        self.child(Value::Object(kept))
    }

    /// Keeps the existing child of `kind` named `name` as it is (see
    /// [`keep`](Self::keep)); adds nothing when there is none.
    pub fn keep_child(self, req: &Request, kind: &GroupVersionKind, name: &str) -> Self {
        match req.existing_child(kind, name) {
            Some(existing) => self.keep(existing),
            None => self,
        }
    }

    /// Keeps every existing child this response does not return yet, as it
    /// is (see [`keep`](Self::keep)): for an early return that changes no
    /// child. Call it after adding the children the response does change.
    pub fn keep_children(mut self, req: &Request) -> Self {
        for existing in &req.children {
            let returned = self.children.iter().any(|child| {
                ["/apiVersion", "/kind", "/metadata/name"]
                    .iter()
                    .all(|field| child.pointer(field) == existing.pointer(field))
            });
            if !returned {
                self = self.keep(existing);
            }
        }
        self
    }

    /// Adds an SQL plan; empty plans are dropped.
    pub fn sql(mut self, plan: SqlPlan) -> Self {
        if !plan.is_empty() {
            self.sql.push(plan);
        }
        self
    }

    /// Adds an event.
    pub fn event(mut self, event: Event) -> Self {
        self.events.push(event);
        self
    }

    /// Asks to be called again after `after` (whole milliseconds).
    pub fn requeue_after(mut self, after: Duration) -> Self {
        self.requeue_after = Some(after);
        self
    }
}

/// A plugin's decision while its object is being deleted.
#[derive(Debug, Clone, PartialEq, Default)]
#[must_use]
pub struct FinalizeResponse {
    /// Cleanup is complete; the host may remove its finalizer.
    pub done: bool,
    /// SQL to run, in order.
    pub sql: Vec<SqlPlan>,
    /// Events to record on the object.
    pub events: Vec<Event>,
    /// When not done: ask again after this long.
    pub requeue_after: Option<Duration>,
}

impl FinalizeResponse {
    /// Cleanup is complete (after running any SQL added to this response).
    pub fn done() -> Self {
        Self {
            done: true,
            ..Self::default()
        }
    }

    /// Cleanup is not complete yet; ask again after `after`.
    pub fn pending(after: Duration) -> Self {
        Self {
            done: false,
            requeue_after: Some(after),
            ..Self::default()
        }
    }

    /// Adds an SQL plan; empty plans are dropped.
    pub fn sql(mut self, plan: SqlPlan) -> Self {
        if !plan.is_empty() {
            self.sql.push(plan);
        }
        self
    }

    /// Adds an event.
    pub fn event(mut self, event: Event) -> Self {
        self.events.push(event);
        self
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde_json::json;

    use super::*;

    fn existing_secret() -> Value {
        json!({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": {
                "name": "app-credentials", "namespace": "infra", "uid": "s-1",
                "resourceVersion": "42", "creationTimestamp": "2025-01-01T00:00:00Z",
                "labels": {"systems.mikemiller.tech/plugin": "postgres-database"},
                "annotations": {"note": "set by someone else"},
                "ownerReferences": [{"kind": "Database", "name": "app", "uid": "d-1"}],
                "managedFields": [{"manager": "wasm-operator.postgres-database"}]
            },
            "type": "kubernetes.io/basic-auth",
            "data": {"password": "c2VjcmV0"}
        })
    }

    fn secret_kind() -> GroupVersionKind {
        GroupVersionKind::core("v1", "Secret")
    }

    #[test]
    fn status_of_sets_the_same_json_as_status_with_the_serialized_value() {
        #[derive(Serialize)]
        #[serde(rename_all = "camelCase")]
        struct Status {
            server_version: &'static str,
            reachable: bool,
        }
        let typed = Response::new()
            .status_of(&Status {
                server_version: "16.2",
                reachable: true,
            })
            .unwrap();
        let untyped = Response::new().status(json!({"serverVersion": "16.2", "reachable": true}));
        assert_eq!(typed, untyped);
    }

    #[test]
    fn status_without_a_json_form_is_a_permanent_error_naming_the_field() {
        #[derive(Serialize)]
        struct Status {
            by_port: BTreeMap<(u16, u16), String>,
        }
        let status = Status {
            by_port: BTreeMap::from([((1, 2), "x".to_owned())]),
        };
        let error = Response::new().status_of(&status).unwrap_err();
        assert_eq!(error.reason, "StatusNotSerializable");
        assert!(!error.retryable);
        assert!(
            error
                .message
                .starts_with("status.by_port: key must be a string"),
            "{}",
            error.message
        );
    }

    #[test]
    fn kept_child_is_the_existing_object_without_server_metadata_labels_or_status() {
        let mut existing = existing_secret();
        existing["status"] = json!({"phase": "whatever"});
        let response = Response::new().keep(&Object::new(existing));
        assert_eq!(
            response.children,
            vec![json!({
                "apiVersion": "v1", "kind": "Secret",
                "metadata": {"name": "app-credentials", "namespace": "infra"},
                "type": "kubernetes.io/basic-auth",
                "data": {"password": "c2VjcmV0"}
            })]
        );
    }

    #[test]
    fn keep_child_keeps_the_named_existing_child_and_adds_nothing_when_there_is_none() {
        let request =
            Request::new(json!({"metadata": {"name": "app"}})).with_child(existing_secret());
        let kept = Response::new().keep_child(&request, &secret_kind(), "app-credentials");
        assert_eq!(kept.children.len(), 1);
        assert_eq!(kept.children[0]["data"]["password"], "c2VjcmV0");
        let absent = Response::new().keep_child(&request, &secret_kind(), "other");
        assert!(absent.children.is_empty());
        let other_kind = GroupVersionKind::core("v1", "ConfigMap");
        let absent = Response::new().keep_child(&request, &other_kind, "app-credentials");
        assert!(
            absent.children.is_empty(),
            "a child of another kind is not it"
        );
    }

    #[test]
    fn keep_children_keeps_every_existing_child_the_response_does_not_return() {
        let other = json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "app-config", "namespace": "infra"},
            "data": {"k": "v"}
        });
        let request = Request::new(json!({"metadata": {"name": "app"}}))
            .with_child(existing_secret())
            .with_child(other.clone());
        let new_secret = json!({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "app-credentials", "namespace": "infra"},
            "data": {"password": "bmV3"}
        });
        let response = Response::new()
            .child(new_secret.clone())
            .keep_children(&request);
        assert_eq!(response.children, vec![new_secret, other]);
    }
}
