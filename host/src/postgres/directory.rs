//! The PostgreSQL servers plugins may use: `PostgresServer` objects from a
//! watch cache, their administrator credentials from Secrets, which objects
//! may use which server, and pooled connections to run plans and queries.
//!
//! A plugin names a server by the `namespace/name` of its PostgresServer. It
//! may use it for an object when its binding grants the server (a pattern:
//! `ns/name`, `ns/*` or `*`) and the server consents to the object's
//! namespace (`spec.allowedNamespaces`, default: its own namespace only).

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use futures::{Stream, StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::Secret;
use kube::api::Api;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, ResourceExt};
use postgres_api::PostgresServer;
use tokio::sync::watch;

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
/// How long controllers wait for the first list of PostgresServers before
/// they start without servers.
const LIST_TIMEOUT: Duration = Duration::from_secs(30);
/// How often a wait for that list is logged while it lasts.
const SLOW_LIST: Duration = Duration::from_secs(5);

/// The watch of PostgresServers, started on first use.
struct ServerWatch {
    store: Store<PostgresServer>,
    /// Turns true once the first list is in the store. Not
    /// `Store::wait_until_ready`: kube-runtime 5 wakes only the last of
    /// several tasks waiting on it (its `DelayedInit` keeps one waker), and
    /// every controller of a plugin that uses servers waits at once, so
    /// all but one started only when their timeout polled again, 30 s late.
    listed: watch::Receiver<bool>,
}

impl ServerWatch {
    /// Fills a store from `events` on a task of its own.
    fn spawn(
        events: impl Stream<Item = Result<watcher::Event<PostgresServer>, watcher::Error>>
        + Send
        + 'static,
    ) -> Self {
        let (store, writer) = reflector::store();
        let (listed_tx, listed) = watch::channel(false);
        let stream = reflector::reflector(writer, events).inspect_ok(move |event| {
            // The reflector applied the event first: the list is in the store.
            if matches!(event, watcher::Event::InitDone) && !*listed_tx.borrow() {
                listed_tx.send_replace(true);
                tracing::info!("PostgreSQL servers listed");
            }
        });
        tokio::spawn(async move {
            futures::pin_mut!(stream);
            while let Some(event) = stream.next().await {
                if let Err(error) = event {
                    tracing::warn!(%error, "watching PostgresServers failed; retrying");
                }
            }
        });
        Self { store, listed }
    }

    /// Waits for the first list, at most [`LIST_TIMEOUT`], logging every
    /// [`SLOW_LIST`] that it still waits.
    async fn listed(&self) -> Result<(), ServerError> {
        let started = tokio::time::Instant::now();
        let mut listed = self.listed.clone();
        loop {
            let left = LIST_TIMEOUT.saturating_sub(started.elapsed());
            if left.is_zero() {
                return Err(ServerError::Watch {
                    reason: "their list did not arrive within 30 s; is crds/postgresservers.yaml installed?",
                });
            }
            match tokio::time::timeout(SLOW_LIST.min(left), listed.wait_for(|l| *l)).await {
                Ok(Ok(_)) => return Ok(()),
                Ok(Err(_)) => {
                    return Err(ServerError::Watch {
                        reason: "the watch stopped",
                    });
                }
                Err(_) => tracing::warn!(
                    waited_s = started.elapsed().as_secs(),
                    "still waiting for the first list of PostgresServers; controllers of plugins that use servers start after it"
                ),
            }
        }
    }
}

