//! Release: once an object's `finalize` is done, and before its finalizer
//! goes, the children its plugin marked with [`RETAIN_ANNOTATION`] are let
//! go, so that the garbage collector keeps them when the object is removed:
//! the credentials of a database left on the server outlive the resource
//! that created them.
//!
//! A released child loses this owner's reference (other owners' stay) and
//! the host's labels ([`OWNER_UID_LABEL`], [`PLUGIN_LABEL`]), and gets
//! [`RETAINED_FROM_ANNOTATION`] naming the owner. It is then no child of
//! anything the host manages: no cache finds it by owner, pruning skips it,
//! and a later object whose plugin wants a child of that name is refused
//! with `ChildConflict` (see `check::ownership`), never handed the old one.
//!
//! # Guarantees
//! - Only this object's own children (its owner-uid label and an owner
//!   reference to its uid) are touched.
//! - Each release is one JSON patch that first tests the child's
//!   `resourceVersion`: a child changed since the cache saw it is not
//!   overwritten; the release fails and the next attempt reads it again.
//! - A release that fails fails the cleanup, so the finalizer stays and the
//!   backoff retries; a child already released is no child any more, so a
//!   retry releases only the rest. Nothing marked is ever collected because
//!   a write failed.
//!
//! # Assumptions
//! The owner is deleted in the background (the default). With
//! `propagationPolicy: Foreground` the garbage collector deletes dependents
//! while the owner's finalizers are still pending, racing the release; with
//! `Orphan` it removes the owner references itself, and a child without one
//! is not released (it stays, without [`RETAINED_FROM_ANNOTATION`]).

use kube::ResourceExt;
use kube::api::{DynamicObject, Patch, PatchParams};
use serde_json::{Value, json};

use super::check::is_child_of;
use super::context::Context;
use super::error::{ReconcileError, kube_error};
use super::gather::Gathered;
use super::report;
use crate::runtime::{Event, EventType};
use crate::vocabulary::{
    OWNER_UID_LABEL, PLUGIN_LABEL, RETAIN_ANNOTATION, RETAINED_FROM_ANNOTATION,
};

/// Releases every child of the gathered object that is marked to be
/// retained, recording a Normal `Retained` event on the object for each.
///
/// # Errors
/// [`ReconcileError::Kube`] for the first release that failed (a conflict
/// included); the children released before it stay released.
pub(super) async fn retained(ctx: &Context, gathered: &Gathered) -> Result<(), ReconcileError> {
    let owner = &gathered.object;
    let uid = owner.uid().unwrap_or_default();
    let from = retained_from(&ctx.target.resource.kind, owner);
    for child in &gathered.children {
        let Some(operations) = release_patch(&child.object, &uid, &from) else {
            continue;
        };
        let child_kind = &ctx.children[child.kind];
        let name = child.object.name_any();
        let patch = Patch::<()>::Json(
            serde_json::from_value(operations).expect("release_patch builds JSON patch operations"),
        );
        let params = PatchParams {
            field_manager: Some(ctx.plugin.field_manager()),
            ..PatchParams::default()
        };
        let written = match child_kind
            .served
            .api(&ctx.client, child.object.namespace().as_deref())
            .patch(&name, &params, &patch)
            .await
        {
            Ok(written) => written,
            // Deleted meanwhile (by hand): nothing is left to keep.
            Err(kube::Error::Api(status)) if status.code == 404 => continue,
            Err(error) => {
                return Err(kube_error("releasing a child marked retain-on-delete")(
                    error,
                ));
            }
        };
        // Read-your-writes: a retry before the watch delivers the release
        // sees the child released, and leaves it.
        child_kind.cache.applied(Some(&child.object), written);
        let kind = &child_kind.served.kind;
        let object = match child.object.namespace() {
            Some(namespace) => format!("{namespace}/{name}"),
            None => name.clone(),
        };
        tracing::info!(kind = %kind, child = %name, "released a child retained on delete");
        let event = Event {
            type_: EventType::Normal,
            reason: "Retained".into(),
            note: format!(
                "kept {kind} {object}: it is marked {RETAIN_ANNOTATION}, so it no longer refers to this object and stays after it is gone ({RETAINED_FROM_ANNOTATION} says where it came from)"
            ),
            action: "Finalize".into(),
        };
        report::events(ctx, owner, std::slice::from_ref(&event), 0).await;
    }
    Ok(())
}

/// What [`RETAINED_FROM_ANNOTATION`] says of `owner`, of `kind`:
/// `Database default/app (uid 1234-…)`.
fn retained_from(kind: &str, owner: &DynamicObject) -> String {
    let uid = owner.uid().unwrap_or_default();
    match owner.namespace() {
        Some(namespace) => format!("{kind} {namespace}/{} (uid {uid})", owner.name_any()),
        None => format!("{kind} {} (uid {uid})", owner.name_any()),
    }
}

