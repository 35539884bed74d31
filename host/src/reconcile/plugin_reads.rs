//! What a plugin reads during a call: objects from the controller's watch
//! caches, and read-only queries through the server directory. The sandbox
//! has checked each call against the call's grants before it gets here.

use std::sync::Arc;

use async_trait::async_trait;
use kube::api::DynamicObject;
use serde_json::Value;

use super::cache::ReadCaches;
use crate::events::truncate;
use crate::metrics::{BindingLabels, Metrics};
use crate::postgres::{ResultLimits, ServerDirectory};
use crate::runtime::{HostServices, QueryResult, SqlValue};
use crate::vocabulary::{ObjectKind, ServerKey};

/// How much of a query statement is logged.
const LOGGED_STATEMENT_BYTES: usize = 200;

/// Plugin reads served from the controller's watch caches (grants were
/// checked by the runtime), and queries from the server directory.
pub(super) struct PluginReads {
    /// The caches of the kinds the plugin may read.
    pub(super) reads: Arc<ReadCaches>,
    /// The PostgreSQL servers.
    pub(super) servers: Arc<ServerDirectory>,
    /// How much of a query's result the plugin may receive.
    pub(super) limits: ResultLimits,
    /// The object the call is about (`namespace/name`), for the query log.
    pub(super) object: String,
    /// Whose queries these are, for metrics.
    pub(super) labels: BindingLabels,
    pub(super) metrics: Arc<Metrics>,
}

fn read_error(kind: &ObjectKind, error: impl std::fmt::Display) -> String {
    format!("reading {kind} failed: {error}")
}

fn to_json(object: &DynamicObject) -> Result<Value, String> {
    serde_json::to_value(object).map_err(|e| e.to_string())
}

#[async_trait]
impl HostServices for PluginReads {
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
        server: &ServerKey,
        database: Option<&str>,
        statement: &str,
        params: &[SqlValue],
    ) -> Result<QueryResult, String> {
        // Every query is logged, never its parameters (they may be secrets).
        let started = std::time::Instant::now();
        let result = self
            .servers
            .query(server, database, statement, params, self.limits)
            .await;
        let outcome = if result.is_ok() { "ok" } else { "error" };
        self.metrics.record_plugin_query(&self.labels, outcome);
        tracing::info!(
            binding = %self.labels.binding,
            plugin = %self.labels.plugin,
            object = %self.object,
            %server,
            database = database.unwrap_or("(maintenance)"),
            statement = %truncate(statement, LOGGED_STATEMENT_BYTES),
            params = params.len(),
            rows = result.as_ref().map_or(0, |r| r.rows.len()),
            outcome,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "plugin query"
        );
        result.map_err(|e| e.to_string())
    }
}