/// The servers known to the operator, shared by every plugin controller.
pub struct ServerDirectory {
    client: Client,
    watch: OnceLock<ServerWatch>,
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
            watch: OnceLock::new(),
            credentials: Mutex::new(HashMap::new()),
            pool: Pool::default(),
            readers: Mutex::default(),
        })
    }

    /// Starts the watch (once) and waits until its first list arrived;
    /// every caller wakes as soon as it does.
    ///
    /// # Errors
    /// When the first list does not arrive in 30 s (is the PostgresServer
    /// CRD installed?); waits over 5 s are logged meanwhile.
    pub async fn ready(&self) -> Result<(), ServerError> {
        self.watch
            .get_or_init(|| {
                let api: Api<PostgresServer> = Api::all(self.client.clone());
                ServerWatch::spawn(watcher(api, watcher::Config::default()).default_backoff())
            })
            .listed()
            .await
    }

    /// The servers an object in `namespace` may use under `grants`: granted,
    /// and consenting to the namespace.
    pub fn usable_by(&self, grants: &Grants, namespace: Option<&str>) -> BTreeSet<ServerKey> {
        let Some(watch) = self.watch.get() else {
            return BTreeSet::new();
        };
        watch
            .store
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
            .watch
            .get()
            .and_then(|w| w.store.get(&ObjectRef::new(name).within(namespace)))
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

#[cfg(test)]
mod tests {
    use futures::channel::mpsc;
    use tokio::time::Instant;

    use super::*;

    /// Starts `waiters` tasks that each await `wait`; returns when each
    /// finished (since the call) and what it returned.
    async fn waiting<F, T>(waiters: usize, wait: impl Fn() -> F) -> Arc<Mutex<Vec<(Duration, T)>>>
    where
        F: Future<Output = T> + Send + 'static,
        T: Send + 'static,
    {
        let done = Arc::new(Mutex::new(Vec::new()));
        let started = Instant::now();
        for _ in 0..waiters {
            let (wait, done) = (wait(), Arc::clone(&done));
            tokio::spawn(async move {
                let result = wait.await;
                done.lock().unwrap().push((started.elapsed(), result));
            });
        }
        // Every waiter has polled (and is pending) once the clock may advance.
        tokio::time::sleep(Duration::from_millis(1)).await;
        assert!(done.lock().unwrap().is_empty(), "nothing is listed yet");
        done
    }

    /// The cause of controllers starting 30 s late, pinned down with the
    /// wait the directory used to do. If a kube upgrade makes this fail,
    /// `Store::wait_until_ready` wakes every waiter and
    /// [`ServerWatch::listed`] could use it again.
    #[tokio::test(start_paused = true)]
    async fn kube_runtime_wakes_one_of_several_tasks_waiting_for_a_store_and_the_others_at_their_timeout()
     {
        let (store, mut writer) = reflector::store::<PostgresServer>();
        let done = waiting(3, || {
            let store = store.clone();
            async move {
                tokio::time::timeout(LIST_TIMEOUT, store.wait_until_ready())
                    .await
                    .is_ok()
            }
        })
        .await;
        writer.apply_watcher_event(&watcher::Event::Init);
        writer.apply_watcher_event(&watcher::Event::InitDone);
        tokio::time::sleep(LIST_TIMEOUT * 2).await;
        let mut done = done.lock().unwrap().clone();
        done.sort();
        let millis: Vec<(u128, bool)> = done.iter().map(|(at, ok)| (at.as_millis(), *ok)).collect();
        // One at once; two only when their timeout polled them, and then
        // without an error: a silent stall.
        assert_eq!(millis, [(1, true), (30_000, true), (30_000, true)]);
    }

    #[tokio::test(start_paused = true)]
    async fn every_controller_waiting_for_the_server_list_starts_as_soon_as_it_arrives() {
        let (events, stream) = mpsc::unbounded();
        let watch = Arc::new(ServerWatch::spawn(stream.map(Ok)));
        let done = waiting(3, || {
            let watch = Arc::clone(&watch);
            async move { watch.listed().await.is_ok() }
        })
        .await;
        for event in [watcher::Event::Init, watcher::Event::InitDone] {
            events.unbounded_send(event).expect("the watch task runs");
        }
        tokio::time::sleep(LIST_TIMEOUT * 2).await;
        let done = done.lock().unwrap().clone();
        assert_eq!(done.len(), 3);
        assert!(
            done.iter()
                .all(|(at, ok)| *ok && *at < Duration::from_millis(10)),
            "{done:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_list_that_never_arrives_fails_the_wait_after_30_s() {
        let (_events, stream) = mpsc::unbounded::<watcher::Event<PostgresServer>>();
        let watch = ServerWatch::spawn(stream.map(Ok));
        let started = Instant::now();
        assert!(matches!(
            watch.listed().await,
            Err(ServerError::Watch { .. })
        ));
        assert_eq!(started.elapsed(), LIST_TIMEOUT);
    }
}
