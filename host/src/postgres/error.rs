//! What can go wrong using a PostgreSQL server: running SQL on it
//! ([`SqlError`]), and finding and reaching it ([`ServerError`]).

use std::error::Error as _;

use crate::vocabulary::ServerKey;

/// What went wrong running SQL.
#[derive(Debug, thiserror::Error)]
pub enum SqlError {
    /// The server could not be reached or refused the login.
    #[error("cannot connect to PostgreSQL at {host}:{port} (database {database}): {reason}")]
    Connect {
        /// Host.
        host: String,
        /// Port.
        port: u16,
        /// Database.
        database: String,
        /// The server's or the network's message.
        reason: String,
    },
    /// A statement of a plan failed; statements before it in its
    /// transaction were rolled back, earlier groups stay applied.
    #[error("statement {index} of the SQL plan ({shown}) failed with SQLSTATE {code}: {message}")]
    Statement {
        /// Position of the statement in the plan, from 0.
        index: usize,
        /// The statement, or its summary when it is sensitive.
        shown: String,
        /// SQLSTATE, or `-----` when the failure was not the server's.
        code: String,
        /// The server's message; withheld for sensitive statements.
        message: String,
    },
    /// A parameter could not be bound to the type PostgreSQL expects.
    #[error("statement {index}: parameter ${param} ({value}) cannot be bound to type {expected}")]
    Bind {
        /// Position of the statement in the plan, from 0.
        index: usize,
        /// 1-based parameter number.
        param: usize,
        /// The kind of value given.
        value: &'static str,
        /// The type PostgreSQL inferred.
        expected: String,
    },
    /// A read-only query failed.
    #[error("query failed with SQLSTATE {code}: {message}")]
    Query {
        /// SQLSTATE.
        code: String,
        /// The server's message.
        message: String,
    },
    /// A query's result is larger than the plugin may receive; the query
    /// was stopped there.
    #[error(
        "the query's result exceeds the limit of {limit} {what} for one query; select fewer rows or columns (LIMIT, WHERE)"
    )]
    QueryResultTooLarge {
        /// The cap in force.
        limit: usize,
        /// `rows` or `bytes`.
        what: &'static str,
    },
    /// A result column has a type the contract cannot carry.
    #[error("result column {column} has type {ty}; cast it in the query (e.g. {column}::text)")]
    UnsupportedColumn {
        /// Column name.
        column: String,
        /// PostgreSQL type name.
        ty: String,
    },
}

/// Why a server could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// No PostgresServer of that name exists.
    #[error("PostgresServer {key} does not exist; create it or fix the reference")]
    NotFound {
        /// `namespace/name`.
        key: ServerKey,
    },
    /// The administrator Secret is missing or lacks a key.
    #[error("PostgresServer {key}: spec.adminCredentials: {reason}")]
    Credentials {
        /// `namespace/name`.
        key: ServerKey,
        /// What is wrong with the Secret.
        reason: String,
    },
    /// Reading the Secret failed.
    #[error("PostgresServer {key}: reading the administrator Secret failed: {source}")]
    Kube {
        /// `namespace/name`.
        key: ServerKey,
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
        key: ServerKey,
        /// What PostgreSQL said.
        #[source]
        source: SqlError,
    },
}

/// The SQLSTATE of an error, or `-----` when the failure was not the server's.
pub(super) fn sqlstate(error: &tokio_postgres::Error) -> String {
    error
        .code()
        .map_or_else(|| "-----".to_owned(), |c| c.code().to_owned())
}

/// The server's own message: `Display` of a tokio-postgres error says only
/// "db error".
pub(super) fn db_message(error: &tokio_postgres::Error) -> String {
    match error.as_db_error() {
        Some(db) => db.message().to_owned(),
        None => error
            .source()
            .map_or_else(|| error.to_string(), |s| format!("{error}: {s}")),
    }
}
