//! Report: what a reconcile tells the user. One status writer for success
//! and failure (`observedGeneration`, the plugin digest, a `Ready`
//! condition), and the events: the plugin's, and a Warning for a failure.
//!
//! Status is written only when it changes, so a converged object costs no
//! write, and a condition keeps its `lastTransitionTime` while its status
//! stays the same.

use k8s_openapi::jiff::{Timestamp, Unit};
use kube::api::{DynamicObject, Patch, PatchParams};
use kube::runtime::events::EventType as KubeEventType;
use kube::{Resource, ResourceExt};
use serde_json::{Value, json};

use super::context::Context;
use super::error::{ReconcileError, kube_error};
use crate::events::truncate;
use crate::metrics::WriteVerb;
use crate::runtime::{Decision, Event, EventType};
use crate::vocabulary::{DIGEST_FIELD, READY};

/// The longest condition message written.
const MAX_MESSAGE_BYTES: usize = 2048;

/// Writes the status a carried-out decision asks for, with
/// `observedGeneration`, the plugin digest and a `Ready` condition (unless
/// the plugin set its own).
///
/// # Errors
/// [`ReconcileError::Kube`] when the status cannot be written.
pub(super) async fn decided(
    ctx: &Context,
    object: &DynamicObject,
    decision: &Decision,
) -> Result<(), ReconcileError> {
    let current = current_status(object);
    let digest = ctx.plugin.plugin.digest().to_string();
    let status = decided_status(&current, decision, object.metadata.generation, &digest);
    write_status(ctx, object, &current, status).await
}

/// The status of a carried-out decision, given the `current` one.
fn decided_status(
    current: &Value,
    decision: &Decision,
    generation: Option<i64>,
    digest: &str,
) -> Value {
    let mut status = decision.status.clone().unwrap_or_else(|| json!({}));
    status["observedGeneration"] = json!(generation);
    status[DIGEST_FIELD] = json!(digest);
    let mut conditions = conditions_of(&status);
    if !conditions.iter().any(|c| c["type"] == READY) {
        conditions.push(condition(
            current,
            READY,
            true,
            "Reconciled",
            "the plugin's decision is applied",
            generation,
        ));
        status["conditions"] = Value::Array(conditions);
    }
    status
}

/// Shows a failed reconcile: `Ready=False` with the failure's reason and
/// message (the rest of the status as it is), and a Warning event. A
/// status that cannot be written is logged: the failure itself is what
/// the caller reports.
pub(super) async fn failed(ctx: &Context, object: &DynamicObject, error: &ReconcileError) {
    let current = current_status(object);
    let message = error.to_string();
    let reason = error.condition_reason();
    let status = failed_status(&current, &reason, &message, object.metadata.generation);
    if let Err(error) = write_status(ctx, object, &current, status).await {
        tracing::warn!(%error, "could not record the failure in status");
    }
    let event = Event {
        type_: EventType::Warning,
        reason,
        note: message,
        action: "Reconcile".into(),
    };
    events(ctx, object, std::slice::from_ref(&event), 0).await;
}

/// The `current` status with `Ready=False` for a failure: the rest as it is.
fn failed_status(current: &Value, reason: &str, message: &str, generation: Option<i64>) -> Value {
    let mut status = if current.is_object() {
        current.clone()
    } else {
        json!({})
    };
    let mut conditions: Vec<Value> = conditions_of(current)
        .into_iter()
        .filter(|c| c["type"] != READY)
        .collect();
    conditions.push(condition(
        current, READY, false, reason, message, generation,
    ));
    status["conditions"] = Value::Array(conditions);
    status["observedGeneration"] = json!(generation);
    status
}

/// Records the plugin's `events` about `object`, and a Warning when
/// `dropped` more were over the plugin's cap. At most the object's budget
/// of events per minute is recorded; the rest are dropped and counted.
pub(super) async fn events(
    ctx: &Context,
    object: &DynamicObject,
    events: &[Event],
    dropped: usize,
) {
    if events.is_empty() && dropped == 0 {
        // The common case of a converged object: nothing to record or count.
        return;
    }
    let limits = ctx.plugin.plugin.limits();
    let mut events = events.to_vec();
    if dropped > 0 {
        ctx.metrics
            .record_events_dropped(&ctx.labels, "cap", dropped as u64);
        // First, so that the object's budget per minute never drops it.
        events.insert(0, Event {
            type_: EventType::Warning,
            reason: "EventsDropped".into(),
            note: format!(
                "the plugin returned {dropped} more events than its cap of {} per decision; they were dropped (spec.limits.maxEvents of the ReconcilerPlugin)",
                limits.max_events
            ),
            action: "Reconcile".into(),
        },
        );
    }
    let uid = object.uid().unwrap_or_default();
    let granted = ctx
        .event_budget
        .take(&uid, events.len(), limits.max_events_per_minute);
    if granted < events.len() {
        let over = events.len() - granted;
        ctx.metrics
            .record_events_dropped(&ctx.labels, "rate", over as u64);
        tracing::warn!(object = %object.name_any(), dropped = over, per_minute = limits.max_events_per_minute, "events over the object's budget per minute were not recorded");
    }
    record(ctx, object, &events[..granted]).await;
}

