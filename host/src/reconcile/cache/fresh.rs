//! Read-your-writes over a watch cache.
//!
//! A controller reads the objects its watches cache, and a cache learns of
//! the host's own writes only when the watch event comes back. A reconcile
//! queued meanwhile (a child's change, a requeue) would hand the plugin the
//! state from *before* those writes: a plugin that keeps state in status
//! (the last rotation request it acted on, say) then acts twice, and one
//! that reads a child it just replaced sees the old one. So the host
//! remembers what its writes returned, and what it deleted, until the cache
//! has caught up, and reads through that record.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use kube::ResourceExt;
use kube::api::DynamicObject;
use kube::runtime::watcher;

use super::slim::slim;

/// Objects this controller wrote or deleted that its cache may not show
/// yet, by namespace and name.
#[derive(Debug, Default, Clone)]
pub(in crate::reconcile) struct WrittenObjects {
    pending: Arc<Mutex<HashMap<Key, Written>>>,
}

type Key = (Option<String>, String);

fn key(object: &DynamicObject) -> Key {
    (object.namespace(), object.name_any())
}

#[derive(Debug)]
enum Written {
    /// A write returned `object`; `before` is the resource version the
    /// object had before it (`None` when the write created it).
    Applied {
        before: Option<String>,
        object: Arc<DynamicObject>,
    },
    /// The object with this uid was deleted.
    Deleted { uid: Option<String> },
}

impl WrittenObjects {
    /// Remembers `written`, what a write returned, slimmed as the caches
    /// keep objects; `before` is the object as it was, if it existed.
    pub(in crate::reconcile) fn record(
        &self,
        before: Option<&DynamicObject>,
        mut written: DynamicObject,
    ) {
        slim(&mut written);
        self.lock().insert(
            key(&written),
            Written::Applied {
                before: before.and_then(ResourceExt::resource_version),
                object: Arc::new(written),
            },
        );
    }

    /// Remembers that `object` was deleted.
    pub(in crate::reconcile) fn record_deleted(&self, object: &DynamicObject) {
        self.lock()
            .insert(key(object), Written::Deleted { uid: object.uid() });
    }

    /// `cached` as this controller last left it: the object its write
    /// returned when the cache is older, `None` when it deleted it.
    pub(in crate::reconcile) fn overlay(
        &self,
        cached: Arc<DynamicObject>,
    ) -> Option<Arc<DynamicObject>> {
        let key = key(&cached);
        let mut pending = self.lock();
        match pending.get(&key) {
            Some(Written::Applied { before, object }) if is_older(&cached, before, object) => {
                Some(Arc::clone(object))
            }
            Some(Written::Deleted { uid }) if *uid == cached.uid() => None,
            Some(_) => {
                pending.remove(&key);
                Some(cached)
            }
            None => Some(cached),
        }
    }

    /// Objects this controller created that the cache does not hold yet and
    /// that `wanted` selects; `cached` says whether the cache holds a key.
    pub(in crate::reconcile) fn created(
        &self,
        wanted: impl Fn(&DynamicObject) -> bool,
        cached: impl Fn(&DynamicObject) -> bool,
    ) -> Vec<Arc<DynamicObject>> {
        self.lock()
            .values()
            .filter_map(|written| match written {
                Written::Applied { object, .. } if wanted(object) && !cached(object) => {
                    Some(Arc::clone(object))
                }
                _ => None,
            })
            .collect()
    }

