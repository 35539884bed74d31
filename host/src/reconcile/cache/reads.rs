//! The caches of the kinds a plugin reads, for its `kube.get` and
//! `kube.list` calls.

use std::collections::HashMap;
use std::sync::Arc;

use futures::StreamExt;
use kube::api::DynamicObject;
use wasm_operator_sdk::SelectorError;

use super::kind::{CacheStream, KindCache, NotSynced};
use crate::vocabulary::ObjectKind;

/// A read a cache cannot serve.
#[derive(Debug, thiserror::Error)]
pub(in crate::reconcile) enum ReadError {
    /// The kind is not cached (not granted, which the runtime checks first).
    #[error("{0} is not cached for this plugin")]
    NotCached(ObjectKind),
    /// The label selector does not parse.
    #[error(transparent)]
    Selector(#[from] SelectorError),
}

/// The caches of the kinds a plugin reads, for its `kube.get` and
/// `kube.list` calls. Watches of kinds that are not also child kinds (whose
/// streams the controller polls) run on tasks of their own, for as long as
/// this lives.
pub(in crate::reconcile) struct ReadCaches {
    caches: HashMap<ObjectKind, KindCache>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl ReadCaches {
    /// Serves reads of `caches`; `streams` are the watches nobody else polls.
    pub(in crate::reconcile) fn new(
        caches: HashMap<ObjectKind, KindCache>,
        streams: Vec<CacheStream>,
    ) -> Self {
        let tasks = streams
            .into_iter()
            .map(|stream| tokio::spawn(stream.for_each(|_| std::future::ready(()))))
            .collect();
        Self { caches, tasks }
    }

    /// Waits for the first list of every cache.
    pub(in crate::reconcile) async fn synced(&self) -> Result<(), NotSynced> {
        for cache in self.caches.values() {
            cache.synced().await?;
        }
        Ok(())
    }

    fn cache(&self, kind: &ObjectKind) -> Result<&KindCache, ReadError> {
        self.caches
            .get(kind)
            .ok_or_else(|| ReadError::NotCached(kind.clone()))
    }

    /// The cached object `namespace/name` of `kind`.
    pub(in crate::reconcile) fn get(
        &self,
        kind: &ObjectKind,
        namespace: Option<&str>,
        name: &str,
    ) -> Result<Option<Arc<DynamicObject>>, ReadError> {
        Ok(self.cache(kind)?.get(namespace, name))
    }

    /// The cached objects of `kind` (in `namespace`, when given) that
    /// `selector` selects.
    pub(in crate::reconcile) fn list(
        &self,
        kind: &ObjectKind,
        namespace: Option<&str>,
        selector: &str,
    ) -> Result<Vec<Arc<DynamicObject>>, ReadError> {
        Ok(self.cache(kind)?.list(namespace, selector)?)
    }
}

impl Drop for ReadCaches {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}
