//! Idle connections kept for reuse.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::connection::ServerConnection;
use crate::vocabulary::ServerKey;

/// Idle connections kept per (server, database).
const IDLE_PER_DATABASE: usize = 4;
/// Idle connections kept in all.
const IDLE_TOTAL: usize = 32;
/// Idle connections older than this are closed.
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// Idle connections by server, database and credentials: a changed
/// password or host never reuses a connection made with the old one.
pub(super) type PoolKey = (ServerKey, String, u64);

pub(super) fn pool_key(
    key: &ServerKey,
    server: &ServerConnection,
    database: Option<&str>,
) -> PoolKey {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    (&server.host, server.port, &server.user, &server.password).hash(&mut hasher);
    (
        key.clone(),
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
pub(super) struct Pool {
    idle: Mutex<HashMap<PoolKey, Vec<(Instant, tokio_postgres::Client)>>>,
}

impl Pool {
    pub(super) fn take(&self, key: &PoolKey) -> Option<tokio_postgres::Client> {
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

    pub(super) fn put(&self, key: PoolKey, client: tokio_postgres::Client) {
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
