//! The PostgreSQL servers plugins may use: `PostgresServer` objects from a
//! watch cache, their administrator credentials from Secrets, which objects
//! may use which server, and pooled connections to run plans and queries.
//!
//! A plugin names a server by the `namespace/name` of its PostgresServer. It
//! may use it for an object when its binding grants the server (a pattern:
//! `ns/name`, `ns/*` or `*`) and the server consents to the object's
//! namespace (`spec.allowedNamespaces`, default: its own namespace only).

use std::collections::{BTreeSet, HashMap, HashSet};
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

use super::connection::{self, ServerConnection};
use super::error::ServerError;
use super::executor::{self, PlanReport, ResultLimits};
use super::pool::{Pool, pool_key};
use super::{reader, session};
use crate::grants::Grants;
use crate::runtime::{QueryResult, SqlPlan, SqlValue};
use crate::vocabulary::ServerKey;

/// How long resolved credentials are reused before the Secret is read again.
const CREDENTIALS_TTL: Duration = Duration::from_secs(10);
/// Statement timeout of plugins' read-only queries.
const QUERY_TIMEOUT: Duration = Duration::from_secs(10);

/// The servers known to the operator, shared by every plugin controller.
pub struct ServerDirectory {
    client: Client,
    store: OnceCell<Store<PostgresServer>>,
    credentials: Mutex<HashMap<ServerKey, (Instant, ServerConnection)>>,
    pool: Pool,
    /// Servers whose reader role is set up (by this process).
    readers: Mutex<HashSet<ServerKey>>,
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
            readers: Mutex::default(),
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

    /// The servers an object in `namespace` may use under `grants`: granted,
    /// and consenting to the namespace.
    pub fn usable_by(&self, grants: &Grants, namespace: Option<&str>) -> BTreeSet<ServerKey> {
        let Some(store) = self.store.get() else {
            return BTreeSet::new();
        };
        store
            .state()
            .iter()
            .filter_map(|server| {
                let own = server.namespace().unwrap_or_default();
                let key = ServerKey::new(&own, &server.name_any());
                let consents = server
                    .spec
                    .allows_namespace(&own, namespace.unwrap_or(&own));
                (consents && grants.may_use(&key)).then_some(key)
            })
            .collect()
    }

    /// Runs a plan on its server.
    ///
    /// # Errors
    /// [`ServerError`] naming the server; see [`executor::run_plan`] for how
    /// far a failed plan got.
    pub async fn run_plan(&self, plan: &SqlPlan) -> Result<PlanReport, ServerError> {
        let server = self.connection(&plan.server).await?;
        let mut client = self
            .checkout(&plan.server, &server, plan.database.as_deref())
            .await?;
        let result = executor::run_plan(&mut client, plan).await;
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

    /// Runs a read-only query whose result may be at most `limits`.
    ///
    /// # Guarantees
    /// The query runs in a read-only transaction that is rolled back, and
    /// the session is reset (`DISCARD ALL`: prepared statements, advisory
    /// locks, settings, temporary tables) before the connection serves
    /// anyone else; a connection that cannot be reset is closed. A query
    /// abandoned by its caller (a plugin past its deadline) is cancelled
    /// on the server.
    ///
    /// # Errors
    /// [`ServerError`] naming the server.
    pub async fn query(
        &self,
        key: &ServerKey,
        database: Option<&str>,
        statement: &str,
        params: &[SqlValue],
        limits: ResultLimits,
    ) -> Result<QueryResult, ServerError> {
        let server = self.connection(key).await?;
        self.prepare_reader(key, &server).await?;
        let mut client = self.checkout(key, &server, database).await?;
        let (result, reusable) = session::query(
            &mut client,
            &server,
            statement,
            params,
            QUERY_TIMEOUT,
            limits,
        )
        .await;
        if reusable {
            self.pool.put(pool_key(key, &server, database), client);
        }
        result.map_err(|source| ServerError::Sql {
            key: key.clone(),
            source,
        })
    }

    /// Sets up the role plugin queries run as, once per server.
    async fn prepare_reader(
        &self,
        key: &ServerKey,
        server: &ServerConnection,
    ) -> Result<(), ServerError> {
        let ready = self
            .readers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains(key);
        if ready {
            return Ok(());
        }
        let client = self.checkout(key, server, None).await?;
        reader::prepare(&client)
            .await
            .map_err(|source| ServerError::Sql {
                key: key.clone(),
                source,
            })?;
        self.pool.put(pool_key(key, server, None), client);
        self.readers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key.clone());
        Ok(())
    }

    async fn checkout(
        &self,
        key: &ServerKey,
        server: &ServerConnection,
        database: Option<&str>,
    ) -> Result<tokio_postgres::Client, ServerError> {
        if let Some(client) = self.pool.take(&pool_key(key, server, database)) {
            return Ok(client);
        }
        connection::connect(server, database)
            .await
            .map_err(|source| {
                // The Secret may have changed: read it again next time.
                self.credentials
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .remove(key);
                ServerError::Sql {
                    key: key.clone(),
                    source,
                }
            })
    }

    /// How to connect to a server, from its spec and its Secret.
    async fn connection(&self, key: &ServerKey) -> Result<ServerConnection, ServerError> {
        if let Some((at, connection)) = self
            .credentials
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(key)
            && at.elapsed() < CREDENTIALS_TTL
        {
            return Ok(connection.clone());
        }
        let not_found = || ServerError::NotFound { key: key.clone() };
        let (namespace, name) = (key.namespace(), key.name());
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
                key: key.clone(),
                source,
            })?
            .ok_or_else(|| ServerError::Credentials {
                key: key.clone(),
                reason: format!("Secret {namespace}/{} not found", refs.secret_name),
            })?;
        let value = |field: &str| {
            secret
                .data
                .as_ref()
                .and_then(|d| d.get(field))
                .and_then(|v| String::from_utf8(v.0.clone()).ok())
                .ok_or_else(|| ServerError::Credentials {
                    key: key.clone(),
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
            .insert(key.clone(), (Instant::now(), connection.clone()));
        Ok(connection)
    }
}
