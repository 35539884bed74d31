//! The words every part of the host shares: a Kubernetes kind, a server's
//! key, and the names the host writes on the objects it manages (labels,
//! annotations, finalizer, field manager, status fields, condition types).
//!
//! Nothing here depends on Kubernetes clients or on the Wasm runtime, so
//! both sides can speak it without depending on each other.

use std::fmt;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Labels on every child (the plugin that manages it, the uid of its
/// owner), the finalizer name of a plugin's objects, and the annotations of
/// a child kept when its owner is deleted (the plugin's mark, the host's
/// record of the owner): one definition, shared with the SDK so that
/// plugins never type them again.
pub use wasm_operator_sdk::{
    OWNER_UID_LABEL, PLUGIN_LABEL, RETAIN_ANNOTATION, RETAINED_FROM_ANNOTATION, finalizer_name,
};

/// Status field naming the digest of the plugin that last reconciled the object.
pub const DIGEST_FIELD: &str = "pluginDigest";

/// The condition type every reconciled object and every binding carries.
pub const READY: &str = "Ready";

/// The server-side apply field manager of a plugin's writes.
pub fn field_manager(plugin: &str) -> String {
    format!("wasm-operator.{plugin}")
}

/// A Kubernetes kind by group, version and kind. The core group is empty.
///
/// The one type for a kind in the host: the binding's grants, a plugin's
/// description, a desired child and the watch caches all use it.
#[derive(
    Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema,
)]
#[schemars(description = "A Kubernetes kind by group, version and kind.")]
pub struct ObjectKind {
    /// API group; empty for the core group.
    #[serde(default)]
    pub group: String,
    /// API version.
    pub version: String,
    /// Kind.
    pub kind: String,
}

impl ObjectKind {
    /// Builds a kind from its parts.
    pub fn new(group: &str, version: &str, kind: &str) -> Self {
        Self {
            group: group.to_owned(),
            version: version.to_owned(),
            kind: kind.to_owned(),
        }
    }

    /// The kind of an object from its `apiVersion` (`v1`, `apps/v1`) and `kind`.
    pub fn from_api_version(api_version: &str, kind: &str) -> Self {
        let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
        Self::new(group, version, kind)
    }

    /// The `apiVersion` field value (`v1`, `apps/v1`).
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }
}

impl fmt::Display for ObjectKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.api_version(), self.kind)
    }
}

/// A PostgreSQL server by the `namespace/name` of its `PostgresServer`.
///
/// Kept as the text `namespace/name` (cheap to clone, compared and shown
/// as users write it); both parts are non-empty.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ServerKey(std::sync::Arc<str>);

impl ServerKey {
    /// The server `namespace/name`.
    pub fn new(namespace: &str, name: &str) -> Self {
        Self(format!("{namespace}/{name}").into())
    }

    /// Parses `namespace/name`; `None` unless both parts are non-empty and
    /// there is exactly one `/`.
    pub fn parse(text: &str) -> Option<Self> {
        let (namespace, name) = text.split_once('/')?;
        (!namespace.is_empty() && !name.is_empty() && !name.contains('/'))
            .then(|| Self(text.into()))
    }

    fn parts(&self) -> (&str, &str) {
        self.0.split_once('/').unwrap_or(("", &self.0))
    }

    /// The namespace of the PostgresServer.
    pub fn namespace(&self) -> &str {
        self.parts().0
    }

    /// The name of the PostgresServer.
    pub fn name(&self) -> &str {
        self.parts().1
    }
}

impl fmt::Display for ServerKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An object's labels as a label selector matches them.
pub fn labels_of(object: &kube::api::DynamicObject) -> std::collections::BTreeMap<&str, &str> {
    use kube::ResourceExt as _;
    object
        .labels()
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_kind_reads_its_group_and_version_from_the_api_version() {
        assert_eq!(
            ObjectKind::from_api_version("apps/v1", "Deployment"),
            ObjectKind::new("apps", "v1", "Deployment")
        );
        let secret = ObjectKind::from_api_version("v1", "Secret");
        assert_eq!(secret, ObjectKind::new("", "v1", "Secret"));
        assert_eq!(secret.to_string(), "v1/Secret");
    }

    #[test]
    fn a_server_key_is_a_namespace_and_a_name() {
        let key = ServerKey::parse("db/main").unwrap();
        assert_eq!((key.namespace(), key.name()), ("db", "main"));
        assert_eq!(key.to_string(), "db/main");
        for bad in ["main", "/main", "db/", "a/b/c", ""] {
            assert_eq!(ServerKey::parse(bad), None, "{bad:?}");
        }
    }
}
