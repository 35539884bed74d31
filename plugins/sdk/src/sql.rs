//! SQL values, query results, plans of statements, and identifier and literal quoting.

/// The longest identifier PostgreSQL keeps without truncating (`NAMEDATALEN - 1`).
pub const MAX_IDENTIFIER_BYTES: usize = 63;

/// A value bound to an SQL parameter or read from a result column.
#[derive(Debug, Clone, PartialEq)]
pub enum SqlValue {
    /// SQL `NULL`.
    Null,
    /// `boolean`.
    Boolean(bool),
    /// Any integer type.
    Int(i64),
    /// Any floating-point type.
    Float(f64),
    /// Text types.
    Text(String),
    /// JSON text, sent and received as `jsonb`.
    Json(String),
    /// `bytea`.
    Bytes(Vec<u8>),
}

impl SqlValue {
    /// The text, if this is a `Text` value.
    #[must_use]
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Self::Text(text) => Some(text),
            _ => None,
        }
    }

    /// The integer, if this is an `Int` value.
    #[must_use]
    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Self::Int(value) => Some(*value),
            _ => None,
        }
    }

    /// The boolean, if this is a `Boolean` value.
    #[must_use]
    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Self::Boolean(value) => Some(*value),
            _ => None,
        }
    }
}

impl From<&str> for SqlValue {
    fn from(value: &str) -> Self {
        Self::Text(value.to_owned())
    }
}

impl From<String> for SqlValue {
    fn from(value: String) -> Self {
        Self::Text(value)
    }
}

impl From<i64> for SqlValue {
    fn from(value: i64) -> Self {
        Self::Int(value)
    }
}

impl From<bool> for SqlValue {
    fn from(value: bool) -> Self {
        Self::Boolean(value)
    }
}

/// The rows a read-only query returned.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct QueryResult {
    /// Column names, in order.
    pub columns: Vec<String>,
    /// Rows; each holds one value per column.
    pub rows: Vec<Vec<SqlValue>>,
}

impl QueryResult {
    /// An empty result with these columns.
    #[must_use]
    pub fn new<I, S>(columns: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self {
            columns: columns.into_iter().map(Into::into).collect(),
            rows: Vec::new(),
        }
    }

    /// Adds a row (for canned results in tests).
    #[must_use]
    pub fn row(mut self, values: Vec<SqlValue>) -> Self {
        self.rows.push(values);
        self
    }

    /// The value of `column` in row `row`.
    #[must_use]
    pub fn get(&self, row: usize, column: &str) -> Option<&SqlValue> {
        let index = self.columns.iter().position(|c| c == column)?;
        self.rows.get(row)?.get(index)
    }

    /// Whether no rows came back.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }
}

/// One statement of an [`SqlPlan`].
#[derive(Debug, Clone, PartialEq)]
pub struct SqlStatement {
    /// The statement with `$1`, `$2`, … placeholders; identifiers quoted with
    /// [`quote_identifier`].
    pub statement: String,
    /// Values for the placeholders.
    pub params: Vec<SqlValue>,
    /// Must run outside a transaction (`CREATE DATABASE`, `DROP DATABASE`).
    pub non_transactional: bool,
    /// Carries a secret: the host logs only `summary`, never the text or params.
    pub sensitive: bool,
    /// A short description safe to log (`create role "foo"`).
    pub summary: String,
}

impl SqlStatement {
    /// A transactional, non-sensitive statement with a log-safe summary.
    #[must_use]
    pub fn new(statement: impl Into<String>, summary: impl Into<String>) -> Self {
        Self {
            statement: statement.into(),
            params: Vec::new(),
            non_transactional: false,
            sensitive: false,
            summary: summary.into(),
        }
    }

    /// Binds the next `$n` placeholder.
    #[must_use]
    pub fn param(mut self, value: impl Into<SqlValue>) -> Self {
        self.params.push(value.into());
        self
    }

    /// Marks the statement as carrying a secret (a password verifier).
    #[must_use]
    pub fn sensitive(mut self) -> Self {
        self.sensitive = true;
        self
    }

    /// Marks the statement as one that must run alone, outside a transaction.
    #[must_use]
    pub fn non_transactional(mut self) -> Self {
        self.non_transactional = true;
        self
    }
}

/// An ordered list of statements for one granted server.
///
/// The host runs consecutive transactional statements in one transaction and
/// each non-transactional statement alone, stopping at the first failure.
#[derive(Debug, Clone, PartialEq)]
pub struct SqlPlan {
    /// `namespace/name` of a granted server.
    pub server: String,
    /// Database to connect to; none: the server's maintenance database.
    pub database: Option<String>,
    /// The statements, in order.
    pub statements: Vec<SqlStatement>,
}

impl SqlPlan {
    /// An empty plan for `server`'s maintenance database.
    #[must_use]
    pub fn new(server: impl Into<String>) -> Self {
        Self {
            server: server.into(),
            database: None,
            statements: Vec::new(),
        }
    }

