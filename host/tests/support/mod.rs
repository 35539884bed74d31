//! Shared set-up for the host tests: the built plugin components, one
//! runtime per test binary, an in-memory object store serving reads, and
//! throwaway PostgreSQL servers.
#![allow(
    dead_code,
    reason = "each test binary uses a different part of the support module"
)]

pub mod cluster;
pub mod fixtures;
pub mod pg_cluster;
pub mod postgres;
pub mod webhooks;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, LazyLock, Mutex};

use async_trait::async_trait;
use serde_json::{Value, json};
use wasm_operator::grants::Grants;
use wasm_operator::runtime::{
    CallContext, HostServices, Plugin, PluginLimits, QueryResult, Runtime, RuntimeConfig, SqlValue,
};
use wasm_operator::vocabulary::{ObjectKind, ServerKey};

/// One runtime per test binary, as in the operator: one engine for all plugins.
pub static RUNTIME: LazyLock<Runtime> = LazyLock::new(|| {
    Runtime::new(&RuntimeConfig {
        cache_dir: Some(PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("plugin-cache")),
        disable_pooling: false,
    })
    .expect("creating the runtime")
});

/// The directory `scripts/build-plugins.sh` writes components to.
pub fn plugin_dir() -> PathBuf {
    std::env::var_os("WASM_OPERATOR_PLUGIN_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/plugins"))
}

/// The bytes of a built plugin component.
pub fn component(name: &str) -> Vec<u8> {
    let path = plugin_dir().join(format!("{name}.wasm"));
    std::fs::read(&path).unwrap_or_else(|e| {
        panic!(
            "cannot read {}: {e}; build the plugins first with scripts/build-plugins.sh",
            path.display()
        )
    })
}

/// Loads a built plugin through the shared runtime.
pub async fn load(name: &str) -> Plugin {
    RUNTIME
        .load(&component(name))
        .await
        .unwrap_or_else(|e| panic!("loading {name}: {e}"))
}

/// Limits with a custom deadline.
pub fn limits_with_deadline(ms: u64) -> PluginLimits {
    PluginLimits {
        deadline: std::time::Duration::from_millis(ms),
        ..PluginLimits::default()
    }
}

/// The Greeting kind the example plugin reconciles.
pub fn greeting_kind() -> ObjectKind {
    ObjectKind::new("examples.systems.mikemiller.tech", "v1alpha1", "Greeting")
}

/// A ConfigMap kind.
pub fn configmap_kind() -> ObjectKind {
    ObjectKind::new("", "v1", "ConfigMap")
}

/// A Greeting object as the API server would serve it.
pub fn greeting(name: &str, spec: Value) -> Value {
    json!({
        "apiVersion": "examples.systems.mikemiller.tech/v1alpha1",
        "kind": "Greeting",
        "metadata": {
            "name": name,
            "namespace": "default",
            "uid": format!("uid-{name}"),
            "generation": 1,
            "resourceVersion": "7",
        },
        "spec": spec,
    })
}

/// Where an object lives: kind, namespace (none when cluster-scoped), name.
type ObjectKey = (ObjectKind, Option<String>, String);

/// Objects keyed by kind, namespace and name, served to plugins as the
/// operator's cache would.
#[derive(Default)]
pub struct ObjectStore {
    objects: Mutex<BTreeMap<ObjectKey, Value>>,
}

impl ObjectStore {
    /// Adds or replaces an object.
    pub fn insert(&self, kind: ObjectKind, object: Value) {
        let namespace = object["metadata"]["namespace"].as_str().map(str::to_owned);
        let name = object["metadata"]["name"]
            .as_str()
            .expect("object has a name")
            .to_owned();
        self.objects
            .lock()
            .unwrap()
            .insert((kind, namespace, name), object);
    }

    /// A call context serving this store, granting reads of `kinds`.
    pub fn context(self: &Arc<Self>, kinds: &[ObjectKind]) -> CallContext {
        CallContext {
            services: Arc::clone(self) as Arc<dyn HostServices>,
            grants: Arc::new(Grants {
                read_kinds: kinds.iter().cloned().collect(),
                ..Grants::default()
            }),
        }
    }
}

#[async_trait]
impl HostServices for ObjectStore {
    async fn get(
        &self,
        kind: &ObjectKind,
        namespace: Option<&str>,
        name: &str,
    ) -> Result<Option<Value>, String> {
        let key = (kind.clone(), namespace.map(str::to_owned), name.to_owned());
        Ok(self.objects.lock().unwrap().get(&key).cloned())
    }

    async fn list(
        &self,
        kind: &ObjectKind,
        namespace: Option<&str>,
        label_selector: &str,
    ) -> Result<Vec<Value>, String> {
        if !label_selector.is_empty() {
            return Err("label selectors are not supported by the test store".into());
        }
        Ok(self
            .objects
            .lock()
            .unwrap()
            .iter()
            .filter(|((k, ns, _), _)| {
                k == kind && (namespace.is_none() || ns.as_deref() == namespace)
            })
            .map(|(_, v)| v.clone())
            .collect())
    }

    async fn query(
        &self,
        server: &ServerKey,
        _: Option<&str>,
        _: &str,
        _: &[SqlValue],
    ) -> Result<QueryResult, String> {
        Err(format!("the test store has no database server {server}"))
    }
}
