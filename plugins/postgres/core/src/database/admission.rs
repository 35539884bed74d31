//! Admission of Databases: refuse at `kubectl apply` what reconcile would
//! refuse, refuse changes to what cannot change, and write the defaults
//! into the stored object.
//!
//! # Validation
//! - Every check of [`Desired::validate`] (names, size, version,
//!   connection limit, rotation interval), with reconcile's message.
//! - On update: the database name (`spec.databaseName`, else
//!   `metadata.name`), `spec.encoding`, `spec.locale` and
//!   `spec.credentials.username` cannot change; `spec.size` cannot shrink
//!   and `spec.version` cannot change once set (see
//!   [`dedicated::check_change`]). These are refused whatever the status
//!   says: the first reconcile may be creating the database under its
//!   old name right now. A `spec.serverRef` cannot be added to a Database
//!   whose status shows a dedicated instance (its volumes would go).
//! - `spec.serverRef` (on create, or when it changes): a PostgresServer that
//!   exists and does not list the namespace in `spec.allowedNamespaces` is
//!   refused. One that does not exist is allowed with a warning, since it
//!   may be created later; until then the Database is
//!   `Ready=False ServerNotAllowed`.
//! - Delete and connect are allowed, and so is an update that leaves the
//!   spec alone (see [`spec_needs_deciding`]).
//!
//! # Defaults
//! Absent fields whose absence already means a value are written out:
//! `spec.reclaimPolicy` (its serde default, `Retain`), `spec.databaseName`
//! (`metadata.name`, when that is a valid database name) and
//! `spec.serverRef.namespace` (the Database's). `spec.connectionLimit` and
//! `spec.encoding` stay absent: absent means "no limit" and "the server's
//! default", which no explicit value says. With `metadata.generateName` the
//! name is not known yet when mutating webhooks run, so `databaseName` is
//! left absent and still defaults to the generated name.

use postgres_api::DatabaseSpec;
use wasm_operator_sdk::{
    AdmissionPlugin, AdmissionRequest, Context, Mutation, Object, PluginError, Validation,
};

use super::dedicated;
use super::observe::normalize;
use super::{DatabasePlugin, Desired, check_name, database_name, server_ref_added};
use crate::admission::{cannot_change, fill, mutate_spec, unchanged, validate_spec};
use crate::servers::{Consent, consent};

impl AdmissionPlugin for DatabasePlugin {
    fn validate(ctx: &Context<'_>, req: &AdmissionRequest) -> Result<Validation, PluginError> {
        validate_spec(ctx, req, with_defaults, decide)
    }

    fn mutate(_ctx: &Context<'_>, req: &AdmissionRequest) -> Result<Mutation, PluginError> {
        Ok(mutate_spec(req, with_defaults))
    }
}

/// The warnings of an allowed Database, or the error that refuses it.
fn decide(
    ctx: &Context<'_>,
    object: &Object,
    old: Option<&Object>,
) -> Result<Vec<String>, PluginError> {
    let spec: DatabaseSpec = object.spec()?;
    let desired = Desired::validate(object, &spec)?;
    // An old object that no longer decodes (stored under an older schema)
    // cannot be compared; reconcile still guards the name it created.
    let old = old.and_then(|old| Some((old, old.spec::<DatabaseSpec>().ok()?)));
    if let Some((old_object, old_spec)) = &old {
        check_kept(old_object, old_spec, &desired, &spec)?;
        let has_instance = old_object.pointer("/status/currentPrimary").is_some();
        if has_instance && old_spec.server_ref.is_none() && spec.server_ref.is_some() {
            return Err(server_ref_added());
        }
    }
    let (Some(server_ref), Some(namespace)) = (&spec.server_ref, object.namespace()) else {
        return Ok(Vec::new());
    };
    let key = server_ref.key(namespace);
    let same_server = old.as_ref().is_some_and(|(old_object, old_spec)| {
        let old_key = old_spec
            .server_ref
            .as_ref()
            .zip(old_object.namespace())
            .map(|(old_ref, old_namespace)| old_ref.key(old_namespace));
        old_key.as_deref() == Some(key.as_str())
    });
    if same_server {
        return Ok(Vec::new());
    }
    match consent(ctx, &key, namespace) {
        Ok(Consent::Given) => Ok(Vec::new()),
        Ok(Consent::Missing) => Ok(vec![format!(
            "spec.serverRef: PostgresServer {key} does not exist yet; the Database stays \
             Ready=False (ServerNotAllowed) until it exists and allows namespace {namespace:?}"
        )]),
        Ok(Consent::Refused) => Err(PluginError::invalid_spec(format!(
            "spec.serverRef: PostgresServer {key} does not allow Databases of namespace \
             {namespace:?} (its owner can add {namespace:?} or \"*\" to its \
             spec.allowedNamespaces)"
        ))),
        // A server whose own spec is broken is its owner's problem, not a
        // reason to refuse this Database; reconcile reports it.
        Err(error) if !error.retryable => Ok(vec![format!("spec.serverRef: {}", error.message)]),
        Err(error) => Err(error),
    }
}

/// Refuses changes to the fields that cannot change after creation.
fn check_kept(
    old_object: &Object,
    old: &DatabaseSpec,
    desired: &Desired<'_>,
    new: &DatabaseSpec,
) -> Result<(), PluginError> {
    let (old_name, _) = database_name(old_object, old);
    // Named spec.databaseName whichever field the name came from: that is
    // the field the user changed (metadata.name cannot change).
    unchanged("spec.databaseName", &old_name, &desired.name)?;
    // Compared as PostgreSQL compares them: `UTF-8` is `utf8`.
    for (field, old_value, new_value) in [
        ("spec.encoding", &old.encoding, &new.encoding),
        ("spec.locale", &old.locale, &new.locale),
    ] {
        if old_value.as_deref().map(normalize) != new_value.as_deref().map(normalize) {
            return Err(cannot_change(field, new_value, old_value));
        }
    }
    unchanged(
        "spec.credentials.username",
        &old.credentials.username,
        &new.credentials.username,
    )?;
    dedicated::check_change(old, new)
}

/// The object with its defaults written out, or `None` when it already has
/// them all (or its spec does not decode, which validation refuses).
fn with_defaults(object: &Object) -> Option<serde_json::Value> {
    let spec: DatabaseSpec = object.spec().ok()?;
    let name = object.name();
    let namespace = object.namespace();
    let mut value = object.as_value().clone();
    let map = value.get_mut("spec")?.as_object_mut()?;
    // The decoded value of an absent field is its serde default: the one
    // source of what absence means.
    let mut filled = fill(map, "reclaimPolicy", spec.reclaim_policy);
    if !name.is_empty() && check_name("metadata.name", name).is_ok() {
        filled |= fill(map, "databaseName", name);
    }
    if let (Some(server_ref), Some(namespace)) = (
        map.get_mut("serverRef")
            .and_then(serde_json::Value::as_object_mut),
        namespace,
    ) {
        filled |= fill(server_ref, "namespace", namespace);
    }
    filled.then_some(value)
}

#[cfg(test)]
mod tests;
