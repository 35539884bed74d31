//! Admission of DatabaseUsers: refuse at `kubectl apply` what reconcile
//! would refuse, refuse changes to what cannot change, and write the
//! defaults into the stored object.
//!
//! # Validation
//! - Every check of [`check_spec`] (role name, `validUntil`, connection
//!   limit, rotation interval), with reconcile's message; an unknown
//!   `spec.access` profile is refused by decoding, naming the field.
//! - When the Database exists: the role may not be its owner role
//!   ([`check_not_owner`]). A Database that does not exist yet is allowed
//!   with a warning; until it is Ready the DatabaseUser is
//!   `Ready=False DatabaseNotReady`.
//! - On update: `spec.username` and `spec.databaseRef` cannot change (the
//!   role would be left behind on the server, or moved between databases).
//! - Delete and connect are allowed, and so is an update that leaves the
//!   spec alone (see [`spec_needs_deciding`]).
//!
//! # Defaults
//! `spec.access` (`readOnly`) and `spec.reclaimPolicy` (`Delete`), their
//! serde defaults. `spec.connectionLimit` and `spec.validUntil` stay absent:
//! absent means "no limit" and "never expires", which the CRD documents.

use postgres_api::{DatabaseSpec, DatabaseUserSpec};
use wasm_operator_sdk::{
    AdmissionPlugin, AdmissionRequest, Context, Mutation, Object, PluginError, Validation,
};

use super::{DatabaseUserPlugin, check_not_owner, check_spec};
use crate::admission::{fill, mutate_spec, unchanged, validate_spec};
use crate::database_kind;

impl AdmissionPlugin for DatabaseUserPlugin {
    fn validate(ctx: &Context<'_>, req: &AdmissionRequest) -> Result<Validation, PluginError> {
        validate_spec(ctx, req, with_defaults, decide)
    }

    fn mutate(_ctx: &Context<'_>, req: &AdmissionRequest) -> Result<Mutation, PluginError> {
        Ok(mutate_spec(req, with_defaults))
    }
}

/// The warnings of an allowed DatabaseUser, or the error that refuses it.
fn decide(
    ctx: &Context<'_>,
    object: &Object,
    old: Option<&Object>,
) -> Result<Vec<String>, PluginError> {
    let spec: DatabaseUserSpec = object.spec()?;
    check_spec(&spec)?;
    // An old object that no longer decodes cannot be compared.
    if let Some(old) = old.and_then(|old| old.spec::<DatabaseUserSpec>().ok()) {
        unchanged("spec.username", &old.username, &spec.username)?;
        unchanged(
            "spec.databaseRef.name",
            &old.database_ref.name,
            &spec.database_ref.name,
        )?;
    }
    let Some(namespace) = object.namespace() else {
        return Ok(Vec::new());
    };
    let name = &spec.database_ref.name;
    let Some(database) = ctx.get(&database_kind(), Some(namespace), name)? else {
        return Ok(vec![format!(
            "spec.databaseRef: Database {name:?} does not exist in namespace {namespace:?} yet; \
             the DatabaseUser stays Ready=False (DatabaseNotReady) until it is Ready"
        )]);
    };
    // A Database whose spec does not decode is refused at its own
    // admission and reconcile; there is no owner to compare with.
    if let Ok(database) = database.spec::<DatabaseSpec>() {
        check_not_owner(&spec, &database.credentials.username)?;
    }
    Ok(Vec::new())
}

/// The object with its defaults written out, or `None` when it already has
/// them all (or its spec does not decode, which validation refuses).
fn with_defaults(object: &Object) -> Option<serde_json::Value> {
    let spec: DatabaseUserSpec = object.spec().ok()?;
    let mut value = object.as_value().clone();
    let map = value.get_mut("spec")?.as_object_mut()?;
    // The decoded value of an absent field is its serde default: the one
    // source of what absence means.
    let filled = fill(map, "access", spec.access) | fill(map, "reclaimPolicy", spec.reclaim_policy);
    filled.then_some(value)
}

#[cfg(test)]
mod tests;