/// Records `events` about `object`; one that cannot be recorded is logged.
async fn record(ctx: &Context, object: &DynamicObject, events: &[Event]) {
    let reference = object.object_ref(&ctx.target.resource);
    for event in events {
        let type_ = match event.type_ {
            EventType::Normal => KubeEventType::Normal,
            EventType::Warning => KubeEventType::Warning,
        };
        match ctx
            .events
            .publish(&reference, type_, &event.reason, &event.note, &event.action)
            .await
        {
            Ok(()) => ctx.metrics.record_write(&ctx.labels, WriteVerb::Event),
            Err(error) => {
                tracing::warn!(%error, reason = %event.reason, "could not record an event")
            }
        }
    }
}

fn current_status(object: &DynamicObject) -> Value {
    object.data.get("status").cloned().unwrap_or(Value::Null)
}

fn conditions_of(status: &Value) -> Vec<Value> {
    status
        .get("conditions")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
}

/// Server-side applies `status` as the plugin's field manager, unless it is
/// what `current` already says.
async fn write_status(
    ctx: &Context,
    object: &DynamicObject,
    current: &Value,
    status: Value,
) -> Result<(), ReconcileError> {
    if *current == status {
        return Ok(());
    }
    let patch = json!({
        "apiVersion": ctx.target.resource.api_version,
        "kind": ctx.target.resource.kind,
        "status": status,
    });
    let written = ctx
        .api_for(object.namespace().as_deref())
        .patch_status(
            &object.name_any(),
            &PatchParams::apply(&ctx.plugin.field_manager()).force(),
            &Patch::Apply(&patch),
        )
        .await
        .map_err(kube_error("writing status"))?;
    ctx.written.record(Some(object), written);
    ctx.metrics.record_write(&ctx.labels, WriteVerb::Status);
    Ok(())
}

/// A condition, keeping `lastTransitionTime` when its status is unchanged so
/// an unchanged decision writes nothing.
fn condition(
    current: &Value,
    type_: &str,
    ok: bool,
    reason: &str,
    message: &str,
    generation: Option<i64>,
) -> Value {
    let status = if ok { "True" } else { "False" };
    let previous = conditions_of(current)
        .into_iter()
        .find(|c| c["type"] == type_);
    let since = match previous {
        Some(p) if p["status"] == status => p["lastTransitionTime"].clone(),
        _ => json!(
            Timestamp::now()
                .round(Unit::Second)
                .unwrap_or(Timestamp::now())
                .to_string()
        ),
    };
    json!({
        "type": type_,
        "status": status,
        "reason": reason,
        "message": truncate(message, MAX_MESSAGE_BYTES),
        "lastTransitionTime": since,
        "observedGeneration": generation,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decision(status: Option<Value>) -> Decision {
        Decision {
            children: Vec::new(),
            status,
            sql: Vec::new(),
            events: Vec::new(),
            dropped_events: 0,
            requeue_after: None,
        }
    }

    fn ready(status: &Value) -> Value {
        conditions_of(status)
            .into_iter()
            .find(|c| c["type"] == READY)
            .expect("a Ready condition")
    }

    #[test]
    fn a_decision_gets_the_generation_the_digest_and_ready_unless_the_plugin_set_it() {
        let status = decided_status(
            &Value::Null,
            &decision(Some(json!({"message": "hi"}))),
            Some(4),
            "sha256:ab",
        );
        assert_eq!(status["message"], "hi");
        assert_eq!(status["observedGeneration"], 4);
        assert_eq!(status[DIGEST_FIELD], "sha256:ab");
        assert_eq!(
            (
                ready(&status)["status"].clone(),
                ready(&status)["reason"].clone()
            ),
            (json!("True"), json!("Reconciled"))
        );
        let own =
            json!({"conditions": [{"type": "Ready", "status": "False", "reason": "Waiting"}]});
        let status = decided_status(&Value::Null, &decision(Some(own)), Some(4), "sha256:ab");
        assert_eq!(
            ready(&status)["reason"],
            "Waiting",
            "the plugin's own Ready wins"
        );
    }

    #[test]
    fn the_same_decision_again_computes_the_status_in_place_so_nothing_is_written() {
        let first = decided_status(&Value::Null, &decision(None), Some(2), "sha256:ab");
        let again = decided_status(&first, &decision(None), Some(2), "sha256:ab");
        assert_eq!(first, again);
    }

    #[test]
    fn a_failure_replaces_ready_and_keeps_the_rest_of_the_status() {
        let current = decided_status(
            &Value::Null,
            &decision(Some(json!({"binding": {"name": "s"}}))),
            Some(2),
            "sha256:ab",
        );
        let failed = failed_status(&current, "InvalidSpec", "spec.x: bad", Some(3));
        assert_eq!(failed["binding"]["name"], "s");
        assert_eq!(failed[DIGEST_FIELD], "sha256:ab");
        assert_eq!(failed["observedGeneration"], 3);
        let conditions = conditions_of(&failed);
        assert_eq!(conditions.len(), 1, "one Ready condition: {conditions:?}");
        assert_eq!(
            (
                conditions[0]["status"].clone(),
                conditions[0]["reason"].clone()
            ),
            (json!("False"), json!("InvalidSpec"))
        );
        assert_eq!(
            failed_status(&failed, "InvalidSpec", "spec.x: bad", Some(3)),
            failed
        );
    }

    #[test]
    fn an_unchanged_condition_keeps_its_transition_time() {
        let current = json!({"conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": "2020-01-01T00:00:00Z"}]});
        let again = condition(&current, READY, true, "Reconciled", "ok", Some(2));
        assert_eq!(again["lastTransitionTime"], "2020-01-01T00:00:00Z");
        let flipped = condition(&current, READY, false, "Trap", "boom", Some(2));
        assert_ne!(flipped["lastTransitionTime"], "2020-01-01T00:00:00Z");
    }
}
