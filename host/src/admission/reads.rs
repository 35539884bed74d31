//! What a plugin reads while it decides admission: its granted read kinds,
//! from a watch cache of this replica's own. Every replica answers reviews
//! and only the leader keeps the reconcile caches, so a kind's cache starts
//! here on its first read; until its first list is in, and for any object
//! the cache does not hold, the read goes to the API server. A miss is
//! confirmed live because an object created just before the review (the
//! DatabaseUser a new Pod names) may not have reached the watch yet.
//! Queries are refused: a webhook must answer in its timeout, whatever a
//! database does.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use futures::StreamExt;
use kube::api::{Api, DynamicObject, ListParams};
use kube::core::{ApiResource, GroupVersionKind};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, ResourceExt};
use serde_json::Value;
use tokio::task::AbortHandle;
use wasm_operator_sdk::LabelSelector;

use crate::runtime::{HostServices, QueryResult, SqlValue};
use crate::vocabulary::{ObjectKind, ServerKey, labels_of};

/// Reads through per-kind watch caches, falling back to the API server.
pub struct ApiReads {
    client: Client,
    caches: Mutex<HashMap<ObjectKind, KindWatch>>,
}

/// The cache of one kind and the task that keeps it current.
#[derive(Clone)]
struct KindWatch {
    resource: ApiResource,
    store: Store<DynamicObject>,
    /// True once a full list is in the store. kube's reflector applies each
    /// event before this flag sees it, and on a relist keeps the previous
    /// state until the new list is complete, so a set flag never means a
    /// half-filled store.
    synced: Arc<AtomicBool>,
    task: AbortHandle,
}

impl ApiReads {
    /// Reads with `client`; caches start on first use, on the current
    /// Tokio runtime.
    pub fn new(client: Client) -> Self {
        Self {
            client,
            caches: Mutex::default(),
        }
    }

    /// The synced cache of `kind`, starting its watch on first use.
    fn cached(&self, kind: &ObjectKind) -> Option<KindWatch> {
        let mut caches = self.caches.lock().unwrap_or_else(|e| e.into_inner());
        // Looked up before `entry`, which would clone the key on every read.
        let watch = match caches.get(kind) {
            Some(watch) => watch,
            None => caches
                .entry(kind.clone())
                .or_insert_with(|| KindWatch::start(&self.client, resource(kind))),
        };
        watch.synced.load(Ordering::Acquire).then(|| watch.clone())
    }

    fn api(&self, kind: &ObjectKind, namespace: Option<&str>) -> Api<DynamicObject> {
        let resource = resource(kind);
        match namespace {
            Some(namespace) => Api::namespaced_with(self.client.clone(), namespace, &resource),
            None => Api::all_with(self.client.clone(), &resource),
        }
    }
}

fn resource(kind: &ObjectKind) -> ApiResource {
    ApiResource::from_gvk(&GroupVersionKind::gvk(
        &kind.group,
        &kind.version,
        &kind.kind,
    ))
}

impl KindWatch {
    fn start(client: &Client, resource: ApiResource) -> Self {
        let writer = reflector::store::Writer::new(resource.clone());
        let store = writer.as_reader();
        let synced = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&synced);
        let api = Api::<DynamicObject>::all_with(client.clone(), &resource);
        let stream = watcher(api, watcher::Config::default())
            .modify(|object| object.managed_fields_mut().clear());
        let task = tokio::spawn(
            reflector::reflector(writer, stream)
                .default_backoff()
                .for_each(move |event| {
                    if matches!(event, Ok(watcher::Event::InitDone)) {
                        flag.store(true, Ordering::Release);
                    }
                    std::future::ready(())
                }),
        )
        .abort_handle();
        Self {
            resource,
            store,
            synced,
            task,
        }
    }

    fn get(&self, namespace: Option<&str>, name: &str) -> Option<Arc<DynamicObject>> {
        let key = ObjectRef::new_with(name, self.resource.clone());
        self.store.get(&match namespace {
            Some(namespace) => key.within(namespace),
            None => key,
        })
    }

    fn list(&self, namespace: Option<&str>, selector: &LabelSelector) -> Vec<Arc<DynamicObject>> {
        let mut found = self.store.state_filter(|object| {
            namespace.is_none_or(|ns| object.metadata.namespace.as_deref() == Some(ns))
                && selector.matches(&labels_of(object))
        });
        // The order the API server lists in.
        found.sort_by_key(|object| (object.namespace(), object.name_any()));
        found
    }
}

impl Drop for ApiReads {
    fn drop(&mut self) {
        let caches = self.caches.get_mut().unwrap_or_else(|e| e.into_inner());
        for watch in caches.values() {
            watch.task.abort();
        }
    }
}

impl std::fmt::Debug for ApiReads {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ApiReads")
    }
}

fn to_value(object: &DynamicObject) -> Result<Value, String> {
    serde_json::to_value(object).map_err(|e| e.to_string())
}

#[async_trait]
impl HostServices for ApiReads {
    async fn get(
        &self,
        kind: &ObjectKind,
        namespace: Option<&str>,
        name: &str,
    ) -> Result<Option<Value>, String> {
        if let Some(object) = self
            .cached(kind)
            .and_then(|cache| cache.get(namespace, name))
        {
            return to_value(&object).map(Some);
        }
        let object = self
            .api(kind, namespace)
            .get_opt(name)
            .await
            .map_err(|e| format!("reading {kind} {name}: {e}"))?;
        object.as_ref().map(to_value).transpose()
    }

    async fn list(
        &self,
        kind: &ObjectKind,
        namespace: Option<&str>,
        label_selector: &str,
    ) -> Result<Vec<Value>, String> {
        if let Some(cache) = self.cached(kind) {
            let selector = LabelSelector::parse(label_selector)
                .map_err(|e| format!("listing {kind}: label selector {label_selector:?}: {e}"))?;
            return cache
                .list(namespace, &selector)
                .iter()
                .map(|object| to_value(object))
                .collect();
        }
        let params = ListParams::default().labels(label_selector);
        let list = self
            .api(kind, namespace)
            .list(&params)
            .await
            .map_err(|e| format!("listing {kind}: {e}"))?;
        list.items.iter().map(to_value).collect()
    }

    async fn query(
        &self,
        server: &ServerKey,
        _database: Option<&str>,
        _statement: &str,
        _params: &[SqlValue],
    ) -> Result<QueryResult, String> {
        Err(format!(
            "server {server}: SQL is not available while deciding admission (decide from the objects)"
        ))
    }
}
