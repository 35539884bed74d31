//! In-memory object storage: one ordered map per group resource, a global resourceVersion,
//! a bounded event history per collection and the open watches, all behind one lock.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use serde_json::Value;
use tokio::sync::mpsc;

use crate::meta;
use crate::registry::{GroupResource, Registry};

/// `(namespace, name)`; the namespace is empty for cluster-scoped objects.
pub type ObjKey = (String, String);

/// Kind of a watch event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    /// Object created.
    Added,
    /// Object changed.
    Modified,
    /// Object removed.
    Deleted,
}

impl EventType {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Added => "ADDED",
            Self::Modified => "MODIFIED",
            Self::Deleted => "DELETED",
        }
    }
}

/// One change of one object.
#[derive(Debug)]
pub struct Event {
    /// What happened.
    pub kind: EventType,
    /// resourceVersion of the change.
    pub rv: u64,
    /// Object after the change (the last state for deletions).
    pub object: Value,
    /// Labels before the change, so label-selected watches can see objects leave.
    pub prev_labels: Option<Value>,
}

/// Watch events about to be sent plus the live subscription.
pub type Subscription = (Vec<Arc<Event>>, mpsc::UnboundedReceiver<Arc<Event>>);

#[derive(Default)]
struct Collection {
    objects: BTreeMap<ObjKey, Value>,
    history: VecDeque<Arc<Event>>,
    /// Events at or before this resourceVersion are forgotten.
    compacted_rv: u64,
    watchers: Vec<mpsc::UnboundedSender<Arc<Event>>>,
}

/// Everything the server stores.
pub struct State {
    rv: u64,
    /// Served resource types.
    pub registry: Registry,
    collections: HashMap<GroupResource, Collection>,
    /// owner uid → dependents.
    dependents: HashMap<String, BTreeSet<(GroupResource, ObjKey)>>,
    uids: HashMap<String, (GroupResource, ObjKey)>,
    history_limit: usize,
}

/// The lock around [`State`].
pub struct Store {
    state: Mutex<State>,
}

impl Store {
    /// An empty store serving the built-in kinds.
    pub fn new(history_limit: usize) -> Self {
        let state = State {
            rv: 1,
            registry: Registry::with_builtins(),
            collections: HashMap::new(),
            dependents: HashMap::new(),
            uids: HashMap::new(),
            history_limit,
        };
        Self {
            state: Mutex::new(state),
        }
    }