    /// Forgets what the watch has now delivered: keeps the record as small
    /// as the watch's lag.
    pub(in crate::reconcile) fn observe(&self, event: &watcher::Event<DynamicObject>) {
        match event {
            watcher::Event::Apply(object) | watcher::Event::InitApply(object) => {
                let key = key(object);
                let mut pending = self.lock();
                let caught_up = match pending.get(&key) {
                    Some(Written::Applied {
                        before,
                        object: written,
                    }) => !is_older(object, before, written),
                    // Still terminating (finalizers): keep hiding it.
                    Some(Written::Deleted { uid }) => *uid != object.uid(),
                    None => false,
                };
                if caught_up {
                    pending.remove(&key);
                }
            }
            watcher::Event::Delete(object) => {
                self.lock().remove(&key(object));
            }
            watcher::Event::Init | watcher::Event::InitDone => {}
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Key, Written>> {
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Whether `cached` predates `written`, the object a write to the version
/// `before` returned. Resource versions are compared as the integers the
/// API server issues (etcd revisions); should one not be an integer, only
/// the exact version before the write counts as older.
fn is_older(cached: &DynamicObject, before: &Option<String>, written: &DynamicObject) -> bool {
    let cached_version = cached.resource_version();
    let parse = |v: &Option<String>| v.as_deref().and_then(|v| v.parse::<u64>().ok());
    if cached.uid() != written.uid() {
        // Another incarnation of the name: the one with the later version wins.
        return parse(&cached_version) < parse(&written.resource_version());
    }
    match (parse(&cached_version), parse(&written.resource_version())) {
        (Some(cached), Some(written)) => cached < written,
        _ => cached_version.is_some() && cached_version == *before,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::api::ObjectMeta;

    fn object(name: &str, uid: &str, version: &str, phase: &str) -> DynamicObject {
        DynamicObject {
            types: None,
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("ns".into()),
                uid: Some(uid.into()),
                resource_version: Some(version.into()),
                ..ObjectMeta::default()
            },
            data: serde_json::json!({"status": {"phase": phase}}),
        }
    }

    fn a(version: &str, phase: &str) -> DynamicObject {
        object("a", "uid-a", version, phase)
    }

    fn phase(object: &DynamicObject) -> &str {
        object.data["status"]["phase"].as_str().unwrap()
    }

    fn seen(written: &WrittenObjects, cached: DynamicObject) -> Option<String> {
        written
            .overlay(Arc::new(cached))
            .map(|o| phase(&o).to_owned())
    }

    #[test]
    fn a_cached_copy_older_than_the_write_is_replaced_by_the_written_object() {
        let written = WrittenObjects::default();
        let before = a("10", "old");
        written.record(Some(&before), a("11", "new"));
        assert_eq!(seen(&written, before).as_deref(), Some("new"));
        // Still stale on the next look: still replaced.
        assert_eq!(seen(&written, a("10", "old")).as_deref(), Some("new"));
    }

    #[test]
    fn a_cache_that_caught_up_or_moved_on_wins_and_the_record_is_dropped() {
        let written = WrittenObjects::default();
        written.record(Some(&a("10", "old")), a("11", "new"));
        assert_eq!(seen(&written, a("12", "later")).as_deref(), Some("later"));
        // The record is gone: even an old copy is now taken as it is.
        assert_eq!(seen(&written, a("10", "old")).as_deref(), Some("old"));
    }

    #[test]
    fn watch_events_that_deliver_the_write_clear_the_record() {
        let written = WrittenObjects::default();
        written.record(Some(&a("10", "old")), a("11", "new"));
        written.observe(&watcher::Event::Apply(a("10", "old")));
        assert_eq!(written.lock().len(), 1, "an older event keeps it");
        written.observe(&watcher::Event::Apply(a("11", "new")));
        assert!(written.lock().is_empty());
        written.record(Some(&a("11", "new")), a("12", "newer"));
        written.observe(&watcher::Event::Delete(a("11", "new")));
        assert!(written.lock().is_empty(), "a deleted object is forgotten");
    }

    #[test]
    fn opaque_versions_count_as_older_only_when_they_are_the_version_before_the_write() {
        let written = WrittenObjects::default();
        written.record(Some(&a("a1", "old")), a("b2", "new"));
        assert_eq!(seen(&written, a("a1", "old")).as_deref(), Some("new"));
        assert_eq!(seen(&written, a("c3", "other")).as_deref(), Some("other"));
    }

    #[test]
    fn a_created_object_shows_until_the_cache_holds_it() {
        let written = WrittenObjects::default();
        written.record(None, object("b", "uid-b", "20", "created"));
        let wanted = |o: &DynamicObject| o.name_any() == "b";
        assert_eq!(written.created(wanted, |_| false).len(), 1);
        assert!(
            written.created(wanted, |_| true).is_empty(),
            "cached: not twice"
        );
        assert!(written.created(|_| false, |_| false).is_empty());
        written.observe(&watcher::Event::Apply(object(
            "b", "uid-b", "20", "created",
        )));
        assert!(written.created(wanted, |_| false).is_empty());
    }

    #[test]
    fn a_deleted_object_stays_hidden_while_it_terminates_and_a_new_one_shows() {
        let written = WrittenObjects::default();
        written.record_deleted(&a("10", "old"));
        assert_eq!(seen(&written, a("10", "old")), None);
        written.observe(&watcher::Event::Apply(a("11", "terminating")));
        assert_eq!(seen(&written, a("11", "terminating")), None);
        // The name comes back as another object: it shows.
        assert_eq!(
            seen(&written, object("a", "uid-a2", "30", "reborn")).as_deref(),
            Some("reborn")
        );
        written.record_deleted(&a("40", "again"));
        written.observe(&watcher::Event::Delete(a("40", "again")));
        assert!(written.lock().is_empty());
    }
}