/// The JSON patch that releases `child` from the owner with uid `owner`,
/// recording `from`; `None` unless the child is that owner's and marked
/// with [`RETAIN_ANNOTATION`] `"true"`.
fn release_patch(child: &DynamicObject, owner: &str, from: &str) -> Option<Value> {
    let marked = child
        .annotations()
        .get(RETAIN_ANNOTATION)
        .is_some_and(|value| value == "true");
    if !marked || !is_child_of(child, owner) {
        return None;
    }
    // A write by anyone since the cache saw the child makes the patch fail
    // instead of overwriting it.
    let mut operations = vec![json!({
        "op": "test", "path": "/metadata/resourceVersion", "value": child.resource_version(),
    })];
    let others: Vec<_> = child
        .owner_references()
        .iter()
        .filter(|reference| reference.uid != owner)
        .collect();
    operations.push(if others.is_empty() {
        json!({"op": "remove", "path": "/metadata/ownerReferences"})
    } else {
        json!({"op": "replace", "path": "/metadata/ownerReferences", "value": others})
    });
    for label in [OWNER_UID_LABEL, PLUGIN_LABEL] {
        if child.labels().contains_key(label) {
            operations.push(json!({"op": "remove", "path": pointer("/metadata/labels", label)}));
        }
    }
    // The mark is an annotation: the map exists.
    operations.push(json!({
        "op": "add", "path": pointer("/metadata/annotations", RETAINED_FROM_ANNOTATION), "value": from,
    }));
    Some(Value::Array(operations))
}

/// The JSON pointer (RFC 6901) to `key` of the map at `parent`.
fn pointer(parent: &str, key: &str) -> String {
    format!("{parent}/{}", key.replace('~', "~0").replace('/', "~1"))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const OWNER: &str = "uid-app";

    fn child(annotations: Value, owners: Value) -> DynamicObject {
        serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": {
                "name": "app-credentials", "namespace": "default", "resourceVersion": "42",
                "labels": {OWNER_UID_LABEL: OWNER, PLUGIN_LABEL: "postgres-database", "team": "billing"},
                "annotations": annotations,
                "ownerReferences": owners,
            },
        }))
        .unwrap()
    }

    fn reference(uid: &str) -> Value {
        json!({"apiVersion": "v1", "kind": "Database", "name": uid, "uid": uid})
    }

    fn released(child: &DynamicObject) -> Option<Value> {
        let mut object = serde_json::to_value(child).unwrap();
        let patch = release_patch(child, OWNER, "Database default/app (uid uid-app)")?;
        // What `retained` sends, so its `expect` holds.
        let _: Patch<()> = Patch::Json(serde_json::from_value(patch.clone()).unwrap());
        json_patch_apply(&mut object, &patch);
        Some(object["metadata"].clone())
    }

    /// Applies the operations this module writes (test, add, replace,
    /// remove) as the API server would.
    fn json_patch_apply(object: &mut Value, patch: &Value) {
        for operation in patch.as_array().unwrap() {
            let path = operation["path"].as_str().unwrap();
            let (parent, key) = path.rsplit_once('/').unwrap();
            let key = key.replace("~1", "/").replace("~0", "~");
            let map = object.pointer_mut(parent).unwrap().as_object_mut().unwrap();
            match operation["op"].as_str().unwrap() {
                "test" => assert_eq!(map[&key], operation["value"], "{path}"),
                "add" | "replace" => {
                    map.insert(key, operation["value"].clone());
                }
                "remove" => {
                    map.remove(&key).unwrap();
                }
                other => panic!("unexpected operation {other}"),
            }
        }
    }

    #[test]
    fn a_marked_child_loses_its_owner_and_labels_and_says_where_it_was_retained_from() {
        let marked = child(
            json!({RETAIN_ANNOTATION: "true"}),
            json!([reference(OWNER)]),
        );
        let metadata = released(&marked).expect("released");
        assert!(metadata.get("ownerReferences").is_none(), "{metadata}");
        assert_eq!(metadata["labels"], json!({"team": "billing"}));
        assert_eq!(
            metadata["annotations"][RETAINED_FROM_ANNOTATION],
            "Database default/app (uid uid-app)"
        );
        assert_eq!(
            metadata["resourceVersion"], "42",
            "the patch tests the version"
        );
    }

    #[test]
    fn a_released_child_keeps_the_references_of_its_other_owners() {
        let shared = child(
            json!({RETAIN_ANNOTATION: "true"}),
            json!([reference("uid-other"), reference(OWNER)]),
        );
        let metadata = released(&shared).expect("released");
        assert_eq!(metadata["ownerReferences"], json!([reference("uid-other")]));
    }

    #[test]
    fn unmarked_children_and_objects_of_other_owners_are_not_released() {
        let unmarked = child(json!({"team": "billing"}), json!([reference(OWNER)]));
        assert_eq!(released(&unmarked), None);
        let not_true = child(json!({RETAIN_ANNOTATION: "yes"}), json!([reference(OWNER)]));
        assert_eq!(released(&not_true), None);
        // Labelled as this owner's child but owned by another: not ours to touch.
        let foreign = child(
            json!({RETAIN_ANNOTATION: "true"}),
            json!([reference("uid-other")]),
        );
        assert_eq!(released(&foreign), None);
    }

    #[test]
    fn retained_from_names_the_kind_the_namespace_the_name_and_the_uid() {
        let owner: DynamicObject = serde_json::from_value(json!({
            "apiVersion": "systems.mikemiller.tech/v1alpha1", "kind": "Database",
            "metadata": {"name": "app", "namespace": "default", "uid": "1234"},
        }))
        .unwrap();
        assert_eq!(
            retained_from("Database", &owner),
            "Database default/app (uid 1234)"
        );
    }
}
