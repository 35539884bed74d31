//! What a bound plugin may do, and the check of its decisions against that.

use std::collections::BTreeSet;

use serde_json::Value;

use crate::crd::GrantsSpec;
use crate::runtime::{Decision, FinalizeDecision, Grants, ObjectKind, PluginDescription, SqlPlan};
use crate::servers::ServerPattern;

/// The grants a plugin runs under: the intersection of what it requested in
/// `describe` and what its binding allows.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EffectiveGrants {
    /// Kinds it may read.
    pub read_kinds: BTreeSet<ObjectKind>,
    /// Kinds of children it may apply and prune.
    pub child_kinds: BTreeSet<ObjectKind>,
    /// Servers it may query and plan against, when they consent to the
    /// object's namespace.
    pub servers: Vec<ServerPattern>,
}

impl EffectiveGrants {
    /// Intersects a plugin's requests with its binding's allowances.
    pub fn intersect(description: &PluginDescription, allowed: &GrantsSpec) -> Self {
        let allowed_reads: BTreeSet<ObjectKind> = allowed.read.iter().map(Into::into).collect();
        let allowed_children: BTreeSet<ObjectKind> =
            allowed.children.iter().map(Into::into).collect();
        Self {
            read_kinds: description
                .read_kinds
                .iter()
                .filter(|k| allowed_reads.contains(k))
                .cloned()
                .collect(),
            child_kinds: description
                .child_kinds
                .iter()
                .filter(|k| allowed_children.contains(k))
                .cloned()
                .collect(),
            servers: if description.wants_sql {
                allowed.servers.iter().map(ServerPattern::new).collect()
            } else {
                Vec::new()
            },
        }
    }

    /// The read grants handed to the runtime for one call about an object
    /// that may use `servers`.
    pub fn for_call(&self, servers: BTreeSet<String>) -> Grants {
        Grants {
            read_kinds: self.read_kinds.clone(),
            servers,
        }
    }
}

/// Why a decision was refused: the first thing in it outside the grants.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// A child of a kind the plugin may not write.
    #[error(
        "children[{index}] is a {kind}, which this plugin is not granted to write; allow it in spec.grants.children of the ReconcilerPlugin and declare it in describe().child-kinds"
    )]
    ChildKind {
        /// Position in the decision.
        index: usize,
        /// Its kind.
        kind: String,
    },
    /// A child in another namespace than its owner (owner references cannot cross namespaces).
    #[error(
        "children[{index}] is in namespace {namespace:?}, but children must be in their owner's namespace {owner:?}"
    )]
    ChildNamespace {
        /// Position in the decision.
        index: usize,
        /// The child's namespace.
        namespace: String,
        /// The owner's namespace.
        owner: String,
    },
    /// An SQL plan for a server the plugin may not use.
    #[error(
        "sql[{index}] targets server {server:?}, which this plugin is not granted for this object"
    )]
    Server {
        /// Position in the decision.
        index: usize,
        /// The server.
        server: String,
    },
}

/// The kind of a child object from its `apiVersion` and `kind`.
pub fn kind_of(object: &Value) -> ObjectKind {
    let api_version = object["apiVersion"].as_str().unwrap_or_default();
    let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
    ObjectKind::new(group, version, object["kind"].as_str().unwrap_or_default())
}

/// Checks a reconcile decision; nothing of a refused decision is carried out.
///
/// # Errors
/// The first [`Refusal`] found.
pub fn check_decision(
    grants: &EffectiveGrants,
    owner_namespace: Option<&str>,
    servers: &BTreeSet<String>,
    decision: &Decision,
) -> Result<(), Refusal> {
    for (index, child) in decision.children.iter().enumerate() {
        let kind = kind_of(child);
        if !grants.child_kinds.contains(&kind) {
            return Err(Refusal::ChildKind {
                index,
                kind: kind.to_string(),
            });
        }
        let namespace = child["metadata"]["namespace"].as_str();
        if let (Some(namespace), Some(owner)) = (namespace, owner_namespace)
            && namespace != owner
        {
            return Err(Refusal::ChildNamespace {
                index,
                namespace: namespace.to_owned(),
                owner: owner.to_owned(),
            });
        }
    }
    check_plans(servers, &decision.sql)
}

/// Checks a finalize decision.
///
/// # Errors
/// The first [`Refusal`] found.
pub fn check_finalize(
    servers: &BTreeSet<String>,
    decision: &FinalizeDecision,
) -> Result<(), Refusal> {
    check_plans(servers, &decision.sql)
}

fn check_plans(servers: &BTreeSet<String>, plans: &[SqlPlan]) -> Result<(), Refusal> {
    match plans
        .iter()
        .enumerate()
        .find(|(_, p)| !servers.contains(&p.server))
    {
        Some((index, plan)) => Err(Refusal::Server {
            index,
            server: plan.server.clone(),
        }),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::KindRef;

    fn description(children: &[ObjectKind], reads: &[ObjectKind], sql: bool) -> PluginDescription {
        PluginDescription {
            name: "p".into(),
            version: "1.0.0".into(),
            target: ObjectKind::new("example.com", "v1", "Thing"),
            child_kinds: children.to_vec(),
            read_kinds: reads.to_vec(),
            wants_sql: sql,
            settings_schema: serde_json::json!({}),
            wit_version: "0.1.0".into(),
            offers_admission: false,
        }
    }

    fn kind_ref(group: &str, version: &str, kind: &str) -> KindRef {
        KindRef {
            group: group.into(),
            version: version.into(),
            kind: kind.into(),
        }
    }

    #[test]
    fn a_plugin_gets_only_what_it_asks_for_and_its_binding_allows() {
        let cm = ObjectKind::new("", "v1", "ConfigMap");
        let secret = ObjectKind::new("", "v1", "Secret");
        let grants = EffectiveGrants::intersect(
            &description(
                &[cm.clone(), secret.clone()],
                std::slice::from_ref(&secret),
                false,
            ),
            &GrantsSpec {
                read: vec![kind_ref("", "v1", "ConfigMap")],
                children: vec![kind_ref("", "v1", "ConfigMap")],
                servers: vec!["db/main".into()],
            },
        );
        assert_eq!(grants.child_kinds, BTreeSet::from([cm]));
        assert!(
            grants.read_kinds.is_empty(),
            "the binding does not allow Secret reads"
        );
        assert!(grants.servers.is_empty(), "the plugin asked for no SQL");
    }

    #[test]
    fn a_child_of_an_ungranted_kind_is_refused_naming_it() {
        let grants = EffectiveGrants {
            child_kinds: BTreeSet::from([ObjectKind::new("", "v1", "ConfigMap")]),
            ..EffectiveGrants::default()
        };
        let decision = Decision {
            children: vec![
                serde_json::json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}}),
            ],
            status: None,
            sql: vec![],
            events: vec![],
            requeue_after: None,
        };
        let refusal = check_decision(&grants, Some("ns"), &BTreeSet::new(), &decision).unwrap_err();
        assert_eq!(
            refusal,
            Refusal::ChildKind {
                index: 0,
                kind: "v1/Secret".into()
            }
        );
    }
}
