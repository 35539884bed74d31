//! Gather: everything a plugin decides on, from the watch caches: the
//! object, its children of the declared kinds, and the servers it may use
//! for the object. No API call is made.

use std::collections::BTreeSet;
use std::sync::Arc;

use kube::ResourceExt;
use kube::api::DynamicObject;
use serde_json::Value;

use super::context::Context;
use super::error::ReconcileError;
use crate::grants::Grants;
use crate::runtime::ReconcileInput;
use crate::vocabulary::ServerKey;

/// A child that exists, with the position of its kind in the context's
/// child kinds.
pub(super) struct ExistingChild {
    /// Index into [`Context::children`].
    pub(super) kind: usize,
    /// The child as the cache (with this controller's writes) has it.
    pub(super) object: Arc<DynamicObject>,
}

/// What one reconcile works on.
pub(super) struct Gathered {
    /// The object.
    pub(super) object: Arc<DynamicObject>,
    /// Its existing children.
    pub(super) children: Vec<ExistingChild>,
    /// The plugin's grants for this object (servers narrowed to those that
    /// consent to its namespace); shared with the sandboxed call.
    pub(super) grants: Arc<Grants>,
    /// The request handed to the plugin.
    pub(super) input: ReconcileInput,
    /// The plugin's name, for errors.
    pub(super) plugin: String,
}

/// Gathers the inputs of a reconcile or finalize of `object`.
///
/// # Errors
/// [`ReconcileError::Cache`] when a cache the plugin reads from has not
/// synced: a reconcile before the first list would take existing objects
/// for missing ones.
pub(super) async fn gather(
    ctx: &Context,
    object: Arc<DynamicObject>,
) -> Result<Gathered, ReconcileError> {
    let children = existing_children(ctx, &object).await?;
    ctx.reads.synced().await?;
    let servers = servers_for(ctx, &object);
    let input = ReconcileInput {
        object: serde_json::to_value(&*object).unwrap_or(Value::Null),
        children: children
            .iter()
            .map(|c| serde_json::to_value(&*c.object).unwrap_or(Value::Null))
            .collect(),
        settings: ctx.plugin.settings.clone(),
        servers: servers.iter().cloned().collect(),
    };
    Ok(Gathered {
        grants: Arc::new(ctx.plugin.grants.for_object(&servers)),
        object,
        children,
        input,
        plugin: ctx.plugin_name().to_owned(),
    })
}

/// The children of `object`, from the caches (with this controller's own
/// writes).
async fn existing_children(
    ctx: &Context,
    object: &DynamicObject,
) -> Result<Vec<ExistingChild>, ReconcileError> {
    let uid = object.uid().unwrap_or_default();
    let mut found = Vec::new();
    for (kind, child) in ctx.children.iter().enumerate() {
        child.cache.synced().await?;
        found.extend(
            child
                .cache
                .children_of(&uid)
                .into_iter()
                .map(|object| ExistingChild { kind, object }),
        );
    }
    Ok(found)
}

/// The servers the plugin may use for `object`: granted to the binding and
/// consenting to the object's namespace.
fn servers_for(ctx: &Context, object: &DynamicObject) -> BTreeSet<ServerKey> {
    if !ctx.plugin.grants.uses_servers() {
        return BTreeSet::new();
    }
    ctx.servers
        .usable_by(&ctx.plugin.grants, object.namespace().as_deref())
}
