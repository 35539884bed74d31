//! The PostgreSQL servers plugins may use: `PostgresServer` objects from a
//! watch cache, their administrator credentials from Secrets, which objects
//! may use which server, and pooled connections to run plans and queries.
//!
//! A plugin names a server by the `namespace/name` of its PostgresServer. It
//! may use it for an object when its binding grants the server (a pattern:
//! `ns/name`, `ns/*` or `*`) and the server consents to the object's
//! namespace (`spec.allowedNamespaces`, default: its own namespace only).

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::Secret;
use kube::api::Api;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, ResourceExt};
use postgres_api::PostgresServer;
use tokio::sync::OnceCell;

use crate::runtime::{QueryResult, SqlPlan, SqlValue};
use crate::sql::{self, PlanReport, ServerConnection, SqlError};

/// How long resolved credentials are reused before the Secret is read again.
const CREDENTIALS_TTL: Duration = Duration::from_secs(10);
/// Idle connections kept per (server, database).
const IDLE_PER_DATABASE: usize = 4;
/// Idle connections kept in all.
const IDLE_TOTAL: usize = 32;
/// Idle connections older than this are closed.
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Statement timeout of plugins' read-only queries.
const QUERY_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a server could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// No PostgresServer of that name exists.
    #[error("PostgresServer {key} does not exist; create it or fix the reference")]
    NotFound {
        /// `namespace/name`.
        key: String,
    },
    /// The administrator Secret is missing or lacks a key.
    #[error("PostgresServer {key}: spec.adminCredentials: {reason}")]
    Credentials {
        /// `namespace/name`.
        key: String,
        /// What is wrong with the Secret.
        reason: String,
    },
    /// Reading the Secret failed.
    #[error("PostgresServer {key}: reading the administrator Secret failed: {source}")]
    Kube {
        /// `namespace/name`.
        key: String,
        /// The client's error.
        #[source]
        source: kube::Error,
    },
    /// The PostgresServer watch has no first list.
    #[error("PostgresServers are not known: {reason}")]
    Watch {
        /// Why.
        reason: &'static str,
    },
    /// Connecting or running SQL failed.
    #[error("PostgresServer {key}: {source}")]
    Sql {
        /// `namespace/name`.
        key: String,
        /// What PostgreSQL said.
        #[source]
        source: SqlError,
    },
}

/// A server grant of a binding: `ns/name`, `ns/*` or `*`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct ServerPattern(String);

impl ServerPattern {
    /// Wraps a pattern from `spec.grants.servers`.
    pub fn new(pattern: impl Into<String>) -> Self {
        Self(pattern.into())
    }

    /// Whether the server `namespace/name` matches.
    pub fn matches(&self, key: &str) -> bool {
        match self.0.as_str() {
            "*" | "*/*" => true,
            pattern => match pattern.strip_suffix("/*") {
                Some(namespace) => key.split_once('/').is_some_and(|(ns, _)| ns == namespace),
                None => pattern == key,
            },
        }
    }
}

/// The servers known to the operator, shared by every plugin controller.
pub struct ServerDirectory {
    client: Client,
    store: OnceCell<Store<PostgresServer>>,
    credentials: Mutex<HashMap<String, (Instant, ServerConnection)>>,
    pool: Pool,
}

impl ServerDirectory {
    /// A directory that starts watching PostgresServers on first use, so an
    /// operator without SQL plugins never needs the CRD.
    pub fn new(client: Client) -> Arc<Self> {
        Arc::new(Self {
            client,
            store: OnceCell::new(),
            credentials: Mutex::new(HashMap::new()),
            pool: Pool::default(),
        })
    }

