//! Who serves a plugin's reads: the [`HostServices`] a call is given.
//!
//! The sandbox checks every import call against the call's
//! [`Grants`](crate::grants::Grants) before it reaches a [`HostServices`]
//! implementation, so backends (the Kubernetes cache, the SQL executor)
//! never see a call they should refuse.

use async_trait::async_trait;
use serde_json::Value;

use super::bindings::types::SqlValue;
use crate::vocabulary::{ObjectKind, ServerKey};

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
        server: &ServerKey,
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
        server: &ServerKey,
        _: Option<&str>,
        _: &str,
        _: &[SqlValue],
    ) -> Result<QueryResult, String> {
        Err(format!(
            "no database connection is attached; cannot query {server}"
        ))
    }
}
