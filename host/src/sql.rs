//! Runs plugins' SQL on PostgreSQL: ordered plans from their decisions and
//! read-only queries from the `sql` import.
//!
//! Statements are always sent with bound parameters, never spliced. A
//! statement marked sensitive is never logged, and an error about it reports
//! only its summary and SQLSTATE, since PostgreSQL may echo statement text
//! (and with it a password verifier) in its messages.

use std::error::Error as _;
use std::fmt;
use std::time::Duration;

use bytes::{BufMut, BytesMut};
use postgres_api::SslMode;
use tokio_postgres::types::{IsNull, ToSql, Type, to_sql_checked};
use tokio_postgres::{Client, NoTls, Row};

use crate::runtime::{QueryResult, SqlPlan, SqlStatement, SqlValue};

/// How to reach a PostgreSQL server as its administrator.
#[derive(Clone)]
pub struct ServerConnection {
    /// Host name or address.
    pub host: String,
    /// TCP port.
    pub port: u16,
    /// Administrator role.
    pub user: String,
    /// Its password; never shown by `Debug`.
    pub password: String,
    /// Maintenance database used when a plan names none.
    pub maintenance_database: String,
    /// TLS towards the server.
    pub ssl_mode: SslMode,
}

impl fmt::Debug for ServerConnection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerConnection")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("user", &self.user)
            .field("password", &"<redacted>")
            .field("maintenance_database", &self.maintenance_database)
            .field("ssl_mode", &self.ssl_mode)
            .finish()
    }
}

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
    /// A result column has a type the contract cannot carry.
    #[error("result column {column} has type {ty}; cast it in the query (e.g. {column}::text)")]
    UnsupportedColumn {
        /// Column name.
        column: String,
        /// PostgreSQL type name.
        ty: String,
    },
}

/// Opens a connection to `database` (or the maintenance database).
///
/// # Errors
/// [`SqlError::Connect`] naming the server and the reason.
pub async fn connect(
    server: &ServerConnection,
    database: Option<&str>,
) -> Result<Client, SqlError> {
    let database = database.unwrap_or(&server.maintenance_database);
    let mut config = tokio_postgres::Config::new();
    config
        .host(&server.host)
        .port(server.port)
        .user(&server.user)
        .password(&server.password)
        .dbname(database)
        .application_name("wasm-operator")
        .connect_timeout(Duration::from_secs(10));
    let connect_error = |e: tokio_postgres::Error| SqlError::Connect {
        host: server.host.clone(),
        port: server.port,
        database: database.to_owned(),
        reason: db_message(&e),
    };
    let client = match server.ssl_mode {
        SslMode::Disable => {
            let (client, connection) = config.connect(NoTls).await.map_err(connect_error)?;
            tokio::spawn(drive(connection));
            client
        }
        mode => {
            config.ssl_mode(if mode == SslMode::Require {
                tokio_postgres::config::SslMode::Require
            } else {
                tokio_postgres::config::SslMode::Prefer
            });
            let tls =
                tokio_postgres_rustls::MakeRustlsConnect::new(tls::unverified_client_config());
            let (client, connection) = config.connect(tls).await.map_err(connect_error)?;
            tokio::spawn(drive(connection));
            client
        }
    };
    Ok(client)
}

/// Runs a connection's I/O until it closes.
async fn drive<S, T>(connection: tokio_postgres::Connection<S, T>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    if let Err(error) = connection.await {
        tracing::debug!(error = %db_message(&error), "PostgreSQL connection closed");
    }
}

/// TLS as libpq's `prefer` and `require` do it: encrypted, without checking
/// the server's certificate (PostgreSQL servers mostly present self-signed
/// ones).
mod tls {
    use std::sync::{Arc, LazyLock};

    use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
    use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
    use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
    use rustls::{ClientConfig, DigitallySignedStruct, SignatureScheme};

    /// Accepts any certificate; still checks the handshake signatures.
    #[derive(Debug)]
    struct Unverified(WebPkiSupportedAlgorithms);

