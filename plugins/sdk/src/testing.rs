//! [`TestHost`]: an in-memory [`Host`] for native unit tests and benchmarks.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::SystemTime;

use serde_json::Value;

use crate::context::{Host, Level};
use crate::kind::GroupVersionKind;
use crate::object::Object;
use crate::selector::LabelSelector;
use crate::sql::{QueryResult, SqlValue};

/// One log record a plugin emitted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogRecord {
    /// Its level.
    pub level: Level,
    /// Its message.
    pub message: String,
    /// Its key/value fields, in order.
    pub fields: Vec<(String, String)>,
}

impl LogRecord {
    /// The value of field `key`, if present.
    #[must_use]
    pub fn field(&self, key: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// One query a plugin ran.
#[derive(Debug, Clone, PartialEq)]
pub struct QueryRecord {
    /// The server it named.
    pub server: String,
    /// The database it named.
    pub database: Option<String>,
    /// The statement text.
    pub statement: String,
    /// The bound parameters.
    pub params: Vec<SqlValue>,
}

type ObjectKey = (GroupVersionKind, Option<String>, String);

/// An in-memory host: cached objects keyed by kind, namespace and name (with
/// label-selector filtering on list), canned SQL results, captured log
/// records and queries, and a fixed clock.
///
/// ```
/// use serde_json::json;
/// use wasm_operator_sdk::{Context, GroupVersionKind, TestHost};
///
/// let host = TestHost::new().with_object(json!({
///     "apiVersion": "v1", "kind": "ConfigMap",
///     "metadata": {"name": "audience", "namespace": "demo", "labels": {"app": "web"}},
///     "data": {"who": "team"}
/// }));
/// let ctx = Context::new(&host);
/// let config_maps = GroupVersionKind::core("v1", "ConfigMap");
/// let found = ctx.get(&config_maps, Some("demo"), "audience").unwrap().unwrap();
/// assert_eq!(found.str_at("/data/who"), Some("team"));
/// assert_eq!(ctx.list(&config_maps, None, "app=web").unwrap().len(), 1);
/// ```
#[derive(Debug)]
pub struct TestHost {
    objects: BTreeMap<ObjectKey, Value>,
    read_errors: BTreeMap<GroupVersionKind, String>,
    query_results: Vec<(String, Result<QueryResult, String>)>,
    now: SystemTime,
    logs: Mutex<Vec<LogRecord>>,
    queries: Mutex<Vec<QueryRecord>>,
}

impl Default for TestHost {
    fn default() -> Self {
        Self::new()
    }
}

impl TestHost {
    /// An empty host whose clock reads 2025-01-01T00:00:00Z.
    #[must_use]
    pub fn new() -> Self {
        Self {
            objects: BTreeMap::new(),
            read_errors: BTreeMap::new(),
            query_results: Vec::new(),
            now: SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_735_689_600),
            logs: Mutex::new(Vec::new()),
            queries: Mutex::new(Vec::new()),
        }
    }

    /// Adds a cached object, keyed by its `apiVersion`, `kind`,
    /// `metadata.namespace` and `metadata.name`.
    #[must_use]
    pub fn with_object(mut self, object: Value) -> Self {
        let wrapped = Object::new(object);
        let key = (
            wrapped.gvk(),
            wrapped.namespace().map(str::to_owned),
            wrapped.name().to_owned(),
        );
        self.objects.insert(key, wrapped.into_value());
        self
    }

    /// Makes every read of `kind` fail with `message`, as a host does for a
    /// kind that is not granted.
    #[must_use]
    pub fn with_read_error(mut self, kind: GroupVersionKind, message: impl Into<String>) -> Self {
        self.read_errors.insert(kind, message.into());
        self
    }

    /// Answers queries whose statement is exactly `statement` with `result`.
    /// Other statements fail with a message naming them.
    #[must_use]
    pub fn with_query_result(
        mut self,
        statement: impl Into<String>,
        result: Result<QueryResult, String>,
    ) -> Self {
        self.query_results.push((statement.into(), result));
        self
    }

    /// Sets the clock.
    #[must_use]
    pub fn with_now(mut self, now: SystemTime) -> Self {
        self.now = now;
        self
    }

    /// The log records emitted so far.
    #[must_use]
    pub fn logs(&self) -> Vec<LogRecord> {
        lock(&self.logs).clone()
    }

    /// The queries run so far.
    #[must_use]
    pub fn queries(&self) -> Vec<QueryRecord> {
        lock(&self.queries).clone()
    }

    fn check_read(&self, kind: &GroupVersionKind) -> Result<(), String> {
        match self.read_errors.get(kind) {
            Some(message) => Err(message.clone()),
            None => Ok(()),
        }
    }
}

/// Locks a mutex, recovering the data if a panicking test poisoned it.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Host for TestHost {
    fn log(&self, level: Level, message: &str, fields: &[(&str, &str)]) {
        lock(&self.logs).push(LogRecord {
            level,
            message: message.to_owned(),
            fields: fields
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        });
    }

