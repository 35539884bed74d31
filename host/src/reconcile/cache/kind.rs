//! The watch cache of one kind: kube-runtime's reflector store, plus what
//! the store lacks: an index of children by owner, and read-your-writes
//! ([`WrittenObjects`]) so a reconcile sees the children it just applied or
//! deleted even before the watch delivers them.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::{Stream, StreamExt, TryStreamExt};
use kube::api::{Api, DynamicObject};
use kube::discovery::ApiResource;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, ResourceExt};
use tokio::sync::watch;
use wasm_operator_sdk::{LabelSelector, SelectorError};

use super::fresh::WrittenObjects;
use super::slim::slim;
use crate::vocabulary::{OWNER_UID_LABEL, PLUGIN_LABEL, labels_of};

/// How long a controller waits for a cache's first list before it reports
/// the kind as unavailable.
const SYNC_TIMEOUT: Duration = Duration::from_secs(60);

/// A cache that never finished its first list.
#[derive(Debug, thiserror::Error)]
#[error(
    "the watch cache of {kind} did not sync within {SYNC_TIMEOUT:?}; check that the API server serves the kind and that the operator may list and watch it"
)]
pub struct NotSynced {
    /// `apiVersion/kind` of the cache.
    pub kind: String,
}

/// `(namespace, name)`: how objects are told apart within one kind.
type Name = (Option<String>, String);

fn name_of(object: &DynamicObject) -> Name {
    (object.namespace(), object.name_any())
}

/// The objects of one kind: all of them when the plugin reads the kind,
/// else only the children of this plugin (selected by [`PLUGIN_LABEL`]).
#[derive(Clone)]
pub(in crate::reconcile) struct KindCache {
    resource: ApiResource,
    namespaced: bool,
    plugin: Arc<str>,
    store: Store<DynamicObject>,
    /// True once the first list is in the store *and* the owner index. The
    /// store alone turns ready a step earlier (kube's reflector applies the
    /// list before this cache sees it): a reconcile in between would find
    /// no children, and a plugin would take a missing Secret for a new one.
    synced: Arc<watch::Sender<bool>>,
    index: Arc<Mutex<OwnerIndex>>,
    written: WrittenObjects,
}

/// The watch stream that fills a [`KindCache`], yielding every object it
/// touches; something must poll it for the cache to stay current.
pub(in crate::reconcile) type CacheStream =
    std::pin::Pin<Box<dyn Stream<Item = Result<DynamicObject, watcher::Error>> + Send>>;

impl KindCache {
    /// A cache of `resource` objects and the stream that fills it. With
    /// `all`, every object of the kind is cached (the plugin reads the kind);
    /// without, only `plugin`'s children.
    pub(in crate::reconcile) fn watch(
        client: &Client,
        resource: &ApiResource,
        namespaced: bool,
        plugin: &str,
        all: bool,
    ) -> (Self, CacheStream) {
        let writer = reflector::store::Writer::new(resource.clone());
        let cache = Self {
            resource: resource.clone(),
            namespaced,
            plugin: plugin.into(),
            store: writer.as_reader(),
            synced: Arc::new(watch::Sender::new(false)),
            index: Arc::default(),
            written: WrittenObjects::default(),
        };
        let mut config = watcher::Config::default();
        if !all {
            config = config.labels(&format!("{PLUGIN_LABEL}={plugin}"));
        }
        let observer = cache.clone();
        let api = Api::<DynamicObject>::all_with(client.clone(), resource);
        let stream = reflector::reflector(writer, watcher(api, config).modify(slim))
            .default_backoff()
            .inspect_ok(move |event| observer.observe(event))
            .touched_objects()
            .boxed();
        (cache, stream)
    }

    fn kind(&self) -> String {
        format!("{}/{}", self.resource.api_version, self.resource.kind)
    }