    impl ServerCertVerifier for Unverified {
        fn verify_server_cert(
            &self,
            _: &CertificateDer<'_>,
            _: &[CertificateDer<'_>],
            _: &ServerName<'_>,
            _: &[u8],
            _: UnixTime,
        ) -> Result<ServerCertVerified, rustls::Error> {
            Ok(ServerCertVerified::assertion())
        }

        fn verify_tls12_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0)
        }

        fn verify_tls13_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0)
        }

        fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
            self.0.supported_schemes()
        }
    }

    /// The client configuration, built once: every new connection uses it.
    pub(super) fn unverified_client_config() -> ClientConfig {
        static CONFIG: LazyLock<ClientConfig> = LazyLock::new(|| {
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            let algorithms = provider.signature_verification_algorithms;
            ClientConfig::builder_with_provider(Arc::clone(&provider) as Arc<CryptoProvider>)
                .with_safe_default_protocol_versions()
                .expect("ring supports the default protocol versions")
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(Unverified(algorithms)))
                .with_no_client_auth()
        });
        CONFIG.clone()
    }
}

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

/// Runs one read-only query in a read-only transaction with a statement timeout.
///
/// # Errors
/// [`SqlError::Query`] with the server's message (writes fail with SQLSTATE
/// 25006), or [`SqlError::UnsupportedColumn`].
pub async fn query_read_only(
    client: &mut Client,
    statement: &str,
    params: &[SqlValue],
    timeout: Duration,
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
            "SET LOCAL statement_timeout = {}",
            timeout.as_millis()
        ))
        .await
        .map_err(query_error)?;
    let prepared = transaction.prepare(statement).await.map_err(query_error)?;
    let binds = bind(0, params, prepared.params())?;
    let rows = transaction
        .query(
            &prepared,
            &binds
                .iter()
                .map(|b| b as &(dyn ToSql + Sync))
                .collect::<Vec<_>>(),
        )
        .await
        .map_err(query_error)?;
    // Dropping the transaction rolls it back: nothing a query does persists.
    drop(transaction);
    let columns = prepared
        .columns()
        .iter()
        .map(|c| c.name().to_owned())
        .collect();
    let rows = rows.iter().map(row_values).collect::<Result<_, _>>()?;
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
        .execute(
            &prepared,
            &binds
                .iter()
                .map(|b| b as &(dyn ToSql + Sync))
                .collect::<Vec<_>>(),
        )
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

fn sqlstate(error: &tokio_postgres::Error) -> String {
    error
        .code()
        .map_or_else(|| "-----".to_owned(), |c| c.code().to_owned())
}

/// The server's own message: `Display` of a tokio-postgres error says only
/// "db error".
fn db_message(error: &tokio_postgres::Error) -> String {
    match error.as_db_error() {
        Some(db) => db.message().to_owned(),
        None => error
            .source()
            .map_or_else(|| error.to_string(), |s| format!("{error}: {s}")),
    }
}

/// A parameter converted to the type PostgreSQL inferred for it.
#[derive(Debug)]
enum Bound {
    Null,
    Bool(bool),
    I16(i16),
    I32(i32),
    I64(i64),
    F32(f32),
    F64(f64),
    Text(String),
    Jsonb(String),
    Bytes(Vec<u8>),
}

