//! What a plugin may read through the host, and who serves those reads.
//!
//! The runtime checks every import call against the plugin's [`Grants`]
//! before it reaches a [`HostServices`] implementation, so backends (the
//! Kubernetes cache, the SQL executor) never see a call they should refuse.

use std::collections::BTreeSet;
use std::fmt;

use async_trait::async_trait;
use serde_json::Value;

use super::bindings::types::GroupVersionKind;

/// A Kubernetes group, version and kind. The core group is empty.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ObjectKind {
    /// API group; empty for the core group.
    pub group: String,
    /// API version within the group.
    pub version: String,
    /// Kind, in UpperCamelCase.
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

impl From<GroupVersionKind> for ObjectKind {
    fn from(gvk: GroupVersionKind) -> Self {
        Self {
            group: gvk.group,
            version: gvk.version,
            kind: gvk.kind,
        }
    }
}

impl From<&ObjectKind> for GroupVersionKind {
    fn from(kind: &ObjectKind) -> Self {
        Self {
            group: kind.group.clone(),
            version: kind.version.clone(),
            kind: kind.kind.clone(),
        }
    }
}

/// What one plugin may read during a call: the intersection of what it
/// requested in `describe` and what its binding allows.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Grants {
    /// Kinds it may read from the cache.
    pub read_kinds: BTreeSet<ObjectKind>,
    /// Database servers (`namespace/name`) it may query.
    pub servers: BTreeSet<String>,
}

/// A value bound to a query parameter or read from a result column.
pub use super::bindings::types::SqlValue;

/// The result of a read-only query.
pub use super::bindings::sql::QueryResult;

/// The backends that serve a plugin's reads. Calls arrive here only after
/// the runtime checked them against the plugin's grants.
///
/// Errors are strings because they cross into the guest as WIT `string`s:
/// say what failed and never include a secret.
#[async_trait]
pub trait HostServices: Send + Sync {
    /// Gets one cached object, or `None` when it does not exist.
    async fn get(
        &self,
        kind: &ObjectKind,
        namespace: Option<&str>,
        name: &str,
    ) -> Result<Option<Value>, String>;

    /// Lists cached objects of a kind matching a label selector.
    async fn list(
        &self,
        kind: &ObjectKind,
        namespace: Option<&str>,
        label_selector: &str,
    ) -> Result<Vec<Value>, String>;

    /// Runs a read-only query on a server.
    async fn query(
        &self,
        server: &str,
        database: Option<&str>,
        statement: &str,
        params: &[SqlValue],
    ) -> Result<QueryResult, String>;
}

/// Serves no reads: for describing a plugin outside a cluster.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoServices;

#[async_trait]
impl HostServices for NoServices {
    async fn get(
        &self,
        kind: &ObjectKind,
        _: Option<&str>,
        _: &str,
    ) -> Result<Option<Value>, String> {
        Err(format!(
            "no Kubernetes cache is attached; cannot read {kind}"
        ))
    }

    async fn list(
        &self,
        kind: &ObjectKind,
        _: Option<&str>,
        _: &str,
    ) -> Result<Vec<Value>, String> {
        Err(format!(
            "no Kubernetes cache is attached; cannot list {kind}"
        ))
    }

    async fn query(
        &self,
        server: &str,
        _: Option<&str>,
        _: &str,
        _: &[SqlValue],
    ) -> Result<QueryResult, String> {
        Err(format!(
            "no database connection is attached; cannot query {server}"
        ))
    }
}