    /// Starts the watch (once) and waits until its first list arrived.
    ///
    /// # Errors
    /// When the first list does not arrive in 30 s (is the PostgresServer
    /// CRD installed?).
    pub async fn ready(&self) -> Result<(), ServerError> {
        let store = self
            .store
            .get_or_init(|| async {
                let (reader, writer) = reflector::store();
                let api: Api<PostgresServer> = Api::all(self.client.clone());
                let stream = reflector::reflector(writer, watcher(api, watcher::Config::default()))
                    .default_backoff()
                    .touched_objects();
                tokio::spawn(async move {
                    futures::pin_mut!(stream);
                    while let Some(event) = stream.next().await {
                        if let Err(error) = event {
                            tracing::warn!(%error, "watching PostgresServers failed; retrying");
                        }
                    }
                });
                reader
            })
            .await;
        tokio::time::timeout(Duration::from_secs(30), store.wait_until_ready())
            .await
            .map_err(|_| ServerError::Watch {
                reason: "their list did not arrive within 30 s; is crds/postgresservers.yaml installed?",
            })?
            .map_err(|_| ServerError::Watch {
                reason: "the watch stopped",
            })
    }

    /// The servers an object in `namespace` may use under `grants`.
    pub fn usable_by(&self, grants: &[ServerPattern], namespace: Option<&str>) -> BTreeSet<String> {
        let Some(store) = self.store.get() else {
            return BTreeSet::new();
        };
        store
            .state()
            .iter()
            .filter_map(|server| {
                let own = server.namespace().unwrap_or_default();
                let key = format!("{own}/{}", server.name_any());
                let consents = server
                    .spec
                    .allows_namespace(&own, namespace.unwrap_or(&own));
                (consents && grants.iter().any(|g| g.matches(&key))).then_some(key)
            })
            .collect()
    }

    /// Runs a plan on its server.
    ///
    /// # Errors
    /// [`ServerError`] naming the server; see [`sql::run_plan`] for how
    /// far a failed plan got.
    pub async fn run_plan(&self, plan: &SqlPlan) -> Result<PlanReport, ServerError> {
        let server = self.connection(&plan.server).await?;
        let mut client = self
            .checkout(&plan.server, &server, plan.database.as_deref())
            .await?;
        let result = sql::run_plan(&mut client, plan).await;
        // A plan may change session state (SET, SET ROLE): reset it before
        // the connection serves anyone else.
        if client.batch_execute("DISCARD ALL").await.is_ok() {
            self.pool.put(
                pool_key(&plan.server, &server, plan.database.as_deref()),
                client,
            );
        }
        result.map_err(|source| ServerError::Sql {
            key: plan.server.clone(),
            source,
        })
    }

    /// Runs a read-only query.
    ///
    /// # Errors
    /// [`ServerError`] naming the server.
    pub async fn query(
        &self,
        key: &str,
        database: Option<&str>,
        statement: &str,
        params: &[SqlValue],
    ) -> Result<QueryResult, ServerError> {
        let server = self.connection(key).await?;
        let mut client = self.checkout(key, &server, database).await?;
        let result = sql::query_read_only(&mut client, statement, params, QUERY_TIMEOUT).await;
        // The query ran in a read-only transaction that was rolled back:
        // the session is unchanged.
        self.pool.put(pool_key(key, &server, database), client);
        result.map_err(|source| ServerError::Sql {
            key: key.to_owned(),
            source,
        })
    }

    async fn checkout(
        &self,
        key: &str,
        server: &ServerConnection,
        database: Option<&str>,
    ) -> Result<tokio_postgres::Client, ServerError> {
        if let Some(client) = self.pool.take(&pool_key(key, server, database)) {
            return Ok(client);
        }
        sql::connect(server, database).await.map_err(|source| {
            // The Secret may have changed: read it again next time.
            self.credentials
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(key);
            ServerError::Sql {
                key: key.to_owned(),
                source,
            }
        })
    }