    /// What this cache waits for (`apiVersion/kind`) and a receiver that
    /// turns true once its first list is in, for reporting slow syncs.
    pub(in crate::reconcile) fn sync_progress(&self) -> (String, watch::Receiver<bool>) {
        (self.kind(), self.synced.subscribe())
    }

    fn observe(&self, event: &watcher::Event<DynamicObject>) {
        self.written.observe(event);
        self.index
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .observe(event);
        if matches!(event, watcher::Event::InitDone) {
            self.synced.send_replace(true);
        }
    }

    /// Waits for the first list: until then the cache would report objects
    /// missing that exist.
    pub(in crate::reconcile) async fn synced(&self) -> Result<(), NotSynced> {
        if *self.synced.borrow() {
            return Ok(());
        }
        let mut synced = self.synced.subscribe();
        tokio::time::timeout(SYNC_TIMEOUT, synced.wait_for(|synced| *synced))
            .await
            .ok()
            .and_then(Result::ok)
            .map(drop)
            .ok_or_else(|| NotSynced { kind: self.kind() })
    }

    fn key(&self, (namespace, name): &Name) -> ObjectRef<DynamicObject> {
        let key = ObjectRef::new_with(name, self.resource.clone());
        match namespace {
            Some(namespace) if self.namespaced => key.within(namespace),
            _ => key,
        }
    }

    /// This plugin's children of the owner with `uid`, as this controller
    /// last left them.
    pub(in crate::reconcile) fn children_of(&self, uid: &str) -> Vec<Arc<DynamicObject>> {
        let names: Vec<Name> = self
            .index
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .current
            .get(uid)
            .map(|names| names.iter().cloned().collect())
            .unwrap_or_default();
        let owned = |object: &DynamicObject| {
            let labels = object.labels();
            labels.get(OWNER_UID_LABEL).is_some_and(|o| o == uid)
                && labels
                    .get(PLUGIN_LABEL)
                    .is_some_and(|p| **p == *self.plugin)
        };
        let mut children: Vec<Arc<DynamicObject>> = names
            .iter()
            .filter_map(|name| self.store.get(&self.key(name)))
            .filter(|object| owned(object))
            .filter_map(|object| self.written.overlay(object))
            .collect();
        let cached = |object: &DynamicObject| self.store.get(&self.key(&name_of(object))).is_some();
        children.extend(self.written.created(owned, cached));
        children
    }

    /// Records a child as the apply that wrote it returned.
    pub(in crate::reconcile) fn applied(
        &self,
        before: Option<&DynamicObject>,
        written: DynamicObject,
    ) {
        self.written.record(before, written);
    }

    /// Records a child as deleted.
    pub(in crate::reconcile) fn deleted(&self, child: &DynamicObject) {
        self.written.record_deleted(child);
    }

    /// The cached object `namespace/name`.
    pub(in crate::reconcile) fn get(
        &self,
        namespace: Option<&str>,
        name: &str,
    ) -> Option<Arc<DynamicObject>> {
        self.store
            .get(&self.key(&(namespace.map(str::to_owned), name.to_owned())))
    }

    /// The cached objects (in `namespace`, when given) that `selector`
    /// selects, in the order the API lists them.
    pub(in crate::reconcile) fn list(
        &self,
        namespace: Option<&str>,
        selector: &str,
    ) -> Result<Vec<Arc<DynamicObject>>, SelectorError> {
        let selector = LabelSelector::parse(selector)?;
        let in_namespace = |object: &DynamicObject| {
            !self.namespaced
                || namespace.is_none_or(|ns| object.metadata.namespace.as_deref() == Some(ns))
        };
        let mut found = self
            .store
            .state_filter(|object| in_namespace(object) && selector.matches(&labels_of(object)));
        found.sort_by_key(|object| name_of(object));
        Ok(found)
    }
}

/// Children by the uid of their owner (label [`OWNER_UID_LABEL`]), rebuilt
/// alongside the store on every relist.
#[derive(Default)]
struct OwnerIndex {
    current: Children,
    relisting: Option<Children>,
}

