//! Serves plugins' reads from the Kubernetes API, and resolves kinds to API
//! resources once.

use std::collections::HashMap;
use std::sync::Mutex;

use async_trait::async_trait;
use kube::Client;
use kube::api::{Api, DynamicObject, ListParams};
use kube::core::GroupVersionKind;
use kube::discovery::{ApiCapabilities, ApiResource, Scope};
use serde_json::Value;

use crate::runtime::{HostServices, ObjectKind, QueryResult, SqlValue};
use crate::servers::ServerDirectory;

/// Resolves kinds to API resources through discovery, caching the answers.
#[derive(Default)]
pub struct KindResolver {
    known: Mutex<HashMap<ObjectKind, (ApiResource, bool)>>,
}

impl KindResolver {
    /// The API resource of a kind and whether it is namespaced.
    ///
    /// # Errors
    /// When the API server does not serve the kind.
    pub async fn resolve(
        &self,
        client: &Client,
        kind: &ObjectKind,
    ) -> Result<(ApiResource, bool), kube::Error> {
        if let Some(found) = self
            .known
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(kind)
        {
            return Ok(found.clone());
        }
        let gvk = GroupVersionKind::gvk(&kind.group, &kind.version, &kind.kind);
        let (resource, caps): (ApiResource, ApiCapabilities) =
            kube::discovery::pinned_kind(client, &gvk).await?;
        let found = (resource, caps.scope == Scope::Namespaced);
        self.known
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(kind.clone(), found.clone());
        Ok(found)
    }

    /// An `Api` for a kind, in `namespace` when it is namespaced.
    ///
    /// # Errors
    /// As for [`KindResolver::resolve`].
    pub async fn api(
        &self,
        client: &Client,
        kind: &ObjectKind,
        namespace: Option<&str>,
    ) -> Result<Api<DynamicObject>, kube::Error> {
        let (resource, namespaced) = self.resolve(client, kind).await?;
        Ok(match (namespaced, namespace) {
            (true, Some(ns)) => Api::namespaced_with(client.clone(), ns, &resource),
            (true, None) => Api::all_with(client.clone(), &resource),
            (false, _) => Api::all_with(client.clone(), &resource),
        })
    }
}

/// Plugin reads served by the API server (grants were checked by the runtime).
pub struct KubeServices {
    /// The client.
    pub client: Client,
    /// Shared kind resolution.
    pub kinds: std::sync::Arc<KindResolver>,
    /// The PostgreSQL servers.
    pub servers: std::sync::Arc<ServerDirectory>,
}

fn read_error(kind: &ObjectKind, error: &kube::Error) -> String {
    format!("reading {kind} failed: {error}")
}

#[async_trait]
impl HostServices for KubeServices {
    async fn get(
        &self,
        kind: &ObjectKind,
        namespace: Option<&str>,
        name: &str,
    ) -> Result<Option<Value>, String> {
        let api = self
            .kinds
            .api(&self.client, kind, namespace)
            .await
            .map_err(|e| read_error(kind, &e))?;
        let object = api.get_opt(name).await.map_err(|e| read_error(kind, &e))?;
        object
            .map(|o| serde_json::to_value(o).map_err(|e| e.to_string()))
            .transpose()
    }

    async fn list(
        &self,
        kind: &ObjectKind,
        namespace: Option<&str>,
        label_selector: &str,
    ) -> Result<Vec<Value>, String> {
        let api = self
            .kinds
            .api(&self.client, kind, namespace)
            .await
            .map_err(|e| read_error(kind, &e))?;
        let params = ListParams::default().labels(label_selector);
        let list = api.list(&params).await.map_err(|e| read_error(kind, &e))?;
        list.items
            .into_iter()
            .map(|o| serde_json::to_value(o).map_err(|e| e.to_string()))
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
