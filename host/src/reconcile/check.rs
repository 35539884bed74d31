//! Check: a decision is held against the plugin's grants for the object
//! before anything of it is carried out; a refused decision changes nothing.

use super::error::ReconcileError;
use super::gather::Gathered;
use crate::runtime::{Decision, FinalizeDecision};

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
            requeue_after: None,
        };
        let (_, source) = refusal(finalize(&gathered(&["db/main"]), &cleanup));
        assert!(
            matches!(source, Refusal::Server { index: 0, .. }),
            "{source}"
        );
    }
}
