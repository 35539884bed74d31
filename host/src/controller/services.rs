//! Serves plugins' reads from the watch caches, and resolves kinds to API
//! resources.

use async_trait::async_trait;
use kube::Client;
use kube::api::DynamicObject;
use kube::core::GroupVersionKind;
use kube::discovery::{ApiCapabilities, ApiResource, Scope};
use serde_json::Value;

use super::cache::ReadCaches;
use crate::runtime::{HostServices, ObjectKind, QueryResult, SqlValue};
use crate::servers::ServerDirectory;

/// The API resource of a kind and whether it is namespaced, from discovery.
///
/// # Errors
/// When the API server does not serve the kind.
pub(super) async fn resolve_kind(
    client: &Client,
    kind: &ObjectKind,
) -> Result<(ApiResource, bool), kube::Error> {
    let gvk = GroupVersionKind::gvk(&kind.group, &kind.version, &kind.kind);
    let (resource, caps): (ApiResource, ApiCapabilities) =
        kube::discovery::pinned_kind(client, &gvk).await?;
    Ok((resource, caps.scope == Scope::Namespaced))
}

/// Plugin reads served from the controller's watch caches (grants were
/// checked by the runtime), and queries from the server directory.
pub struct KubeServices {
    /// The caches of the kinds the plugin may read.
    pub(super) reads: std::sync::Arc<ReadCaches>,
    /// The PostgreSQL servers.
    pub servers: std::sync::Arc<ServerDirectory>,
}

fn read_error(kind: &ObjectKind, error: impl std::fmt::Display) -> String {
    format!("reading {kind} failed: {error}")
}

fn to_json(object: &DynamicObject) -> Result<Value, String> {
    serde_json::to_value(object).map_err(|e| e.to_string())
}

#[async_trait]
impl HostServices for KubeServices {
    async fn get(
        &self,
        kind: &ObjectKind,
        namespace: Option<&str>,
        name: &str,
    ) -> Result<Option<Value>, String> {
        self.reads
            .get(kind, namespace, name)
            .map_err(|e| read_error(kind, e))?
            .map(|object| to_json(&object))
            .transpose()
    }

    async fn list(
        &self,
        kind: &ObjectKind,
        namespace: Option<&str>,
        label_selector: &str,
    ) -> Result<Vec<Value>, String> {
        self.reads
            .list(kind, namespace, label_selector)
            .map_err(|e| read_error(kind, e))?
            .iter()
            .map(|object| to_json(object))
            .collect()
    }

    async fn query(
        &self,
        server: &str,
        database: Option<&str>,
        statement: &str,
        params: &[SqlValue],
    ) -> Result<QueryResult, String> {
        self.servers
            .query(server, database, statement, params)
            .await
            .map_err(|e| e.to_string())
    }
}
