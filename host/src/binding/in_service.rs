//! The version in service of every binding, readable by name from outside
//! its controller: the admission server answers each review with the
//! version that serves when the review arrives.

use std::collections::HashMap;
use std::sync::{Arc, PoisonError, RwLock};

use super::bound::BoundPlugin;

/// The version in service of every binding, by `ReconcilerPlugin` name.
///
/// Cheap to clone (one shared map). Readers get a clone of the version,
/// so a call that started on a version finishes on it even if another is
/// put in service meanwhile.
#[derive(Debug, Clone, Default)]
pub struct InService {
    versions: Arc<RwLock<HashMap<String, BoundPlugin>>>,
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

    /// Puts `version` in service for `binding`, replacing the previous one.
    pub(super) fn put(&self, binding: &str, version: BoundPlugin) {
        self.versions
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(binding.to_owned(), version);
    }

    /// Takes `binding` out of service.
    pub(super) fn remove(&self, binding: &str) {
        self.versions
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(binding);
    }
}
