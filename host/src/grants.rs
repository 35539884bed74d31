//! What a bound plugin may do: the one [`Grants`] type, and every check of
//! a plugin's reads and decisions against it.
//!
//! A binding's grants are the intersection of what its plugin requests in
//! `describe` and what the binding allows (computed by
//! [`crate::binding`]). A call about one object runs under the same grants
//! narrowed to the servers that consent to the object's namespace
//! ([`Grants::for_object`]). The sandbox asks [`Grants::may_read`] and
//! [`Grants::may_use`] before a read reaches a backend; the reconcile
//! pipeline asks [`Grants::check_children`] and [`Grants::check_plans`]
//! before anything of a decision is carried out.

use std::collections::BTreeSet;

use crate::vocabulary::{ObjectKind, ServerKey};

/// A server grant of a binding: `ns/name`, `ns/*` or `*`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct ServerPattern(String);

impl ServerPattern {
    /// Wraps a pattern from `spec.grants.servers`.
    pub fn new(pattern: impl Into<String>) -> Self {
        Self(pattern.into())
    }

    /// The pattern that matches exactly `server`.
    pub fn exact(server: &ServerKey) -> Self {
        Self(server.to_string())
    }

    /// Whether `server` matches.
    pub fn matches(&self, server: &ServerKey) -> bool {
        match self.0.as_str() {
            "*" | "*/*" => true,
            pattern => match pattern.strip_suffix("/*") {
                Some(namespace) => server.namespace() == namespace,
                None => ServerKey::parse(pattern).is_some_and(|p| p == *server),
            },
        }
    }
}

/// What a plugin may read and write.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Grants {
    /// Kinds it may read from the cache.
    pub read_kinds: BTreeSet<ObjectKind>,
    /// Kinds of children it may apply and prune.
    pub child_kinds: BTreeSet<ObjectKind>,
    /// Servers it may query and plan against (for one object: exactly the
    /// servers that also consent to the object's namespace).
    pub servers: Vec<ServerPattern>,
}

impl Grants {
    /// These grants for a call about one object, which may use exactly
    /// `servers` (granted and consenting to the object's namespace).
    #[must_use]
    pub fn for_object(&self, servers: &BTreeSet<ServerKey>) -> Self {
        Self {
            read_kinds: self.read_kinds.clone(),
            child_kinds: self.child_kinds.clone(),
            servers: servers.iter().map(ServerPattern::exact).collect(),
        }
    }

    /// Whether the plugin may read objects of `kind`.
    pub fn may_read(&self, kind: &ObjectKind) -> bool {
        self.read_kinds.contains(kind)
    }

    /// Whether the plugin may apply and prune children of `kind`.
    pub fn may_own(&self, kind: &ObjectKind) -> bool {
        self.child_kinds.contains(kind)
    }

    /// Whether the plugin may query and plan against `server`.
    pub fn may_use(&self, server: &ServerKey) -> bool {
        self.servers.iter().any(|p| p.matches(server))
    }

    /// Whether any server is granted at all.
    pub fn uses_servers(&self) -> bool {
        !self.servers.is_empty()
    }

    /// Checks the desired children of a decision, given by position as
    /// `(kind, namespace)`, for an owner in `owner_namespace`.
    ///
    /// # Errors
    /// The first [`Refusal`] found.
    pub fn check_children<'a>(
        &self,
        owner_namespace: Option<&str>,
        children: impl IntoIterator<Item = (&'a ObjectKind, Option<&'a str>)>,
    ) -> Result<(), Refusal> {
        for (index, (kind, namespace)) in children.into_iter().enumerate() {
            if !self.may_own(kind) {
                return Err(Refusal::ChildKind {
                    index,
                    kind: kind.to_string(),
                });
            }
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
        Ok(())
    }

    /// Checks the servers of a decision's SQL plans, by position.
    ///
    /// # Errors
    /// [`Refusal::Server`] for the first plan aimed at a server not granted.
    pub fn check_plans<'a>(
        &self,
        servers: impl IntoIterator<Item = &'a ServerKey>,
    ) -> Result<(), Refusal> {
        match servers
            .into_iter()
            .enumerate()
            .find(|(_, server)| !self.may_use(server))
        {
            Some((index, server)) => Err(Refusal::Server {
                index,
                server: server.to_string(),
            }),
            None => Ok(()),
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
    /// A child named like an existing object that is not this owner's child:
    /// the host never applies over (adopts) what it did not create.
    #[error(
        "children[{index}] would replace the existing {kind} {object}, which is not a child of this object; the operator changes only what it created: give the child another name, or remove the existing object"
    )]
    ChildConflict {
        /// Position in the decision.
        index: usize,
        /// The child's kind.
        kind: String,
        /// `namespace/name` (or `name`) of the existing object.
        object: String,
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

#[cfg(test)]
mod tests {
    use super::*;

    fn key(text: &str) -> ServerKey {
        ServerKey::parse(text).unwrap()
    }

    #[test]
    fn server_patterns_match_a_server_a_namespace_or_everything() {
        assert!(ServerPattern::new("db/main").matches(&key("db/main")));
        assert!(!ServerPattern::new("db/main").matches(&key("db/other")));
        assert!(ServerPattern::new("db/*").matches(&key("db/other")));
        assert!(!ServerPattern::new("db/*").matches(&key("dbx/other")));
        assert!(ServerPattern::new("*").matches(&key("any/thing")));
    }

    #[test]
    fn a_child_of_an_ungranted_kind_is_refused_naming_it() {
        let grants = Grants {
            child_kinds: BTreeSet::from([ObjectKind::new("", "v1", "ConfigMap")]),
            ..Grants::default()
        };
        let secret = ObjectKind::new("", "v1", "Secret");
        let refusal = grants
            .check_children(Some("ns"), [(&secret, None)])
            .unwrap_err();
        assert_eq!(
            refusal,
            Refusal::ChildKind {
                index: 0,
                kind: "v1/Secret".into()
            }
        );
    }

    #[test]
    fn a_child_in_another_namespace_than_its_owner_is_refused() {
        let config_map = ObjectKind::new("", "v1", "ConfigMap");
        let grants = Grants {
            child_kinds: BTreeSet::from([config_map.clone()]),
            ..Grants::default()
        };
        assert!(
            grants
                .check_children(Some("ns"), [(&config_map, Some("ns"))])
                .is_ok()
        );
        assert!(matches!(
            grants.check_children(Some("ns"), [(&config_map, Some("other"))]),
            Err(Refusal::ChildNamespace { index: 0, .. })
        ));
    }

    #[test]
    fn a_call_about_one_object_may_use_only_the_servers_usable_for_it() {
        let grants = Grants {
            servers: vec![ServerPattern::new("db/*")],
            ..Grants::default()
        };
        assert!(grants.may_use(&key("db/other")));
        let call = grants.for_object(&BTreeSet::from([key("db/main")]));
        assert!(call.may_use(&key("db/main")));
        assert!(!call.may_use(&key("db/other")), "not consenting");
        assert_eq!(
            call.check_plans([&key("db/main"), &key("db/other")]),
            Err(Refusal::Server {
                index: 1,
                server: "db/other".into()
            })
        );
    }
}