    /// Locks the state; every read-modify-write happens under this one lock.
    pub fn lock(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl State {
    /// The current global resourceVersion.
    pub fn resource_version(&self) -> u64 {
        self.rv
    }

    /// One object.
    pub fn get(&self, gr: &GroupResource, key: &ObjKey) -> Option<&Value> {
        self.collections.get(gr)?.objects.get(key)
    }

    /// Objects of a collection, in one namespace or all.
    pub fn list<'a>(
        &'a self,
        gr: &GroupResource,
        namespace: Option<&'a str>,
    ) -> Box<dyn Iterator<Item = &'a Value> + 'a> {
        let Some(collection) = self.collections.get(gr) else {
            return Box::new(std::iter::empty());
        };
        match namespace {
            Some(ns) => Box::new(
                collection
                    .objects
                    .range((ns.to_string(), String::new())..)
                    .take_while(move |((n, _), _)| n == ns)
                    .map(|(_, v)| v),
            ),
            None => Box::new(collection.objects.values()),
        }
    }

    /// Where an object with this uid lives, if it exists.
    pub fn locate_uid(&self, uid: &str) -> Option<(GroupResource, ObjKey)> {
        self.uids.get(uid).cloned()
    }

    /// Objects whose ownerReferences name this uid.
    pub fn dependents_of(&self, uid: &str) -> Vec<(GroupResource, ObjKey)> {
        self.dependents
            .get(uid)
            .map(|s| s.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// Group resources that currently hold objects.
    pub fn collections(&self) -> Vec<GroupResource> {
        self.collections
            .iter()
            .filter(|(_, c)| !c.objects.is_empty())
            .map(|(gr, _)| gr.clone())
            .collect()
    }

    /// Stores an object with a new resourceVersion and tells the watchers. Returns it.
    pub fn put(&mut self, gr: &GroupResource, mut object: Value) -> Value {
        self.rv += 1;
        let rv = self.rv;
        meta::set_resource_version(&mut object, rv);
        let key = meta::key(&object);
        let previous = self
            .collections
            .entry(gr.clone())
            .or_default()
            .objects
            .insert(key.clone(), object.clone());
        if let Some(previous) = &previous {
            self.unindex(previous);
        }
        self.index(gr, &key, &object);
        let kind = if previous.is_some() {
            EventType::Modified
        } else {
            EventType::Added
        };
        let prev_labels = previous.as_ref().map(meta::labels);
        self.emit(
            gr,
            Event {
                kind,
                rv,
                object: object.clone(),
                prev_labels,
            },
        );
        object
    }

    /// Removes an object, emitting DELETED with a new resourceVersion. Returns its last state.
    pub fn remove(&mut self, gr: &GroupResource, key: &ObjKey) -> Option<Value> {
        let mut object = self.collections.get_mut(gr)?.objects.remove(key)?;
        self.unindex(&object);
        self.rv += 1;
        meta::set_resource_version(&mut object, self.rv);
        let prev_labels = Some(meta::labels(&object));
        self.emit(
            gr,
            Event {
                kind: EventType::Deleted,
                rv: self.rv,
                object: object.clone(),
                prev_labels,
            },
        );
        Some(object)
    }

    /// Drops a whole collection (its CRD went away), telling watchers of each deletion.
    pub fn drop_collection(&mut self, gr: &GroupResource) {
        let keys: Vec<ObjKey> = self
            .collections
            .get(gr)
            .map(|c| c.objects.keys().cloned().collect())
            .unwrap_or_default();
        for key in keys {
            self.remove(gr, &key);
        }
    }

    fn index(&mut self, gr: &GroupResource, key: &ObjKey, object: &Value) {
        self.uids
            .insert(meta::uid(object).to_string(), (gr.clone(), key.clone()));
        for owner in meta::owner_uids(object) {
            self.dependents
                .entry(owner)
                .or_default()
                .insert((gr.clone(), key.clone()));
        }
    }

    fn unindex(&mut self, object: &Value) {
        let uid = meta::uid(object).to_string();
        let Some(place) = self.uids.remove(&uid) else {
            return;
        };
        for owner in meta::owner_uids(object) {
            if let Some(set) = self.dependents.get_mut(&owner) {
                set.remove(&place);
                if set.is_empty() {
                    self.dependents.remove(&owner);
                }
            }
        }
    }

    fn emit(&mut self, gr: &GroupResource, event: Event) {
        let limit = self.history_limit;
        let collection = self.collections.entry(gr.clone()).or_default();
        let event = Arc::new(event);
        collection
            .watchers
            .retain(|tx| tx.send(event.clone()).is_ok());
        collection.history.push_back(event);
        while collection.history.len() > limit {
            if let Some(old) = collection.history.pop_front() {
                collection.compacted_rv = old.rv;
            }
        }
    }

    /// Starts a watch. `since = None` synthesizes ADDED events for the current objects;
    /// `Some(rv)` replays the kept history after `rv`, or fails with `Err(rv)` when that
    /// history has been compacted away (410 Expired).
    pub fn subscribe(
        &mut self,
        gr: &GroupResource,
        since: Option<u64>,
    ) -> Result<Subscription, u64> {
        let current_rv = self.rv;
        let collection = self.collections.entry(gr.clone()).or_default();
        let initial = match since {
            None => collection
                .objects
                .values()
                .map(|o| {
                    Arc::new(Event {
                        kind: EventType::Added,
                        rv: meta::resource_version(o),
                        object: o.clone(),
                        prev_labels: None,
                    })
                })
                .collect(),
            Some(rv) if rv < collection.compacted_rv || rv > current_rv => return Err(rv),
            Some(rv) => collection
                .history
                .iter()
                .filter(|e| e.rv > rv)
                .cloned()
                .collect(),
        };
        let (tx, rx) = mpsc::unbounded_channel();
        collection.watchers.push(tx);
        Ok((initial, rx))
    }

    /// Forgets all watch history: any watch resuming from an older resourceVersion gets 410.
    pub fn compact(&mut self) {
        let rv = self.rv;
        for collection in self.collections.values_mut() {
            collection.history.clear();
            collection.compacted_rv = rv;
        }
    }

    /// Closes every open watch stream.
    pub fn drop_watchers(&mut self) {
        for collection in self.collections.values_mut() {
            collection.watchers.clear();
        }
    }
}
