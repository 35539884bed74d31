//! Runs plugins' SQL on PostgreSQL: ordered plans from their decisions and
//! read-only queries from the `sql` import.
//!
//! Statements are always sent with bound parameters, never spliced. A
//! statement marked sensitive is never logged, and an error about it reports
//! only its summary and SQLSTATE, since PostgreSQL may echo statement text
//! (and with it a password verifier) in its messages.

use std::time::Duration;

use tokio_postgres::Client;

use super::error::{SqlError, db_message, sqlstate};
use super::reader::READER_ROLE;
use super::values::{as_params, bind, row_values};
use futures::StreamExt;

use crate::runtime::{QueryResult, SqlPlan, SqlStatement, SqlValue, sql_value_size};

/// How far a plan got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlanReport {
    /// Statements executed successfully.
    pub executed: usize,
    /// Transactions committed (groups of transactional statements).
    pub transactions: usize,
}

/// Runs a plan in order: consecutive transactional statements in one
/// transaction, each non-transactional statement alone; stops at the first
/// failure.
///
/// # Errors
/// [`SqlError::Statement`] or [`SqlError::Bind`] for the first statement
/// that failed; its transaction group is rolled back.
pub async fn run_plan(client: &mut Client, plan: &SqlPlan) -> Result<PlanReport, SqlError> {
    let mut report = PlanReport {
        executed: 0,
        transactions: 0,
    };
    let statements: Vec<(usize, &SqlStatement)> = plan.statements.iter().enumerate().collect();
    for group in statements.chunk_by(|(_, a), (_, b)| !a.non_transactional && !b.non_transactional)
    {
        if group.len() == 1 && group[0].1.non_transactional {
            let (index, statement) = group[0];
            tracing::info!(server = %plan.server, sql = %statement, "running SQL outside a transaction");
            execute(client, index, statement).await?;
            report.executed += 1;
            continue;
        }
        let transaction = client
            .transaction()
            .await
            .map_err(|e| failed(group[0].0, group[0].1, &e))?;
        for &(index, statement) in group {
            tracing::info!(server = %plan.server, sql = %statement, "running SQL");
            execute(transaction.client(), index, statement).await?;
        }
        let (last_index, last) = group[group.len() - 1];
        transaction
            .commit()
            .await
            .map_err(|e| failed(last_index, last, &e))?;
        report.executed += group.len();
        report.transactions += 1;
    }
    Ok(report)
}

/// How much of a query's result a plugin may receive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResultLimits {
    /// Rows at most.
    pub max_rows: usize,
    /// Bytes of values at most (see [`sql_value_size`]).
    pub max_bytes: usize,
}

/// Runs one read-only query in a read-only transaction with a statement
/// timeout, as the [reader role](super::reader) (set it up first with
/// [`prepare`](super::reader::prepare)). Rows are read as they arrive and the query is stopped at the
/// first row past `limits`, so the host never holds more than that.
///
/// # Errors
/// [`SqlError::Query`] with the server's message (writes fail with SQLSTATE
/// 25006), [`SqlError::QueryResultTooLarge`], or [`SqlError::UnsupportedColumn`].
pub async fn query_read_only(
    client: &mut Client,
    statement: &str,
    params: &[SqlValue],
    timeout: Duration,
    limits: ResultLimits,
) -> Result<QueryResult, SqlError> {
    let query_error = |e: tokio_postgres::Error| SqlError::Query {
        code: sqlstate(&e),
        message: db_message(&e),
    };
    let transaction = client
        .build_transaction()
        .read_only(true)
        .start()
        .await
        .map_err(query_error)?;
    transaction
        .batch_execute(&format!(
            "SET LOCAL statement_timeout = {}; SET LOCAL ROLE {READER_ROLE}",
            timeout.as_millis()
        ))
        .await
        .map_err(query_error)?;
    let prepared = transaction.prepare(statement).await.map_err(query_error)?;
    let binds = bind(0, params, prepared.params())?;
    let stream = transaction
        .query_raw(&prepared, as_params(&binds))
        .await
        .map_err(query_error)?;
    let mut stream = std::pin::pin!(stream);
    let (mut rows, mut bytes) = (Vec::new(), 0usize);
    while let Some(row) = stream.next().await {
        let values = row_values(&row.map_err(query_error)?)?;
        bytes += values.iter().map(sql_value_size).sum::<usize>();
        if rows.len() == limits.max_rows {
            return Err(SqlError::QueryResultTooLarge {
                limit: limits.max_rows,
                what: "rows",
            });
        }
        if bytes > limits.max_bytes {
            return Err(SqlError::QueryResultTooLarge {
                limit: limits.max_bytes,
                what: "bytes",
            });
        }
        rows.push(values);
    }
    // Dropping the transaction rolls it back: nothing a query does persists.
    drop(transaction);
    let columns = prepared
        .columns()
        .iter()
        .map(|c| c.name().to_owned())
        .collect();
    Ok(QueryResult { columns, rows })
}

async fn execute(client: &Client, index: usize, statement: &SqlStatement) -> Result<u64, SqlError> {
    if statement.params.is_empty() {
        return client
            .execute(statement.statement.as_str(), &[])
            .await
            .map_err(|e| failed(index, statement, &e));
    }
    let prepared = client
        .prepare(&statement.statement)
        .await
        .map_err(|e| failed(index, statement, &e))?;
    let binds = bind(index, &statement.params, prepared.params())?;
    client
        .execute(&prepared, &as_params(&binds))
        .await
        .map_err(|e| failed(index, statement, &e))
}

fn failed(index: usize, statement: &SqlStatement, error: &tokio_postgres::Error) -> SqlError {
    SqlError::Statement {
        index,
        shown: if statement.sensitive {
            statement.summary.clone()
        } else {
            statement.statement.clone()
        },
        code: sqlstate(error),
        message: if statement.sensitive {
            "(message withheld: the statement carries a secret)".to_owned()
        } else {
            db_message(error)
        },
    }
}
