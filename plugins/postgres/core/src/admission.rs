//! What the admission decisions of the Database and DatabaseUser plugins
//! share: which requests are decided, how a refused check becomes the
//! denial `kubectl` prints, immutable fields, and filling defaults.
//!
//! Admission runs the same checks as reconcile (the functions are shared,
//! not copied), so a spec the API server stores is one reconcile accepts.
//! Reconcile keeps its checks: webhooks can be off, or fail open under
//! `failurePolicy: Ignore`.
//!
//! # Which error is a denial
//! A permanent [`PluginError`] (an `InvalidSpec`, a spec that does not
//! decode) says the submitted object is wrong: it becomes a denial carrying
//! the same message reconcile would report. A retryable one (a refused
//! cache read) says nothing about the object: it is returned as an error,
//! and the host applies the binding's failure policy.

use serde::Serialize;
use serde_json::{Map, Value};
use wasm_operator_sdk::{
    AdmissionRequest, Context, Mutation, Object, Operation, PluginError, Validation,
};

/// The object a create or an update submits; `None` for a delete or a
/// connect, which the plugins always allow and never change.
pub(crate) fn submitted(req: &AdmissionRequest) -> Option<&Object> {
    match req.operation {
        Operation::Create | Operation::Update => req.object.as_ref(),
        Operation::Delete | Operation::Connect => None,
    }
}

/// The object an update replaces.
pub(crate) fn replaced(req: &AdmissionRequest) -> Option<&Object> {
    match req.operation {
        Operation::Update => req.old_object.as_ref(),
        _ => None,
    }
}

/// Whether the spec needs deciding at all. An update that leaves the spec
/// as it was (the host adding or removing its finalizer, labels,
/// annotations) is allowed even when that spec is now refused, and so is
/// any update of an object being deleted: denying those would leave a
/// finalizer that can never be removed. Reconcile still reports such a
/// spec as `InvalidSpec`.
///
/// Both specs are compared with `defaults` (the plugin's mutation) applied,
/// since validating webhooks see the object after mutating ones: an object
/// stored before the webhook existed lacks the defaults the update gains.
pub(crate) fn spec_needs_deciding(
    object: &Object,
    old: Option<&Object>,
    defaults: fn(&Object) -> Option<Value>,
) -> bool {
    if object.is_being_deleted() {
        return false;
    }
    let spec = |object: &Object| match defaults(object) {
        Some(defaulted) => defaulted.get("spec").cloned(),
        None => object.pointer("/spec").cloned(),
    };
    old.is_none_or(|old| spec(old) != spec(object))
}

