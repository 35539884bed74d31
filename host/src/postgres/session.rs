//! A pooled session lent to one plugin query: whatever the query leaves
//! behind in the session is reset before anyone else uses it, and a query
//! its caller abandoned is cancelled on the server.

use std::time::Duration;

use tokio_postgres::Client;

use super::connection::{self, CancelOnDrop, ServerConnection};
use super::error::SqlError;
use super::executor::{self, ResultLimits};
use crate::runtime::{QueryResult, SqlValue};

/// Runs a read-only query on `client`, a session on `server`, and resets the
/// session. Returns the result and whether the session may serve again.
///
/// # Guarantees
/// - The query runs in a read-only transaction that is rolled back.
/// - `DISCARD ALL` then resets the session: prepared statements, advisory
///   locks, settings and temporary tables go. A session that cannot be
///   reset is not reusable.
/// - A result over `limits` stops the query on the server.
/// - Dropped before it finishes (the plugin's deadline passed), it cancels
///   the query on the server.
pub async fn query(
    client: &mut Client,
    server: &ServerConnection,
    statement: &str,
    params: &[SqlValue],
    timeout: Duration,
    limits: ResultLimits,
) -> (Result<QueryResult, SqlError>, bool) {
    let running = CancelOnDrop::new(client, server);
    let result = executor::query_read_only(client, statement, params, timeout, limits).await;
    running.disarm();
    if let Err(SqlError::QueryResultTooLarge { .. }) = &result {
        // Stop the rest of the result rather than wait for it to stream by.
        connection::cancel(client.cancel_token(), server).await;
    }
    let reusable = client.batch_execute("DISCARD ALL").await.is_ok();
    (result, reusable)
}
