//! What a plugin reads while it decides admission: its granted read kinds,
//! straight from the API server. Every replica answers reviews, and only the
//! leader keeps watch caches, so these reads do not go through them; a
//! review is a rare, small event next to a reconcile. Queries are refused:
//! a webhook must answer in its timeout, whatever a database does.

use async_trait::async_trait;
use kube::Client;
use kube::api::{Api, DynamicObject, ListParams};
use kube::core::{ApiResource, GroupVersionKind};
use serde_json::Value;

use crate::runtime::{HostServices, QueryResult, SqlValue};
use crate::vocabulary::{ObjectKind, ServerKey};

/// Reads through the API server with the operator's own client.
#[derive(Clone)]
pub struct ApiReads {
    client: Client,
}

impl ApiReads {
    /// Reads with `client`.
    pub fn new(client: Client) -> Self {
        Self { client }
    }

    fn api(&self, kind: &ObjectKind, namespace: Option<&str>) -> Api<DynamicObject> {
        let resource = ApiResource::from_gvk(&GroupVersionKind::gvk(
            &kind.group,
            &kind.version,
            &kind.kind,
        ));
        match namespace {
            Some(namespace) => Api::namespaced_with(self.client.clone(), namespace, &resource),
            None => Api::all_with(self.client.clone(), &resource),
        }
    }
}

impl std::fmt::Debug for ApiReads {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ApiReads")
    }
}

#[async_trait]
impl HostServices for ApiReads {
    async fn get(
        &self,
        kind: &ObjectKind,
        namespace: Option<&str>,
        name: &str,
    ) -> Result<Option<Value>, String> {
        let object = self
            .api(kind, namespace)
            .get_opt(name)
            .await
            .map_err(|e| format!("reading {kind} {name}: {e}"))?;
        object
            .map(|object| serde_json::to_value(object).map_err(|e| e.to_string()))
            .transpose()
    }

    async fn list(
        &self,
        kind: &ObjectKind,
        namespace: Option<&str>,
        label_selector: &str,
    ) -> Result<Vec<Value>, String> {
        let params = ListParams::default().labels(label_selector);
        let list = self
            .api(kind, namespace)
            .list(&params)
            .await
            .map_err(|e| format!("listing {kind}: {e}"))?;
        list.items
            .into_iter()
            .map(|object| serde_json::to_value(object).map_err(|e| e.to_string()))
            .collect()
    }

    async fn query(
        &self,
        server: &ServerKey,
        _database: Option<&str>,
        _statement: &str,
        _params: &[SqlValue],
    ) -> Result<QueryResult, String> {
        Err(format!(
            "server {server}: SQL is not available while deciding admission (decide from the objects)"
        ))
    }
}