/// Decides an object of the kind (with the object it replaces): its
/// warnings when allowed, or the error that refuses it.
pub(crate) type Decide =
    fn(&Context<'_>, &Object, Option<&Object>) -> Result<Vec<String>, PluginError>;

/// The decision of a kind whose spec is checked by `decide` and defaulted
/// by `defaults`: the `validate` of the Database and DatabaseUser plugins.
///
/// # Errors
/// A retryable [`PluginError`] from a host call.
pub(crate) fn validate_spec(
    ctx: &Context<'_>,
    req: &AdmissionRequest,
    defaults: fn(&Object) -> Option<Value>,
    decide: Decide,
) -> Result<Validation, PluginError> {
    let Some(object) = submitted(req) else {
        return Ok(Validation::allow());
    };
    let old = replaced(req);
    if !spec_needs_deciding(object, old, defaults) {
        return Ok(Validation::allow());
    }
    verdict(decide(ctx, object, old))
}

/// The submitted object with `defaults` written out, or no change.
pub(crate) fn mutate_spec(
    req: &AdmissionRequest,
    defaults: fn(&Object) -> Option<Value>,
) -> Mutation {
    submitted(req)
        .and_then(defaults)
        .map_or_else(Mutation::unchanged, Mutation::replace)
}

/// The validation for `decision`: allowed with its warnings, denied with
/// the message of a permanent error, or the retryable error itself (see the
/// module docs).
///
/// # Errors
/// A retryable [`PluginError`] from a host call.
pub(crate) fn verdict(
    decision: Result<Vec<String>, PluginError>,
) -> Result<Validation, PluginError> {
    match decision {
        Ok(warnings) => Ok(warnings
            .into_iter()
            .fold(Validation::allow(), Validation::warning)),
        Err(error) if error.retryable => Err(error),
        Err(error) => Ok(Validation::deny(error.message)),
    }
}

/// The refusal of a change to a field that cannot change after creation:
/// `spec.encoding: "LATIN1" cannot change after creation (is "UTF8")`.
/// Values are shown as JSON (`unset` when absent), as `kubectl` shows them.
pub(crate) fn cannot_change<T: Serialize + ?Sized>(field: &str, new: &T, old: &T) -> PluginError {
    PluginError::invalid_spec(format!(
        "{field}: {} cannot change after creation (is {})",
        shown(new),
        shown(old)
    ))
}

/// `Ok` when `field` is the same in the old and the new spec.
///
/// # Errors
/// `InvalidSpec` from [`cannot_change`].
pub(crate) fn unchanged<T: Serialize + PartialEq + ?Sized>(
    field: &str,
    old: &T,
    new: &T,
) -> Result<(), PluginError> {
    if old == new {
        Ok(())
    } else {
        Err(cannot_change(field, new, old))
    }
}

fn shown<T: Serialize + ?Sized>(value: &T) -> String {
    match serde_json::to_value(value) {
        Ok(Value::Null) | Err(_) => "unset".to_owned(),
        Ok(value) => value.to_string(),
    }
}

/// Sets `map[key]` to `value` when the key is absent; whether it did. A
/// present key is never touched, whatever its value: the user's choice, or
/// an earlier pass of the same defaulting (which keeps mutation idempotent).
pub(crate) fn fill(map: &mut Map<String, Value>, key: &str, value: impl Serialize) -> bool {
    if map.contains_key(key) {
        return false;
    }
    match serde_json::to_value(value) {
        Ok(value) => {
            map.insert(key.to_owned(), value);
            true
        }
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn a_changed_field_is_refused_showing_both_values_as_json() {
        let error = unchanged("spec.username", "alice", "bob").unwrap_err();
        assert_eq!(error.reason, "InvalidSpec");
        assert_eq!(
            error.message,
            "spec.username: \"bob\" cannot change after creation (is \"alice\")"
        );
        let unset: Option<&str> = None;
        assert_eq!(
            cannot_change("spec.locale", &Some("C"), &unset).message,
            "spec.locale: \"C\" cannot change after creation (is unset)"
        );
        assert!(unchanged("spec.version", &Some(14), &Some(14)).is_ok());
    }

    #[test]
    fn filling_never_replaces_a_present_value() {
        let mut map = json!({"access": "owner"}).as_object().unwrap().clone();
        assert!(!fill(&mut map, "access", "readOnly"));
        assert!(fill(&mut map, "reclaimPolicy", "Delete"));
        assert!(!fill(&mut map, "reclaimPolicy", "Retain"));
        assert_eq!(
            Value::Object(map),
            json!({"access": "owner", "reclaimPolicy": "Delete"})
        );
    }

    #[test]
    fn permanent_errors_deny_and_retryable_ones_are_returned() {
        let denied = verdict(Err(PluginError::invalid_spec("spec.x: bad"))).unwrap();
        assert!(!denied.allowed);
        assert_eq!(denied.message.as_deref(), Some("spec.x: bad"));
        let failed = verdict(Err(PluginError::retryable("KubeReadFailed", "no")));
        assert_eq!(failed.unwrap_err().reason, "KubeReadFailed");
        let allowed = verdict(Ok(vec!["careful".into()])).unwrap();
        assert!(allowed.allowed);
        assert_eq!(allowed.warnings, ["careful"]);
    }
}
