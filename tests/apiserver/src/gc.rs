//! Deletion under the store lock: finalizers and `deletionTimestamp`, background garbage
//! collection through owner references, namespace and CRD cleanup.

use serde_json::{Value, json};

use crate::meta;
use crate::registry::{GroupResource, Registry};
use crate::store::{ObjKey, State};

/// What deleting dependents does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Propagation {
    /// Dependents are garbage-collected (Background and Foreground alike here).
    Background,
    /// Dependents lose their owner reference and stay.
    Orphan,
}

/// The result of a delete.
#[derive(Debug)]
pub enum Deleted {
    /// Finalizers remain: the object now carries `deletionTimestamp`.
    Pending(Value),
    /// The object is gone; its last state.
    Removed(Value),
}

fn namespaces() -> GroupResource {
    GroupResource {
        group: String::new(),
        resource: "namespaces".into(),
    }
}

fn crds() -> GroupResource {
    GroupResource {
        group: "apiextensions.k8s.io".into(),
        resource: "customresourcedefinitions".into(),
    }
}

/// Deletes an object: marks it when finalizers remain, otherwise removes it and collects
/// its dependents. Returns `None` when it does not exist.
pub fn delete(
    state: &mut State,
    gr: &GroupResource,
    key: &ObjKey,
    propagation: Propagation,
) -> Option<Deleted> {
    let object = state.get(gr, key)?.clone();
    let is_namespace = *gr == namespaces();
    if meta::finalizers(&object).is_empty() && !is_namespace {
        return remove(state, gr, key, propagation).map(Deleted::Removed);
    }
    if meta::is_deleting(&object) {
        return Some(Deleted::Pending(object));
    }
    let mut marked = object;
    let generation = meta::generation(&marked) + 1;
    let m = meta::metadata_mut(&mut marked);
    m.insert("deletionTimestamp".into(), json!(meta::now()));
    m.insert("deletionGracePeriodSeconds".into(), json!(0));
    m.insert("generation".into(), json!(generation));
    if is_namespace {
        marked["status"] = json!({ "phase": "Terminating" });
    }
    let marked = state.put(gr, marked);
    if is_namespace {
        empty_namespace(state, &key.1);
        if state.get(gr, key).is_none() {
            return Some(Deleted::Removed(marked));
        }
        return state.get(gr, key).cloned().map(Deleted::Pending);
    }
    Some(Deleted::Pending(marked))
}

/// Removes an object for good (its last finalizer is gone), then cleans up after it.
pub fn remove(
    state: &mut State,
    gr: &GroupResource,
    key: &ObjKey,
    propagation: Propagation,
) -> Option<Value> {
    let object = state.remove(gr, key)?;
    let uid = meta::uid(&object).to_string();
    for (dgr, dkey) in state.dependents_of(&uid) {
        collect_dependent(state, &dgr, &dkey, &uid, propagation);
    }
    if *gr == crds()
        && let Some(removed) = Registry::crd_group_resource(&object)
    {
        state.registry.unregister(&removed.group, &removed.resource);
        state.drop_collection(&removed);
    }
    let ns = &key.0;
    if !ns.is_empty() {
        let ns_key = (String::new(), ns.clone());
        if state
            .get(&namespaces(), &ns_key)
            .is_some_and(meta::is_deleting)
            && namespace_is_empty(state, ns)
        {
            state.remove(&namespaces(), &ns_key);
        }
    }
    Some(object)
}

fn collect_dependent(
    state: &mut State,
    gr: &GroupResource,
    key: &ObjKey,
    owner_uid: &str,
    propagation: Propagation,
) {
    let Some(dependent) = state.get(gr, key).cloned() else {
        return;
    };
    let live_owners = meta::owner_uids(&dependent)
        .into_iter()
        .filter(|u| u != owner_uid && state.locate_uid(u).is_some())
        .count();
    if propagation == Propagation::Orphan || live_owners > 0 {
        let mut updated = dependent;
        if let Some(refs) = updated
            .pointer_mut("/metadata/ownerReferences")
            .and_then(Value::as_array_mut)
        {
            refs.retain(|r| r.get("uid").and_then(Value::as_str) != Some(owner_uid));
        }
        state.put(gr, updated);
    } else {
        delete(state, gr, key, Propagation::Background);
    }
}

fn namespaced_collections(state: &State) -> Vec<GroupResource> {
    state
        .collections()
        .into_iter()
        .filter(|gr| {
            state
                .registry
                .any_version(gr)
                .is_some_and(|rt| rt.namespaced)
        })
        .collect()
}

fn namespace_is_empty(state: &State, ns: &str) -> bool {
    namespaced_collections(state)
        .iter()
        .all(|gr| state.list(gr, Some(ns)).next().is_none())
}

fn empty_namespace(state: &mut State, ns: &str) {
    for gr in namespaced_collections(state) {
        let keys: Vec<ObjKey> = state.list(&gr, Some(ns)).map(meta::key).collect();
        for key in keys {
            delete(state, &gr, &key, Propagation::Background);
        }
    }
    if namespace_is_empty(state, ns) {
        state.remove(&namespaces(), &(String::new(), ns.to_string()));
    }
}
