//! Execute: a checked decision carried out, in order: its SQL plans, then
//! its children (server-side applied where they differ from what exists),
//! then the pruning of children no longer desired.

use std::collections::BTreeSet;

use kube::ResourceExt;
use kube::api::{DeleteParams, Patch, PatchParams};
use serde_json::{Value, json};

use super::check::is_child_of;
use super::context::Context;
use super::error::{ReconcileError, kube_error};
use super::gather::{ExistingChild, Gathered};
use crate::metrics::WriteVerb;
use crate::runtime::{DesiredChild, SqlPlan};
use crate::vocabulary::{OWNER_UID_LABEL, ObjectKind, PLUGIN_LABEL};

/// Runs a decision's SQL plans in order, stopping at the first failure
/// (then nothing else of the decision is applied).
///
/// # Errors
/// [`ReconcileError::Sql`] for the plan that failed.
pub(super) async fn sql(ctx: &Context, plans: &[SqlPlan]) -> Result<(), ReconcileError> {
    for plan in plans.iter().filter(|p| !p.statements.is_empty()) {
        let started = std::time::Instant::now();
        let report = ctx
            .servers
            .run_plan(plan)
            .await
            .map_err(ReconcileError::Sql)?;
        tracing::info!(
            server = %plan.server,
            database = plan.database.as_deref().unwrap_or("(maintenance)"),
            statements = report.executed,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "ran SQL plan"
        );
    }
    Ok(())
}

/// Applies the desired children that differ from what exists, and deletes
/// existing children that are no longer desired.
///
/// # Errors
/// [`ReconcileError::Kube`] for the first write that failed.
pub(super) async fn children(
    ctx: &Context,
    gathered: &Gathered,
    desired: &[DesiredChild],
) -> Result<(), ReconcileError> {
    let owner = &gathered.object;
    let manager = ctx.plugin.field_manager();
    let owner_reference = json!({
        "apiVersion": ctx.target.resource.api_version,
        "kind": ctx.target.resource.kind,
        "name": owner.name_any(),
        "uid": owner.uid().unwrap_or_default(),
        "controller": true,
        "blockOwnerDeletion": true,
    });
    let mut wanted: BTreeSet<(ObjectKind, String)> = BTreeSet::new();
    for child in desired {
        let mut child = child.clone();
        // The check refused ungranted kinds: every child has its kind here.
        let Some(index) = ctx
            .children
            .iter()
            .position(|c| c.served.kind == child.kind)
        else {
            continue;
        };
        let child_kind = &ctx.children[index];
        let metadata = child.metadata_mut();
        if child_kind.served.namespaced {
            metadata.insert("namespace".into(), json!(owner.namespace()));
        }
        let labels = metadata.entry("labels").or_insert_with(|| json!({}));
        labels[PLUGIN_LABEL] = json!(ctx.plugin_name());
        labels[OWNER_UID_LABEL] = json!(owner.uid());
        metadata.insert("ownerReferences".into(), json!([owner_reference]));
        let current = existing(&gathered.children, index, &child.name);
        wanted.insert((child.kind.clone(), child.name.clone()));
        let (kind, name) = (child.kind, child.name);
        let object = Value::Object(child.object);
        if let Some(current) = current
            && is_subset(
                &object,
                &serde_json::to_value(&*current.object).unwrap_or_default(),
            )
        {
            continue;
        }
        let written = child_kind
            .served
            .api(&ctx.client, owner.namespace().as_deref())
            .patch(
                &name,
                &PatchParams::apply(&manager).force(),
                &Patch::Apply(&object),
            )
            .await
            .map_err(kube_error("applying a child"))?;
        child_kind
            .cache
            .applied(current.map(|c| &*c.object), written);
        ctx.metrics.record_write(&ctx.labels, WriteVerb::Apply);
        tracing::info!(kind = %kind, child = %name, "applied child");
    }
    prune(
        ctx,
        &gathered.children,
        &wanted,
        &owner.uid().unwrap_or_default(),
    )
    .await
}

/// The existing child of the kind at `index` named `name`.
fn existing<'a>(
    children: &'a [ExistingChild],
    index: usize,
    name: &str,
) -> Option<&'a ExistingChild> {
    children
        .iter()
        .find(|c| c.kind == index && c.object.name_any() == name)
}

/// Deletes the existing children not in `wanted`.
async fn prune(
    ctx: &Context,
    existing: &[ExistingChild],
    wanted: &BTreeSet<(ObjectKind, String)>,
    owner: &str,
) -> Result<(), ReconcileError> {
    for child in existing {
        let child_kind = &ctx.children[child.kind];
        let kind = &child_kind.served.kind;
        let name = child.object.name_any();
        if wanted.contains(&(kind.clone(), name.clone())) {
            continue;
        }
        if !is_child_of(&child.object, owner) {
            // Labelled like a child but not owned: not the host's to delete.
            tracing::warn!(kind = %kind, object = %name, "not pruning an object labelled as a child without an owner reference to its owner");
            continue;
        }
        match child_kind
            .served
            .api(&ctx.client, child.object.namespace().as_deref())
            .delete(&name, &DeleteParams::background())
            .await
        {
            Ok(_) => {}
            // Gone already (deleted by hand, or garbage-collected).
            Err(kube::Error::Api(status)) if status.code == 404 => {}
            Err(error) => return Err(kube_error("deleting a child")(error)),
        }
        child_kind.cache.deleted(&child.object);
        ctx.metrics.record_write(&ctx.labels, WriteVerb::Delete);
        tracing::info!(kind = %kind, child = %name, "deleted child no longer desired");
    }
    Ok(())
}

/// Whether every field of `desired` has the same value in `actual`.
fn is_subset(desired: &Value, actual: &Value) -> bool {
    match (desired, actual) {
        (Value::Object(d), Value::Object(a)) => d.iter().all(|(k, v)| {
            a.get(k).is_some_and(|av| is_subset(v, av)) || (v.is_null() && !a.contains_key(k))
        }),
        (Value::Array(d), Value::Array(a)) => {
            d.len() == a.len() && d.iter().zip(a).all(|(d, a)| is_subset(d, a))
        }
        _ => desired == actual,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_child_that_already_has_every_desired_field_needs_no_write() {
        let desired = json!({"metadata": {"name": "a", "labels": {"x": "1"}}, "data": {"k": "v"}});
        let actual = json!({"metadata": {"name": "a", "uid": "u", "labels": {"x": "1", "y": "2"}}, "data": {"k": "v"}});
        assert!(is_subset(&desired, &actual));
        let changed = json!({"metadata": {"name": "a"}, "data": {"k": "w"}});
        assert!(!is_subset(&changed, &actual));
    }
}
