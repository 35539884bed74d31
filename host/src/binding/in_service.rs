//! The version in service of every binding, readable by name from outside
//! its controller: the admission server answers each review with the
//! version that serves when the review arrives, and webhook registration
//! follows the set of versions as it changes.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, PoisonError, RwLock};

use tokio::sync::watch;

use super::bound::BoundPlugin;

/// The version in service of every binding, by `ReconcilerPlugin` name.
///
/// Cheap to clone (one shared map). Readers get a clone of the version,
/// so a call that started on a version finishes on it even if another is
/// put in service meanwhile.
#[derive(Debug, Clone)]
pub struct InService {
    versions: Arc<RwLock<HashMap<String, BoundPlugin>>>,
    /// Bumped on every change, for [`InService::changes`].
    generation: Arc<watch::Sender<u64>>,
}

impl Default for InService {
    fn default() -> Self {
        Self {
            versions: Arc::default(),
            generation: Arc::new(watch::Sender::new(0)),
        }
    }
}

impl InService {
    /// The version of `binding` in service now, if any.
    pub fn get(&self, binding: &str) -> Option<BoundPlugin> {
        self.versions
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(binding)
            .cloned()
    }

    /// Every binding's version in service now, by name.
    pub fn all(&self) -> BTreeMap<String, BoundPlugin> {
        self.versions
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .map(|(name, version)| (name.clone(), version.clone()))
            .collect()
    }

    /// A receiver that sees a change each time a version is put in or
    /// taken out of service.
    pub fn changes(&self) -> watch::Receiver<u64> {
        self.generation.subscribe()
    }

    /// Puts `version` in service for `binding`, replacing the previous one.
    pub(super) fn put(&self, binding: &str, version: BoundPlugin) {
        self.versions
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(binding.to_owned(), version);
        self.generation.send_modify(|g| *g = g.wrapping_add(1));
    }

    /// Takes `binding` out of service.
    pub(super) fn remove(&self, binding: &str) {
        let removed = self
            .versions
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(binding);
        if removed.is_some() {
            self.generation.send_modify(|g| *g = g.wrapping_add(1));
        }
    }
}
