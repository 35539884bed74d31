//! Reading values out of query results, and JSON array parameters.
//!
//! Observe queries return one row; a missing or NULL value reads as "absent".

use serde_json::Value;
use wasm_operator_sdk::{HostError, PluginError, QueryResult, SqlValue};

/// A JSON array parameter.
pub(crate) fn json_list(items: &[String]) -> SqlValue {
    SqlValue::Json(Value::from(items.to_vec()).to_string())
}

/// The boolean in the first row's `column` (false when absent).
pub(crate) fn flag(result: &QueryResult, column: &str) -> bool {
    result
        .get(0, column)
        .and_then(SqlValue::as_bool)
        .unwrap_or(false)
}

/// The integer in the first row's `column`.
pub(crate) fn int(result: &QueryResult, column: &str) -> Option<i64> {
    result.get(0, column).and_then(SqlValue::as_i64)
}

/// The text in the first row's `column`.
pub(crate) fn text(result: &QueryResult, column: &str) -> Option<String> {
    result
        .get(0, column)
        .and_then(SqlValue::as_str)
        .map(str::to_owned)
}

/// The JSON array of strings in the first row's `column` (jsonb or text).
pub(crate) fn list(result: &QueryResult, column: &str) -> Vec<String> {
    let text = match result.get(0, column) {
        Some(SqlValue::Json(text) | SqlValue::Text(text)) => text,
        _ => return Vec::new(),
    };
    serde_json::from_str::<Vec<String>>(text).unwrap_or_default()
}

/// A retryable `SqlQueryFailed` error saying what was being observed where.
pub(crate) fn query_failed(what: &str, key: &str, error: &HostError) -> PluginError {
    PluginError::retryable(
        "SqlQueryFailed",
        format!("{what} on server {key} failed: {}", error.message),
    )
}
