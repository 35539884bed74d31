//! Check: a decision is held against the plugin's grants for the object,
//! and its children against what exists, before anything of it is carried
//! out; a refused decision changes nothing.

use kube::ResourceExt;
use kube::api::DynamicObject;

use super::context::Context;
use super::error::{ReconcileError, kube_error};
use super::gather::Gathered;
use crate::grants::Refusal;
use crate::runtime::{Decision, FinalizeDecision};
use crate::vocabulary::OWNER_UID_LABEL;

/// Checks a reconcile decision: the kinds and namespaces of its children,
/// and the servers of its SQL plans.
///
/// # Errors
/// [`ReconcileError::Refused`] naming the first thing outside the grants.
pub(super) fn reconcile(gathered: &Gathered, decision: &Decision) -> Result<(), ReconcileError> {
    let grants = &gathered.grants;
    grants
        .check_children(
            gathered.object.metadata.namespace.as_deref(),
            decision
                .children
                .iter()
                .map(|child| (&child.kind, child.namespace.as_deref())),
        )
        .and_then(|()| grants.check_plans(decision.sql.iter().map(|plan| &plan.server)))
        .map_err(|source| ReconcileError::Refused {
            plugin: gathered.plugin.clone(),
            source,
        })
}

/// Checks that every desired child is free to apply: either this owner's
/// child already, or a name nothing of that kind uses yet. Only children
/// the caches do not show as this owner's cost a read (a child about to be
/// created), so a converged object costs none.
///
/// # Errors
/// [`ReconcileError::Refused`] with [`Refusal::ChildConflict`] naming the
/// first object in the way; [`ReconcileError::Kube`] when the read fails.
pub(super) async fn ownership(
    ctx: &Context,
    gathered: &Gathered,
    decision: &Decision,
) -> Result<(), ReconcileError> {
    let owner = gathered.object.uid().unwrap_or_default();
    for (index, child) in decision.children.iter().enumerate() {
        // The grants check came first: every child's kind is a child kind.
        let Some(kind) = ctx
            .children
            .iter()
            .position(|c| c.served.kind == child.kind)
        else {
            continue;
        };
        let cached = gathered
            .children
            .iter()
            .find(|c| c.kind == kind && c.object.name_any() == child.name);
        let in_the_way = match cached {
            Some(existing) => {
                (!is_child_of(&existing.object, &owner)).then(|| existing.object.as_ref().clone())
            }
            None => ctx.children[kind]
                .served
                .api(&ctx.client, gathered.object.namespace().as_deref())
                .get_opt(&child.name)
                .await
                .map_err(kube_error("checking that a child's name is free"))?
                .filter(|found| !is_child_of(found, &owner)),
        };
        if let Some(found) = in_the_way {
            return Err(ReconcileError::Refused {
                plugin: gathered.plugin.clone(),
                source: Refusal::ChildConflict {
                    index,
                    kind: child.kind.to_string(),
                    object: match found.namespace() {
                        Some(namespace) => format!("{namespace}/{}", found.name_any()),
                        None => found.name_any(),
                    },
                },
            });
        }
    }
    Ok(())
}

/// Whether `object` is a child of the owner with uid `owner`: labelled with
/// it and referring to it as owner (labels alone can be copied by anyone).
pub(super) fn is_child_of(object: &DynamicObject, owner: &str) -> bool {
    object
        .labels()
        .get(OWNER_UID_LABEL)
        .is_some_and(|uid| uid == owner)
        && object.owner_references().iter().any(|r| r.uid == owner)
}

/// Checks a finalize decision: the servers of its SQL plans.
///
/// # Errors
/// [`ReconcileError::Refused`] naming the first plan outside the grants.
pub(super) fn finalize(
    gathered: &Gathered,
    decision: &FinalizeDecision,
) -> Result<(), ReconcileError> {
    gathered
        .grants
        .check_plans(decision.sql.iter().map(|plan| &plan.server))
        .map_err(|source| ReconcileError::Refused {
            plugin: gathered.plugin.clone(),
            source,
        })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::sync::Arc;

    use kube::api::{DynamicObject, ObjectMeta};
    use serde_json::{Map, json};

    use super::*;
    use crate::grants::{Grants, Refusal};
    use crate::runtime::{DesiredChild, ReconcileInput, SqlPlan};
    use crate::vocabulary::{ObjectKind, ServerKey};

    fn gathered(servers: &[&str]) -> Gathered {
        let grants = Grants {
            child_kinds: BTreeSet::from([ObjectKind::new("", "v1", "ConfigMap")]),
            ..Grants::default()
        };
        let usable = servers
            .iter()
            .map(|s| ServerKey::parse(s).unwrap())
            .collect();
        Gathered {
            object: Arc::new(DynamicObject {
                types: None,
                metadata: ObjectMeta {
                    name: Some("hello".into()),
                    namespace: Some("apps".into()),
                    ..ObjectMeta::default()
                },
                data: json!({}),
            }),
            children: Vec::new(),
            grants: Arc::new(grants.for_object(&usable)),
            input: ReconcileInput::default(),
            plugin: "greeter".into(),
        }
    }

    fn child(kind: ObjectKind, namespace: Option<&str>) -> DesiredChild {
        DesiredChild {
            kind,
            name: "c".into(),
            namespace: namespace.map(str::to_owned),
            object: Map::new(),
        }
    }

    fn plan(server: &str) -> SqlPlan {
        SqlPlan {
            server: ServerKey::parse(server).unwrap(),
            database: None,
            statements: Vec::new(),
        }
    }

    fn decision(children: Vec<DesiredChild>, sql: Vec<SqlPlan>) -> Decision {
        Decision {
            children,
            status: None,
            sql,
            events: Vec::new(),
            dropped_events: 0,
            requeue_after: None,
        }
    }

    fn refusal(result: Result<(), ReconcileError>) -> (String, Refusal) {
        match result {
            Err(ReconcileError::Refused { plugin, source }) => (plugin, source),
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    #[test]
    fn a_decision_within_the_grants_for_the_object_passes() {
        let config_map = ObjectKind::new("", "v1", "ConfigMap");
        let decision = decision(vec![child(config_map, Some("apps"))], vec![plan("db/main")]);
        assert!(reconcile(&gathered(&["db/main"]), &decision).is_ok());
    }

    #[test]
    fn a_child_of_an_ungranted_kind_is_refused_naming_the_plugin_and_the_child() {
        let secret = ObjectKind::new("", "v1", "Secret");
        let (plugin, source) = refusal(reconcile(
            &gathered(&[]),
            &decision(vec![child(secret, None)], Vec::new()),
        ));
        assert_eq!(plugin, "greeter");
        assert!(
            matches!(source, Refusal::ChildKind { index: 0, .. }),
            "{source}"
        );
    }

    #[test]
    fn a_plan_for_a_server_not_usable_for_this_object_is_refused_on_reconcile_and_finalize() {
        let (_, source) = refusal(reconcile(
            &gathered(&["db/main"]),
            &decision(Vec::new(), vec![plan("db/main"), plan("db/other")]),
        ));
        assert!(
            matches!(source, Refusal::Server { index: 1, .. }),
            "{source}"
        );
        let cleanup = FinalizeDecision {
            done: true,
            sql: vec![plan("db/other")],
            events: Vec::new(),
            dropped_events: 0,
            requeue_after: None,
        };
        let (_, source) = refusal(finalize(&gathered(&["db/main"]), &cleanup));
        assert!(
            matches!(source, Refusal::Server { index: 0, .. }),
            "{source}"
        );
    }
}