type Children = HashMap<String, HashSet<Name>>;

fn owner_of(object: &DynamicObject) -> Option<&String> {
    object.metadata.labels.as_ref()?.get(OWNER_UID_LABEL)
}

fn insert(index: &mut Children, object: &DynamicObject) {
    if let Some(owner) = owner_of(object) {
        index
            .entry(owner.clone())
            .or_default()
            .insert(name_of(object));
    }
}

impl OwnerIndex {
    fn observe(&mut self, event: &watcher::Event<DynamicObject>) {
        match event {
            watcher::Event::Init => self.relisting = Some(HashMap::new()),
            watcher::Event::InitApply(object) => {
                insert(self.relisting.get_or_insert_with(HashMap::new), object);
            }
            watcher::Event::InitDone => {
                if let Some(index) = self.relisting.take() {
                    self.current = index;
                }
            }
            watcher::Event::Apply(object) => insert(&mut self.current, object),
            watcher::Event::Delete(object) => {
                if let Some(owner) = owner_of(object)
                    && let Some(children) = self.current.get_mut(owner)
                {
                    children.remove(&name_of(object));
                    if children.is_empty() {
                        self.current.remove(owner);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::api::ObjectMeta;
    use kube::core::GroupVersionKind;
    use reflector::store::Writer;

    fn config_map(name: &str, namespace: &str, labels: &[(&str, &str)]) -> DynamicObject {
        DynamicObject {
            types: None,
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some(namespace.into()),
                uid: Some(format!("uid-{name}")),
                resource_version: Some("1".into()),
                labels: Some(
                    labels
                        .iter()
                        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                        .collect(),
                ),
                ..ObjectMeta::default()
            },
            data: serde_json::json!({"data": {"k": name}}),
        }
    }

    fn child(name: &str, owner: &str, plugin: &str) -> DynamicObject {
        config_map(
            name,
            "ns",
            &[(OWNER_UID_LABEL, owner), (PLUGIN_LABEL, plugin)],
        )
    }

    /// A cache of ConfigMaps for plugin `p`, fed by hand.
    fn cache() -> (KindCache, Writer<DynamicObject>) {
        let resource = ApiResource::from_gvk(&GroupVersionKind::gvk("", "v1", "ConfigMap"));
        let writer = Writer::new(resource.clone());
        let cache = KindCache {
            resource,
            namespaced: true,
            plugin: "p".into(),
            store: writer.as_reader(),
            synced: Arc::new(watch::Sender::new(false)),
            index: Arc::default(),
            written: WrittenObjects::default(),
        };
        (cache, writer)
    }

    fn feed(
        cache: &KindCache,
        writer: &mut Writer<DynamicObject>,
        events: Vec<watcher::Event<DynamicObject>>,
    ) {
        for event in events {
            writer.apply_watcher_event(&event);
            cache.observe(&event);
        }
    }

    /// Feeds a whole list, as a watch's first list or a relist brings it.
    fn relist(cache: &KindCache, writer: &mut Writer<DynamicObject>, objects: Vec<DynamicObject>) {
        let events = std::iter::once(watcher::Event::Init)
            .chain(objects.into_iter().map(watcher::Event::InitApply))
            .chain(std::iter::once(watcher::Event::InitDone))
            .collect();
        feed(cache, writer, events);
    }

    fn names(objects: &[Arc<DynamicObject>]) -> Vec<String> {
        let mut names: Vec<String> = objects.iter().map(|o| o.name_any()).collect();
        names.sort();
        names
    }

    #[test]
    fn children_are_found_by_owner_and_plugin_and_follow_watch_events() {
        let (cache, mut writer) = cache();
        relist(
            &cache,
            &mut writer,
            vec![
                child("a", "owner-1", "p"),
                child("b", "owner-1", "p"),
                child("c", "owner-2", "p"),
                child("other", "owner-1", "another-plugin"),
                config_map("plain", "ns", &[]),
            ],
        );
        assert_eq!(names(&cache.children_of("owner-1")), ["a", "b"]);
        assert_eq!(names(&cache.children_of("owner-2")), ["c"]);
        feed(
            &cache,
            &mut writer,
            vec![
                watcher::Event::Delete(child("a", "owner-1", "p")),
                watcher::Event::Apply(child("d", "owner-2", "p")),
            ],
        );
        assert_eq!(names(&cache.children_of("owner-1")), ["b"]);
        assert_eq!(names(&cache.children_of("owner-2")), ["c", "d"]);
        // A relist replaces the index as it replaces the store.
        relist(&cache, &mut writer, vec![child("d", "owner-2", "p")]);
        assert!(cache.children_of("owner-1").is_empty());
        assert_eq!(names(&cache.children_of("owner-2")), ["d"]);
    }

    #[tokio::test]
    async fn the_cache_is_synced_only_once_its_index_has_the_first_list() {
        use futures::FutureExt;
        let (cache, mut writer) = cache();
        let events = [
            watcher::Event::Init,
            watcher::Event::InitApply(child("a", "owner", "p")),
            watcher::Event::InitDone,
        ];
        for event in &events {
            writer.apply_watcher_event(event);
        }
        // The store is ready; the index has not seen the list yet.
        assert!(cache.store.wait_until_ready().now_or_never().is_some());
        assert!(cache.synced().now_or_never().is_none(), "not synced yet");
        for event in &events {
            cache.observe(event);
        }
        assert!(matches!(cache.synced().now_or_never(), Some(Ok(()))));
        assert_eq!(names(&cache.children_of("owner")), ["a"]);
    }

    #[test]
    fn children_include_what_this_controller_applied_and_not_what_it_deleted() {
        let (cache, mut writer) = cache();
        relist(
            &cache,
            &mut writer,
            vec![child("kept", "owner", "p"), child("gone", "owner", "p")],
        );
        let mut new = child("new", "owner", "p");
        new.metadata.resource_version = Some("5".into());
        cache.applied(None, new);
        cache.deleted(&child("gone", "owner", "p"));
        assert_eq!(names(&cache.children_of("owner")), ["kept", "new"]);
    }

    #[test]
    fn reads_get_by_namespace_and_name_and_list_by_selector_in_name_order() {
        let (cache, mut writer) = cache();
        feed(
            &cache,
            &mut writer,
            vec![
                watcher::Event::Init,
                watcher::Event::InitApply(config_map("z", "ns", &[("app", "web")])),
                watcher::Event::InitApply(config_map(
                    "a",
                    "ns",
                    &[("app", "web"), ("tier", "cache")],
                )),
                watcher::Event::InitApply(config_map("m", "other", &[("app", "web")])),
                watcher::Event::InitApply(config_map("db", "ns", &[("app", "db")])),
                watcher::Event::InitDone,
            ],
        );
        assert_eq!(cache.get(Some("ns"), "z").unwrap().name_any(), "z");
        assert!(cache.get(Some("other"), "z").is_none());
        let listed = |ns, selector| {
            cache
                .list(ns, selector)
                .unwrap()
                .iter()
                .map(|o| format!("{}/{}", o.namespace().unwrap(), o.name_any()))
                .collect::<Vec<_>>()
        };
        assert_eq!(listed(Some("ns"), "app=web"), ["ns/a", "ns/z"]);
        // Across namespaces: by namespace, then name (etcd key order).
        assert_eq!(listed(None, "app=web,tier!=cache"), ["ns/z", "other/m"]);
        assert_eq!(listed(Some("ns"), ""), ["ns/a", "ns/db", "ns/z"]);
        assert!(
            cache.list(None, "app in (web").is_err(),
            "a bad selector is an error"
        );
    }
}
