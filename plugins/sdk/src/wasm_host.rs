//! The [`Host`] of a running component: the WIT imports.
//!
//! Only the export glue creates it, and only inside a component. On native
//! targets wit-bindgen's import stubs panic, so native code must use another
//! `Host` (such as [`TestHost`](crate::TestHost)).

use crate::bindings::plugin::wasm_operator::plugin::{kube, log, sql, types};
use crate::context::{Host, Level};
use crate::kind::GroupVersionKind;
use crate::sql::{QueryResult, SqlValue};

/// Calls the host through the WIT imports.
pub(crate) struct WasmHost;

impl Host for WasmHost {
    fn log(&self, level: Level, message: &str, fields: &[(&str, &str)]) {
        let level = match level {
            Level::Trace => log::Level::Trace,
            Level::Debug => log::Level::Debug,
            Level::Info => log::Level::Info,
            Level::Warn => log::Level::Warn,
            Level::Error => log::Level::Error,
        };
        let fields: Vec<(String, String)> = fields
            .iter()
            .map(|(key, value)| ((*key).to_owned(), (*value).to_owned()))
            .collect();
        log::log(level, message, &fields);
    }

    fn get(
        &self,
        kind: &GroupVersionKind,
        namespace: Option<&str>,
        name: &str,
    ) -> Result<Option<String>, String> {
        kube::get(&to_wit_gvk(kind), namespace, name)
    }

    fn list(
        &self,
        kind: &GroupVersionKind,
        namespace: Option<&str>,
        label_selector: &str,
    ) -> Result<Vec<String>, String> {
        kube::list(&to_wit_gvk(kind), namespace, label_selector)
    }

    fn query(
        &self,
        server: &str,
        database: Option<&str>,
        statement: &str,
        params: &[SqlValue],
    ) -> Result<QueryResult, String> {
        let params: Vec<types::SqlValue> = params.iter().cloned().map(to_wit_sql_value).collect();
        let result = sql::query(server, database, statement, &params)?;
        Ok(QueryResult {
            columns: result.columns,
            rows: result
                .rows
                .into_iter()
                .map(|row| row.into_iter().map(from_wit_sql_value).collect())
                .collect(),
        })
    }
}

/// Calls the host through the imports of world `admission-only-plugin`:
/// `log` and `kube`, and no `sql` (the component does not import it, so it
/// must never reference it: a query is refused here instead).
pub(crate) struct AdmissionHost;

impl Host for AdmissionHost {
    fn log(&self, level: Level, message: &str, fields: &[(&str, &str)]) {
        WasmHost.log(level, message, fields);
    }

    fn get(
        &self,
        kind: &GroupVersionKind,
        namespace: Option<&str>,
        name: &str,
    ) -> Result<Option<String>, String> {
        WasmHost.get(kind, namespace, name)
    }

    fn list(
        &self,
        kind: &GroupVersionKind,
        namespace: Option<&str>,
        label_selector: &str,
    ) -> Result<Vec<String>, String> {
        WasmHost.list(kind, namespace, label_selector)
    }

    fn query(
        &self,
        server: &str,
        _database: Option<&str>,
        _statement: &str,
        _params: &[SqlValue],
    ) -> Result<QueryResult, String> {
        Err(format!(
            "an admission-only plugin cannot query databases (server {server}); \
             export a reconciler with admission (export_admission_plugin!) to use SQL"
        ))
    }
}

/// Converts a kind to its WIT record.
pub(crate) fn to_wit_gvk(kind: &GroupVersionKind) -> types::GroupVersionKind {
    types::GroupVersionKind {
        group: kind.group.clone(),
        version: kind.version.clone(),
        kind: kind.kind.clone(),
    }
}

/// Converts an SQL value to its WIT variant.
pub(crate) fn to_wit_sql_value(value: SqlValue) -> types::SqlValue {
    match value {
        SqlValue::Null => types::SqlValue::Null,
        SqlValue::Boolean(v) => types::SqlValue::Boolean(v),
        SqlValue::Int(v) => types::SqlValue::Int(v),
        SqlValue::Float(v) => types::SqlValue::Float(v),
        SqlValue::Text(v) => types::SqlValue::Text(v),
        SqlValue::Json(v) => types::SqlValue::Json(v),
        SqlValue::Bytes(v) => types::SqlValue::Bytes(v),
    }
}

fn from_wit_sql_value(value: types::SqlValue) -> SqlValue {
    match value {
        types::SqlValue::Null => SqlValue::Null,
        types::SqlValue::Boolean(v) => SqlValue::Boolean(v),
        types::SqlValue::Int(v) => SqlValue::Int(v),
        types::SqlValue::Float(v) => SqlValue::Float(v),
        types::SqlValue::Text(v) => SqlValue::Text(v),
        types::SqlValue::Json(v) => SqlValue::Json(v),
        types::SqlValue::Bytes(v) => SqlValue::Bytes(v),
    }
}