    /// How to connect to a server, from its spec and its Secret.
    async fn connection(&self, key: &str) -> Result<ServerConnection, ServerError> {
        if let Some((at, connection)) = self
            .credentials
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(key)
            && at.elapsed() < CREDENTIALS_TTL
        {
            return Ok(connection.clone());
        }
        let not_found = || ServerError::NotFound {
            key: key.to_owned(),
        };
        let (namespace, name) = key.split_once('/').ok_or_else(not_found)?;
        let server = self
            .store
            .get()
            .and_then(|s| s.get(&ObjectRef::new(name).within(namespace)))
            .ok_or_else(not_found)?;
        let refs = &server.spec.admin_credentials;
        let secret = Api::<Secret>::namespaced(self.client.clone(), namespace)
            .get_opt(&refs.secret_name)
            .await
            .map_err(|source| ServerError::Kube {
                key: key.to_owned(),
                source,
            })?
            .ok_or_else(|| ServerError::Credentials {
                key: key.to_owned(),
                reason: format!("Secret {namespace}/{} not found", refs.secret_name),
            })?;
        let value = |field: &str| {
            secret
                .data
                .as_ref()
                .and_then(|d| d.get(field))
                .and_then(|v| String::from_utf8(v.0.clone()).ok())
                .ok_or_else(|| ServerError::Credentials {
                    key: key.to_owned(),
                    reason: format!(
                        "Secret {namespace}/{} has no UTF-8 key {field:?}",
                        refs.secret_name
                    ),
                })
        };
        let connection = ServerConnection {
            host: server.spec.host.clone(),
            port: server.spec.port,
            user: value(&refs.username_key)?,
            password: value(&refs.password_key)?,
            maintenance_database: server.spec.maintenance_database.clone(),
            ssl_mode: server.spec.ssl_mode,
        };
        self.credentials
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key.to_owned(), (Instant::now(), connection.clone()));
        Ok(connection)
    }
}

/// Idle connections by server, database and credentials: a changed
/// password or host never reuses a connection made with the old one.
type PoolKey = (String, String, u64);

fn pool_key(key: &str, server: &ServerConnection, database: Option<&str>) -> PoolKey {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    (&server.host, server.port, &server.user, &server.password).hash(&mut hasher);
    (
        key.to_owned(),
        database.unwrap_or(&server.maintenance_database).to_owned(),
        hasher.finish(),
    )
}

/// A small pool of idle connections, capped per database and in total so
/// that a thousand databases do not hold a thousand connections open.
///
/// Written here rather than taken from deadpool: pools there are per
/// database with no shared cap or eviction across them.
#[derive(Default)]
struct Pool {
    idle: Mutex<HashMap<PoolKey, Vec<(Instant, tokio_postgres::Client)>>>,
}

impl Pool {
    fn take(&self, key: &PoolKey) -> Option<tokio_postgres::Client> {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        let clients = idle.get_mut(key)?;
        while let Some((since, client)) = clients.pop() {
            if !client.is_closed() && since.elapsed() < IDLE_TIMEOUT {
                return Some(client);
            }
        }
        idle.remove(key);
        None
    }

    fn put(&self, key: PoolKey, client: tokio_postgres::Client) {
        if client.is_closed() {
            return;
        }
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        idle.retain(|_, clients| {
            clients.retain(|(since, c)| !c.is_closed() && since.elapsed() < IDLE_TIMEOUT);
            !clients.is_empty()
        });
        let total: usize = idle.values().map(Vec::len).sum();
        if total >= IDLE_TOTAL {
            // Evict the oldest idle connection of all.
            let oldest = idle
                .iter()
                .filter_map(|(k, clients)| clients.first().map(|(since, _)| (*since, k.clone())))
                .min_by_key(|(since, _)| *since)
                .map(|(_, k)| k);
            if let Some(oldest) = oldest
                && let Some(clients) = idle.get_mut(&oldest)
            {
                clients.remove(0);
            }
        }
        let clients = idle.entry(key).or_default();
        if clients.len() < IDLE_PER_DATABASE {
            clients.push((Instant::now(), client));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_patterns_match_exact_names_namespaces_and_everything() {
        assert!(ServerPattern::new("db/main").matches("db/main"));
        assert!(!ServerPattern::new("db/main").matches("db/other"));
        assert!(ServerPattern::new("db/*").matches("db/other"));
        assert!(!ServerPattern::new("db/*").matches("dbx/other"));
        assert!(ServerPattern::new("*").matches("any/thing"));
    }
}
