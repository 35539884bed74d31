//! What a reconcile reports: the `Ready` condition, and events for what it
//! changed (created, repaired drift, applied spec changes, rotated).
//!
//! Events are emitted only for changes, so a converged object gets none.

use postgres_api::{CommonStatus, CredentialsStatus};
use serde_json::Value;
use wasm_operator_sdk::{
    Condition, ConditionStatus, Conditions, Context, Event, Object, PluginError, READY, Request,
    Response,
};

use crate::secret_kind;

/// The reason of `Ready=True` once everything is in place.
pub const READY_REASON: &str = "Ready";
/// The event reason for drift that a reconcile repaired.
pub const DRIFT_REPAIRED: &str = "DriftRepaired";

/// `.status.conditions` of `object` with `condition` set.
pub(crate) fn conditions(ctx: &Context<'_>, object: &Object, condition: Condition) -> Vec<Value> {
    match Conditions::from_object(object)
        .set(condition, ctx.now())
        .into_value()
    {
        Value::Array(all) => all,
        _ => Vec::new(),
    }
}

/// A Warning event for a `Ready=False` condition, only when the object was
/// not already not-ready for the same reason (a steady state emits nothing).
pub(crate) fn not_ready_event(object: &Object, reason: &str, message: &str) -> Option<Event> {
    let previous = Conditions::from_object(object).get(READY);
    let unchanged = previous
        .is_some_and(|ready| ready.status == ConditionStatus::False && ready.reason == reason);
    (!unchanged).then(|| Event::warning(reason, "Reconcile", message))
}

/// `Ready=False` with `reason`: the rest of `status` as it is, a Warning
/// event when the reason is new, and the credentials Secret `secret` kept
/// when it exists (a Secret left out of a response would be deleted, and
/// its password with it).
///
/// # Errors
/// Only if the status cannot be serialized (`Response::status_of`).
pub(crate) fn not_ready(
    ctx: &Context<'_>,
    req: &Request,
    secret: &str,
    mut status: CredentialsStatus,
    reason: &str,
    message: String,
) -> Result<Response, PluginError> {
    let object = &req.object;
    ctx.info(
        "not ready",
        &[("object", object.name()), ("reason", reason)],
    );
    let event = not_ready_event(object, reason, &message);
    status.common = CommonStatus {
        conditions: conditions(ctx, object, Condition::not_ready(reason, message)),
        ..CommonStatus::default()
    };
    let mut response = Response::new()
        .keep_child(req, &secret_kind(), secret)
        .status_of(&status)?;
    if let Some(event) = event {
        response = response.event(event);
    }
    Ok(response)
}

/// Whether the object's status describes its current generation: then a
/// difference between spec and server is drift, not a spec change.
pub(crate) fn status_is_current(object: &Object) -> bool {
    let observed = object
        .pointer("/status/observedGeneration")
        .and_then(Value::as_i64);
    observed.is_some() && observed == object.generation()
}

/// What one reconcile's plan changes, described for events. Never holds secrets.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Changes {
    /// Things created for the first time.
    pub(crate) created: Vec<String>,
    /// Drift put right (`role "foo" recreated`).
    pub(crate) repaired: Vec<String>,
    /// Spec changes applied.
    pub(crate) updated: Vec<String>,
    /// Why the password was rotated, when it was.
    pub(crate) rotated: Option<String>,
}

impl Changes {
    /// Records `what` as repaired drift when `drift`, else as a spec change.
    pub(crate) fn drift_or_update(&mut self, drift: bool, what: String) {
        if drift {
            self.repaired.push(what);
        } else {
            self.updated.push(what);
        }
    }

    /// One Normal event per kind of change, naming the server.
    pub(crate) fn events(&self, server: &str) -> Vec<Event> {
        let mut events = Vec::new();
        if !self.created.is_empty() {
            events.push(Event::normal(
                "Created",
                "Create",
                format!("on server {server}: {}", self.created.join("; ")),
            ));
        }
        if !self.repaired.is_empty() {
            events.push(Event::normal(
                DRIFT_REPAIRED,
                "RepairDrift",
                format!("repaired on server {server}: {}", self.repaired.join("; ")),
            ));
        }
        if !self.updated.is_empty() {
            events.push(Event::normal(
                "Updated",
                "Update",
                format!("on server {server}: {}", self.updated.join("; ")),
            ));
        }
        if let Some(why) = &self.rotated {
            events.push(Event::normal(
                "PasswordRotated",
                "RotatePassword",
                why.clone(),
            ));
        }
        events
    }
}