fn bind(index: usize, params: &[SqlValue], types: &[Type]) -> Result<Vec<Bound>, SqlError> {
    params
        .iter()
        .zip(types)
        .enumerate()
        .map(|(i, (value, ty))| {
            let mismatch = |value: &'static str| SqlError::Bind {
                index,
                param: i + 1,
                value,
                expected: ty.name().to_owned(),
            };
            Ok(match value {
                SqlValue::Null => Bound::Null,
                SqlValue::Boolean(b) if *ty == Type::BOOL => Bound::Bool(*b),
                SqlValue::Boolean(_) => return Err(mismatch("boolean")),
                SqlValue::Int(n) => match *ty {
                    Type::INT2 => {
                        Bound::I16(i16::try_from(*n).map_err(|_| mismatch("int out of range"))?)
                    }
                    Type::INT4 | Type::OID => {
                        Bound::I32(i32::try_from(*n).map_err(|_| mismatch("int out of range"))?)
                    }
                    Type::INT8 => Bound::I64(*n),
                    Type::FLOAT8 => Bound::F64(*n as f64),
                    Type::TEXT | Type::VARCHAR => Bound::Text(n.to_string()),
                    _ => return Err(mismatch("int")),
                },
                SqlValue::Float(x) => match *ty {
                    Type::FLOAT4 => Bound::F32(*x as f32),
                    Type::FLOAT8 => Bound::F64(*x),
                    _ => return Err(mismatch("float")),
                },
                SqlValue::Text(s) => match *ty {
                    Type::TEXT | Type::VARCHAR | Type::NAME | Type::BPCHAR | Type::UNKNOWN => {
                        Bound::Text(s.clone())
                    }
                    Type::JSON | Type::JSONB => Bound::Jsonb(s.clone()),
                    _ => return Err(mismatch("text")),
                },
                SqlValue::Json(s) => match *ty {
                    Type::JSON | Type::JSONB | Type::TEXT => Bound::Jsonb(s.clone()),
                    _ => return Err(mismatch("json")),
                },
                SqlValue::Bytes(b) if *ty == Type::BYTEA => Bound::Bytes(b.clone()),
                SqlValue::Bytes(_) => return Err(mismatch("bytes")),
            })
        })
        .collect()
}

impl ToSql for Bound {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut BytesMut,
    ) -> Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        match self {
            Self::Null => return Ok(IsNull::Yes),
            Self::Bool(v) => v.to_sql(ty, out)?,
            Self::I16(v) => v.to_sql(ty, out)?,
            Self::I32(v) if *ty == Type::OID => (*v as u32).to_sql(ty, out)?,
            Self::I32(v) => v.to_sql(ty, out)?,
            Self::I64(v) => v.to_sql(ty, out)?,
            Self::F32(v) => v.to_sql(ty, out)?,
            Self::F64(v) => v.to_sql(ty, out)?,
            Self::Text(v) => {
                out.put_slice(v.as_bytes());
                IsNull::No
            }
            Self::Jsonb(v) => {
                // jsonb's binary format is a version byte followed by the text.
                if *ty == Type::JSONB {
                    out.put_u8(1);
                }
                out.put_slice(v.as_bytes());
                IsNull::No
            }
            Self::Bytes(v) => v.as_slice().to_sql(ty, out)?,
        };
        Ok(IsNull::No)
    }

    // Conversion was checked in `bind` against the prepared statement's types.
    fn accepts(_: &Type) -> bool {
        true
    }

    to_sql_checked!();
}

fn row_values(row: &Row) -> Result<Vec<SqlValue>, SqlError> {
    row.columns()
        .iter()
        .enumerate()
        .map(|(i, column)| {
            let ty = column.type_();
            let value = match *ty {
                Type::BOOL => row.get::<_, Option<bool>>(i).map(SqlValue::Boolean),
                Type::INT2 => row
                    .get::<_, Option<i16>>(i)
                    .map(|v| SqlValue::Int(v.into())),
                Type::INT4 => row
                    .get::<_, Option<i32>>(i)
                    .map(|v| SqlValue::Int(v.into())),
                Type::INT8 => row.get::<_, Option<i64>>(i).map(SqlValue::Int),
                Type::OID => row
                    .get::<_, Option<u32>>(i)
                    .map(|v| SqlValue::Int(v.into())),
                Type::FLOAT4 => row
                    .get::<_, Option<f32>>(i)
                    .map(|v| SqlValue::Float(v.into())),
                Type::FLOAT8 => row.get::<_, Option<f64>>(i).map(SqlValue::Float),
                Type::TEXT | Type::VARCHAR | Type::NAME | Type::BPCHAR => {
                    row.get::<_, Option<String>>(i).map(SqlValue::Text)
                }
                Type::BYTEA => row.get::<_, Option<Vec<u8>>>(i).map(SqlValue::Bytes),
                Type::JSON | Type::JSONB => row
                    .get::<_, Option<serde_json::Value>>(i)
                    .map(|v| SqlValue::Json(v.to_string())),
                _ => {
                    return Err(SqlError::UnsupportedColumn {
                        column: column.name().to_owned(),
                        ty: ty.name().to_owned(),
                    });
                }
            };
            Ok(value.unwrap_or(SqlValue::Null))
        })
        .collect()
}
