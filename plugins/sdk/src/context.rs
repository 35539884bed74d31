//! The host capabilities a plugin calls, behind a trait so plugin logic also runs natively.

use std::time::SystemTime;

use crate::error::{HostCall, HostError};
use crate::kind::GroupVersionKind;
use crate::object::{Object, parse_json};
use crate::sql::{QueryResult, SqlValue};

/// The severity of a log record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Level {
    /// Very detailed tracing.
    Trace,
    /// Debugging detail.
    Debug,
    /// Normal operation.
    Info,
    /// Something unexpected that the plugin handled.
    Warn,
    /// Something failed.
    Error,
}

/// The capabilities a host gives a plugin.
///
/// In a component the SDK implements this with the WIT imports; in native
/// tests and benchmarks use [`TestHost`](crate::TestHost) or your own
/// implementation. Plugin code reaches it only through [`Context`].
pub trait Host {
    /// Emits one log record with key/value fields.
    fn log(&self, level: Level, message: &str, fields: &[(&str, &str)]);

    /// Gets one cached object as JSON text; `Ok(None)` when it does not exist.
    ///
    /// # Errors
    /// The host's message, for example when the kind is not granted.
    fn get(
        &self,
        kind: &GroupVersionKind,
        namespace: Option<&str>,
        name: &str,
    ) -> Result<Option<String>, String>;

    /// Lists cached objects as JSON text, filtered by a label selector.
    ///
    /// # Errors
    /// The host's message, for example when the kind is not granted.
    fn list(
        &self,
        kind: &GroupVersionKind,
        namespace: Option<&str>,
        label_selector: &str,
    ) -> Result<Vec<String>, String>;

    /// Runs a read-only query on a granted server.
    ///
    /// # Errors
    /// The host's message (server not granted, SQL error, timeout).
    fn query(
        &self,
        server: &str,
        database: Option<&str>,
        statement: &str,
        params: &[SqlValue],
    ) -> Result<QueryResult, String>;

    /// The current time, used for condition transition times. Defaults to the
    /// system clock (WASI's wall clock in a component).
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }
}

/// What a plugin may call during one reconcile, finalize or admission decision.
///
/// Cheap to create and to pass around: it only borrows the [`Host`].
#[derive(Clone, Copy)]
pub struct Context<'h> {
    host: &'h dyn Host,
}

impl<'h> Context<'h> {
    /// A context backed by `host`.
    #[must_use]
    pub fn new(host: &'h dyn Host) -> Self {
        Self { host }
    }

    /// Emits one log record. The host tags it with the plugin and the object.
    pub fn log(&self, level: Level, message: &str, fields: &[(&str, &str)]) {
        self.host.log(level, message, fields);
    }

    /// Emits a debug record.
    pub fn debug(&self, message: &str, fields: &[(&str, &str)]) {
        self.log(Level::Debug, message, fields);
    }

    /// Emits an info record.
    pub fn info(&self, message: &str, fields: &[(&str, &str)]) {
        self.log(Level::Info, message, fields);
    }

    /// Emits a warning record.
    pub fn warn(&self, message: &str, fields: &[(&str, &str)]) {
        self.log(Level::Warn, message, fields);
    }

    /// Emits an error record.
    pub fn error(&self, message: &str, fields: &[(&str, &str)]) {
        self.log(Level::Error, message, fields);
    }

    /// Gets one object of a granted kind from the host's cache (never the API server).
    ///
    /// # Errors
    /// A [`HostError`] when the host refuses (kind not granted) or returns
    /// unparsable JSON; `?` makes it a retryable `KubeReadFailed` error.
    pub fn get(
        &self,
        kind: &GroupVersionKind,
        namespace: Option<&str>,
        name: &str,
    ) -> Result<Option<Object>, HostError> {
        let fail = |message: String| HostError {
            call: HostCall::KubeGet,
            message,
        };
        let Some(text) = self.host.get(kind, namespace, name).map_err(fail)? else {
            return Ok(None);
        };
        let value = parse_json(&text, "object").map_err(|e| fail(e.to_string()))?;
        Ok(Some(Object::new(value)))
    }

    /// Lists objects of a granted kind from the host's cache, optionally in
    /// one namespace, filtered by a label selector (`app=web,tier!=cache`;
    /// empty selects all).
    ///
    /// # Errors
    /// As for [`get`](Self::get), with call `KubeList`.
    pub fn list(
        &self,
        kind: &GroupVersionKind,
        namespace: Option<&str>,
        label_selector: &str,
    ) -> Result<Vec<Object>, HostError> {
        let fail = |message: String| HostError {
            call: HostCall::KubeList,
            message,
        };
        self.host
            .list(kind, namespace, label_selector)
            .map_err(fail)?
            .iter()
            .map(|text| {
                parse_json(text, "object")
                    .map(Object::new)
                    .map_err(|e| fail(e.to_string()))
            })
            .collect()
    }

    /// Runs a read-only query with `$1`, `$2`, … bound to `params` on the
    /// granted server `server` (`namespace/name`), against `database` (none:
    /// the maintenance database).
    ///
    /// # Errors
    /// A [`HostError`] with the host's message; `?` makes it a retryable
    /// `SqlQueryFailed` error.
    pub fn query(
        &self,
        server: &str,
        database: Option<&str>,
        statement: &str,
        params: &[SqlValue],
    ) -> Result<QueryResult, HostError> {
        self.host
            .query(server, database, statement, params)
            .map_err(|message| HostError {
                call: HostCall::SqlQuery,
                message,
            })
    }

    /// The current time according to the host.
    #[must_use]
    pub fn now(&self) -> SystemTime {
        self.host.now()
    }
}