    /// Connects to `database` instead of the maintenance database.
    #[must_use]
    pub fn database(mut self, database: impl Into<String>) -> Self {
        self.database = Some(database.into());
        self
    }

    /// Appends a statement.
    #[must_use]
    pub fn statement(mut self, statement: SqlStatement) -> Self {
        self.statements.push(statement);
        self
    }

    /// Whether the plan has no statements (the host skips empty plans).
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.statements.is_empty()
    }
}

/// A name or literal cannot be quoted safely.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QuoteError {
    /// PostgreSQL has no empty identifiers.
    #[error("an SQL identifier must not be empty")]
    EmptyIdentifier,
    /// PostgreSQL strings cannot contain NUL.
    #[error("{what} must not contain a NUL character")]
    Nul {
        /// `an SQL identifier` or `an SQL literal`.
        what: &'static str,
    },
    /// PostgreSQL would silently truncate the identifier.
    #[error("SQL identifier {identifier:?} is {bytes} bytes long; PostgreSQL allows at most 63")]
    TooLong {
        /// The identifier as given.
        identifier: String,
        /// Its length in bytes.
        bytes: usize,
    },
}

/// Quotes an SQL identifier: wraps it in double quotes and doubles any
/// double quote inside (`a"b` → `"a""b"`).
///
/// # Errors
/// [`QuoteError`] when the identifier is empty, contains NUL, or is longer
/// than [`MAX_IDENTIFIER_BYTES`] (PostgreSQL would truncate it, so two names
/// could silently become one).
pub fn quote_identifier(identifier: &str) -> Result<String, QuoteError> {
    if identifier.is_empty() {
        return Err(QuoteError::EmptyIdentifier);
    }
    if identifier.contains('\0') {
        return Err(QuoteError::Nul {
            what: "an SQL identifier",
        });
    }
    if identifier.len() > MAX_IDENTIFIER_BYTES {
        return Err(QuoteError::TooLong {
            identifier: identifier.to_owned(),
            bytes: identifier.len(),
        });
    }
    Ok(postgres_protocol::escape::escape_identifier(identifier))
}

/// Quotes an SQL string literal: single quotes doubled, and the `E'…'` form
/// with doubled backslashes when it contains a backslash, so it is safe
/// whatever `standard_conforming_strings` says. Prefer parameters; use this
/// only where PostgreSQL takes no parameter (`CREATE ROLE … PASSWORD '…'`).
///
/// # Errors
/// [`QuoteError::Nul`] when the text contains NUL.
pub fn quote_literal(text: &str) -> Result<String, QuoteError> {
    if text.contains('\0') {
        return Err(QuoteError::Nul {
            what: "an SQL literal",
        });
    }
    // libpq's escaping prefixes the `E'…'` form with a space; drop it.
    Ok(postgres_protocol::escape::escape_literal(text)
        .trim_start()
        .to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifier_quotes_are_doubled() {
        assert_eq!(quote_identifier("a\"b").unwrap(), "\"a\"\"b\"");
        assert_eq!(quote_identifier("foo-db").unwrap(), "\"foo-db\"");
    }

    #[test]
    fn identifier_of_64_bytes_is_refused_and_63_accepted() {
        assert!(quote_identifier(&"x".repeat(63)).is_ok());
        let error = quote_identifier(&"x".repeat(64)).unwrap_err();
        assert!(matches!(error, QuoteError::TooLong { bytes: 64, .. }));
        assert!(error.to_string().contains("at most 63"));
    }

    #[test]
    fn identifier_with_nul_or_empty_is_refused() {
        assert_eq!(
            quote_identifier("a\0b").unwrap_err(),
            QuoteError::Nul {
                what: "an SQL identifier"
            }
        );
        assert_eq!(
            quote_identifier("").unwrap_err(),
            QuoteError::EmptyIdentifier
        );
    }

    #[test]
    fn literal_quotes_and_backslashes_are_escaped() {
        assert_eq!(quote_literal("it's").unwrap(), "'it''s'");
        assert_eq!(quote_literal("a\\b").unwrap(), "E'a\\\\b'");
        assert!(quote_literal("a\0").is_err());
    }

    #[test]
    fn statement_builder_sets_flags_and_params() {
        let plan = SqlPlan::new("infra/main").database("app").statement(
            SqlStatement::new(
                "GRANT CONNECT ON DATABASE \"app\" TO \"foo\"",
                "grant connect to \"foo\"",
            )
            .param("unused")
            .sensitive(),
        );
        let statement = &plan.statements[0];
        assert!(statement.sensitive && !statement.non_transactional);
        assert_eq!(statement.params, vec![SqlValue::Text("unused".into())]);
        assert_eq!(plan.database.as_deref(), Some("app"));
    }
}
