//! Read-your-writes for the reconciled objects.
//!
//! A controller reconciles the object its watch cache holds, and the cache
//! learns of the host's own status write only when the watch event comes
//! back. A reconcile queued meanwhile (a child's change, a requeue) would
//! hand the plugin the object as it was *before* that write: a plugin that
//! keeps state in status (the last rotation request it acted on, say) then
//! acts twice. So the host remembers each object its status writes
//! returned, until the cache has caught up, and reconciles that one instead
//! of an older copy.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use kube::ResourceExt;
use kube::api::DynamicObject;
use kube::runtime::watcher;

/// The objects this controller wrote that its cache may not have seen yet,
/// by uid.
#[derive(Debug, Default, Clone)]
pub(super) struct WrittenObjects {
    pending: Arc<Mutex<HashMap<String, Written>>>,
}

#[derive(Debug)]
struct Written {
    /// The resource version the object had before the write.
    before: Option<String>,
    /// The object the write returned.
    object: Arc<DynamicObject>,
}

impl WrittenObjects {
    /// Remembers `written`, the object a write to `before` returned.
    pub(super) fn record(&self, before: &DynamicObject, written: DynamicObject) {
        let Some(uid) = written.uid() else { return };
        self.lock().insert(
            uid,
            Written {
                before: before.resource_version(),
                object: Arc::new(written),
            },
        );
    }

    /// The newer of `cached` and what this controller last wrote to it.
    pub(super) fn fresher(&self, cached: Arc<DynamicObject>) -> Arc<DynamicObject> {
        let Some(uid) = cached.uid() else {
            return cached;
        };
        let mut pending = self.lock();
        match pending.get(&uid) {
            Some(written) if is_older(&cached, written) => Arc::clone(&written.object),
            Some(_) => {
                pending.remove(&uid);
                cached
            }
            None => cached,
        }
    }

    /// Forgets writes the watch has delivered, and deleted objects: keeps
    /// the record as small as the watch's lag.
    pub(super) fn observe(&self, event: &watcher::Event<DynamicObject>) {
        match event {
            watcher::Event::Apply(object) | watcher::Event::InitApply(object) => {
                let Some(uid) = object.uid() else { return };
                let mut pending = self.lock();
                if pending
                    .get(&uid)
                    .is_some_and(|written| !is_older(object, written))
                {
                    pending.remove(&uid);
                }
            }
            watcher::Event::Delete(object) => {
                if let Some(uid) = object.uid() {
                    self.lock().remove(&uid);
                }
            }
            watcher::Event::Init | watcher::Event::InitDone => {}
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Written>> {
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Whether `cached` predates `written`. Resource versions are compared as
/// the integers the API server issues (etcd revisions); should one not be
/// an integer, only the exact version before the write counts as older.
fn is_older(cached: &DynamicObject, written: &Written) -> bool {
    let cached_version = cached.resource_version();
    let parse = |v: &Option<String>| v.as_deref().and_then(|v| v.parse::<u64>().ok());
    match (
        parse(&cached_version),
        parse(&written.object.resource_version()),
    ) {
        (Some(cached), Some(written)) => cached < written,
        _ => cached_version.is_some() && cached_version == written.before,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::api::ObjectMeta;

    fn object(version: &str, phase: &str) -> DynamicObject {
        DynamicObject {
            types: None,
            metadata: ObjectMeta {
                name: Some("a".into()),
                uid: Some("uid-a".into()),
                resource_version: Some(version.into()),
                ..ObjectMeta::default()
            },
            data: serde_json::json!({"status": {"phase": phase}}),
        }
    }

    fn phase(object: &DynamicObject) -> &str {
        object.data["status"]["phase"].as_str().unwrap()
    }

    #[test]
    fn a_cached_copy_older_than_the_write_is_replaced_by_the_written_object() {
        let written = WrittenObjects::default();
        let before = object("10", "old");
        written.record(&before, object("11", "new"));
        assert_eq!(phase(&written.fresher(Arc::new(before))), "new");
        // Still stale on the next look: still replaced.
        assert_eq!(
            phase(&written.fresher(Arc::new(object("10", "old")))),
            "new"
        );
    }

    #[test]
    fn a_cache_that_caught_up_or_moved_on_wins_and_the_record_is_dropped() {
        let written = WrittenObjects::default();
        written.record(&object("10", "old"), object("11", "new"));
        assert_eq!(
            phase(&written.fresher(Arc::new(object("12", "later")))),
            "later"
        );
        // The record is gone: even an old copy is now taken as it is.
        assert_eq!(
            phase(&written.fresher(Arc::new(object("10", "old")))),
            "old"
        );
    }

    #[test]
    fn watch_events_that_deliver_the_write_clear_the_record() {
        let written = WrittenObjects::default();
        written.record(&object("10", "old"), object("11", "new"));
        written.observe(&watcher::Event::Apply(object("10", "old")));
        assert_eq!(written.lock().len(), 1, "an older event keeps it");
        written.observe(&watcher::Event::Apply(object("11", "new")));
        assert!(written.lock().is_empty());
        written.record(&object("11", "new"), object("12", "newer"));
        written.observe(&watcher::Event::Delete(object("11", "new")));
        assert!(written.lock().is_empty(), "a deleted object is forgotten");
    }

    #[test]
    fn opaque_versions_count_as_older_only_when_they_are_the_version_before_the_write() {
        let written = WrittenObjects::default();
        written.record(&object("a1", "old"), object("b2", "new"));
        assert_eq!(
            phase(&written.fresher(Arc::new(object("a1", "old")))),
            "new"
        );
        assert_eq!(
            phase(&written.fresher(Arc::new(object("c3", "other")))),
            "other"
        );
    }
}
