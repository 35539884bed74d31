//! Builders of the objects the end-to-end tests create: a binding, a
//! Greeting, a Database.

use std::path::Path;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::Client;
use kube::api::{Api, DynamicObject, ObjectMeta, Patch, PatchParams, PostParams};
use kube::core::{ApiResource, GroupVersionKind};
use serde_json::{Value, json};
use wasm_operator::crd::ReconcilerPlugin;

/// A `ReconcilerPlugin`, field by field.
#[must_use]
pub struct Binding {
    name: String,
    spec: Value,
}

impl Binding {
    /// A binding named `name` with an empty spec.
    pub fn named(name: &str) -> Self {
        Self {
            name: name.to_owned(),
            spec: json!({}),
        }
    }

    /// Loads its component from a ConfigMap key.
    pub fn source_config_map(mut self, namespace: &str, name: &str, key: &str) -> Self {
        self.spec["source"] =
            json!({"configMap": {"namespace": namespace, "name": name, "key": key}});
        self
    }

    /// Loads its component from a file on the operator's filesystem.
    pub fn source_file(mut self, path: &Path) -> Self {
        let path = path
            .canonicalize()
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        self.spec["source"] = json!({"file": path});
        self
    }

    /// `spec.settings`.
    pub fn settings(mut self, settings: Value) -> Self {
        self.spec["settings"] = settings;
        self
    }

    /// `spec.grants`.
    pub fn grants(mut self, grants: Value) -> Self {
        self.spec["grants"] = grants;
        self
    }

    /// `spec.limits`.
    pub fn limits(mut self, limits: Value) -> Self {
        self.spec["limits"] = limits;
        self
    }

    /// `spec.admission` (failure policy, timeout, namespace selector of
    /// the webhooks the operator registers).
    pub fn admission(mut self, admission: Value) -> Self {
        self.spec["admission"] = admission;
        self
    }

    /// The object.
    pub fn object(&self) -> Value {
        json!({
            "apiVersion": "systems.mikemiller.tech/v1alpha1",
            "kind": "ReconcilerPlugin",
            "metadata": {"name": self.name},
            "spec": self.spec,
        })
    }

    /// Creates it.
    pub async fn create(self, client: &Client) {
        let binding: ReconcilerPlugin =
            serde_json::from_value(self.object()).expect("a valid ReconcilerPlugin");
        Api::<ReconcilerPlugin>::all(client.clone())
            .create(&PostParams::default(), &binding)
            .await
            .unwrap_or_else(|e| panic!("creating binding {}: {e}", self.name));
    }
}

/// A new Greeting `namespace/name` with `spec`, as a user would apply it.
pub fn greeting(namespace: &str, name: &str, spec: Value) -> Value {
    json!({
        "apiVersion": "examples.systems.mikemiller.tech/v1alpha1",
        "kind": "Greeting",
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec,
    })
}

/// A new Database `namespace/name` with `spec`, as a user would apply it.
pub fn database(namespace: &str, name: &str, spec: Value) -> Value {
    json!({
        "apiVersion": "systems.mikemiller.tech/v1alpha1",
        "kind": "Database",
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec,
    })
}

/// The Greetings of `namespace`.
pub fn greetings(client: &Client, namespace: &str) -> Api<DynamicObject> {
    let resource = ApiResource::from_gvk(&GroupVersionKind::gvk(
        "examples.systems.mikemiller.tech",
        "v1alpha1",
        "Greeting",
    ));
    Api::namespaced_with(client.clone(), namespace, &resource)
}

/// Creates the Greeting `default/name` saying `text`, as a user would.
pub async fn create_greeting(client: &Client, name: &str, text: &str) -> DynamicObject {
    let object: DynamicObject =
        serde_json::from_value(greeting("default", name, json!({"greeting": text}))).unwrap();
    greetings(client, "default")
        .create(&PostParams::default(), &object)
        .await
        .unwrap()
}

/// Puts component `bytes` under `key` of the ConfigMap `namespace/name`
/// (created if missing), as `plugin push` does; each key has a field
/// manager of its own, so other keys stay.
pub async fn put_component(client: &Client, namespace: &str, name: &str, key: &str, bytes: &[u8]) {
    let config_map = ConfigMap {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some(namespace.into()),
            ..ObjectMeta::default()
        },
        binary_data: Some([(key.to_owned(), ByteString(bytes.to_vec()))].into()),
        ..ConfigMap::default()
    };
    Api::<ConfigMap>::namespaced(client.clone(), namespace)
        .patch(
            name,
            &PatchParams::apply(&format!("e2e-test.{key}")).force(),
            &Patch::Apply(&config_map),
        )
        .await
        .unwrap_or_else(|e| panic!("putting {key} into ConfigMap {namespace}/{name}: {e}"));
}
