//! `fieldValidation` of writes: with `Strict` (what `kubectl apply` and `create` send by
//! default), a custom resource body with fields its schema does not declare is refused as
//! the real server refuses it, instead of being pruned silently. `Warn` and `Ignore` (and
//! no directive) keep pruning. Built-in kinds have only minimal schemas here, so their
//! bodies are not checked.

use serde_json::Value;

use crate::error::ApiError;
use crate::registry::ResourceType;
use crate::schema;

/// Refuses `body` when `directive` is `Strict` and it has fields the kind's schema does not
/// declare; a JSON patch (an array) is not checked.
///
/// # Errors
/// 400 `BadRequest` naming each unknown field, in the real server's words.
pub fn check(rt: &ResourceType, body: &Value, directive: Option<&str>) -> Result<(), ApiError> {
    let (Some("Strict"), true, Some(schema)) = (directive, rt.custom, rt.schema.as_ref()) else {
        return Ok(());
    };
    if !body.is_object() {
        return Ok(());
    }
    let unknown = schema::unknown_fields(body, schema);
    if unknown.is_empty() {
        return Ok(());
    }
    let fields: Vec<String> = unknown
        .iter()
        .map(|field| format!("unknown field \"{field}\""))
        .collect();
    Err(ApiError::bad_request(format!(
        "{kind} in version \"{version}\" cannot be handled as a {kind}: strict decoding error: {}",
        fields.join(", "),
        kind = rt.kind,
        version = rt.version,
    )))
}