    fn get(
        &self,
        kind: &GroupVersionKind,
        namespace: Option<&str>,
        name: &str,
    ) -> Result<Option<String>, String> {
        self.check_read(kind)?;
        let key = (kind.clone(), namespace.map(str::to_owned), name.to_owned());
        Ok(self.objects.get(&key).map(ToString::to_string))
    }

    fn list(
        &self,
        kind: &GroupVersionKind,
        namespace: Option<&str>,
        label_selector: &str,
    ) -> Result<Vec<String>, String> {
        self.check_read(kind)?;
        let selector = LabelSelector::parse(label_selector).map_err(|e| e.to_string())?;
        Ok(self
            .objects
            .iter()
            .filter(|((k, ns, _), _)| {
                k == kind && (namespace.is_none() || ns.as_deref() == namespace)
            })
            .filter(|(_, value)| selector.matches(&Object::new((*value).clone()).labels()))
            .map(|(_, value)| value.to_string())
            .collect())
    }

    fn query(
        &self,
        server: &str,
        database: Option<&str>,
        statement: &str,
        params: &[SqlValue],
    ) -> Result<QueryResult, String> {
        lock(&self.queries).push(QueryRecord {
            server: server.to_owned(),
            database: database.map(str::to_owned),
            statement: statement.to_owned(),
            params: params.to_vec(),
        });
        self.query_results
            .iter()
            .find(|(canned, _)| canned == statement)
            .map(|(_, result)| result.clone())
            .unwrap_or_else(|| Err(format!("TestHost has no canned result for {statement:?}")))
    }

    fn now(&self) -> SystemTime {
        self.now
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::context::Context;

    fn config_map(name: &str, namespace: &str, app: &str) -> Value {
        json!({"apiVersion": "v1", "kind": "ConfigMap",
               "metadata": {"name": name, "namespace": namespace, "labels": {"app": app}}})
    }

    #[test]
    fn list_filters_by_kind_namespace_and_selector() {
        let host = TestHost::new()
            .with_object(config_map("a", "one", "web"))
            .with_object(config_map("b", "two", "web"))
            .with_object(config_map("c", "one", "db"));
        let ctx = Context::new(&host);
        let kind = GroupVersionKind::core("v1", "ConfigMap");
        let names = |ns, sel| -> Vec<String> {
            ctx.list(&kind, ns, sel)
                .unwrap()
                .iter()
                .map(|o| o.name().to_owned())
                .collect()
        };
        assert_eq!(
            names(None, ""),
            ["a", "c", "b"],
            "sorted by namespace, then name"
        );
        assert_eq!(names(Some("one"), ""), ["a", "c"]);
        assert_eq!(names(None, "app=web"), ["a", "b"]);
        assert!(
            ctx.list(&GroupVersionKind::core("v1", "Secret"), None, "")
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn read_error_and_missing_object_are_told_apart() {
        let kind = GroupVersionKind::core("v1", "Secret");
        let host = TestHost::new().with_read_error(kind.clone(), "kind v1 Secret is not granted");
        let ctx = Context::new(&host);
        let error = ctx.get(&kind, Some("x"), "y").unwrap_err();
        assert!(error.to_string().contains("not granted"));
        let config_maps = GroupVersionKind::core("v1", "ConfigMap");
        assert_eq!(ctx.get(&config_maps, Some("x"), "y").unwrap(), None);
    }

    #[test]
    fn queries_get_canned_results_and_are_recorded() {
        let host = TestHost::new().with_query_result(
            "SELECT 1 AS one",
            Ok(QueryResult::new(["one"]).row(vec![SqlValue::Int(1)])),
        );
        let ctx = Context::new(&host);
        let result = ctx
            .query("infra/main", None, "SELECT 1 AS one", &[])
            .unwrap();
        assert_eq!(result.get(0, "one"), Some(&SqlValue::Int(1)));
        assert!(
            ctx.query("infra/main", None, "SELECT 2", &["x".into()])
                .is_err()
        );
        let queries = host.queries();
        assert_eq!(queries.len(), 2);
        assert_eq!(queries[1].params, vec![SqlValue::Text("x".into())]);
    }

    #[test]
    fn logs_are_captured_with_fields() {
        let host = TestHost::new();
        Context::new(&host).info("hello", &[("k", "v")]);
        let logs = host.logs();
        assert_eq!(logs[0].level, Level::Info);
        assert_eq!(logs[0].field("k"), Some("v"));
    }
}
