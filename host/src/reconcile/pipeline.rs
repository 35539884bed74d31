//! One reconcile, top to bottom: gather → decide → check → execute →
//! report, behind the plugin's finalizer. A failure at any step is
//! reported once, here: counted, shown in status and as a Warning event.

use std::sync::Arc;
use std::time::Instant;

use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use kube::api::DynamicObject;
use kube::runtime::controller::Action;
use kube::runtime::finalizer::{self, Event as FinalizerEvent, finalizer};

use super::context::Context;
use super::error::ReconcileError;
use super::versions::Versions;
use super::{check, decide, execute, gather, release, report};
use crate::metrics::{Outcome, ReconcileResult};
use crate::runtime::CallError;

/// The reason of the error that keeps the finalizer while the plugin's
/// cleanup is not done, so the backoff asks again.
const CLEANUP_PENDING: &str = "CleanupPending";

/// Reconciles `object` with the version in service when it starts.
pub(super) async fn reconcile(
    object: Arc<DynamicObject>,
    versions: Arc<Versions>,
) -> Result<Action, ReconcileError> {
    let version = versions.current();
    let _worker = version
        .context
        .metrics
        .start_worker(&version.context.labels.binding);
    let result = run(object, Arc::clone(&version.context)).await;
    if let Some(latency) = version.reconciled() {
        let ctx = &version.context;
        ctx.metrics.record_swap_latency(&ctx.labels, latency);
        tracing::info!(binding = %ctx.labels.binding, digest = %ctx.plugin.plugin.digest(), latency_ms = latency.as_millis() as u64, "first reconcile by the new plugin version");
    }
    result
}

#[tracing::instrument(name = "wasm_operator.reconcile", skip_all, fields(binding = %ctx.labels.binding, plugin = %ctx.plugin_name(), object = %object.name_any(), namespace = object.namespace().unwrap_or_default(), trace_id = %trace_id()))]
async fn run(object: Arc<DynamicObject>, ctx: Arc<Context>) -> Result<Action, ReconcileError> {
    let started = Instant::now();
    ctx.queue.started(&object.uid().unwrap_or_default());
    let object = ctx.written.overlay(Arc::clone(&object)).unwrap_or(object);
    let api = ctx.api_for(object.namespace().as_deref());
    let result = finalizer(
        &api,
        &ctx.plugin.finalizer(),
        object.clone(),
        |event| async {
            match event {
                FinalizerEvent::Apply(object) => apply(&ctx, object).await,
                FinalizerEvent::Cleanup(object) => cleanup(&ctx, object).await,
            }
        },
    )
    .await
    .map_err(|e| match e {
        finalizer::Error::ApplyFailed(inner) | finalizer::Error::CleanupFailed(inner) => inner,
        other => ReconcileError::Finalizer(Box::new(other)),
    });
    record(&ctx, &result, started);
    match &result {
        Ok(_) => {
            ctx.failures
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&object.uid().unwrap_or_default());
        }
        Err(error) => report::failed(&ctx, &object, error).await,
    }
    result
}

/// The object exists: its plugin decides, and the decision is carried out.
async fn apply(ctx: &Context, object: Arc<DynamicObject>) -> Result<Action, ReconcileError> {
    let gathered = gather::gather(ctx, object).await?;
    let decision = decide::reconcile(ctx, &gathered).await?;
    check::reconcile(&gathered, &decision)?;
    check::ownership(ctx, &gathered, &decision).await?;
    execute::sql(ctx, &decision.sql).await?;
    execute::children(ctx, &gathered, &decision.children).await?;
    report::decided(ctx, &gathered.object, &decision).await?;
    report::events(
        ctx,
        &gathered.object,
        &decision.events,
        decision.dropped_events,
    )
    .await;
    let after = decision.requeue_after.unwrap_or(ctx.settings.resync);
    ctx.queue
        .requeued(&gathered.object.uid().unwrap_or_default(), after);
    Ok(Action::requeue(after))
}

/// The object is being deleted: its plugin cleans up until it says it is
/// done, the children marked to be retained are released, and the
/// finalizer goes.
async fn cleanup(ctx: &Context, object: Arc<DynamicObject>) -> Result<Action, ReconcileError> {
    let gathered = gather::gather(ctx, object).await?;
    let decision = decide::finalize(ctx, &gathered).await?;
    check::finalize(&gathered, &decision)?;
    execute::sql(ctx, &decision.sql).await?;
    report::events(
        ctx,
        &gathered.object,
        &decision.events,
        decision.dropped_events,
    )
    .await;
    if decision.done {
        // Before the finalizer goes: once the object is removed, the garbage
        // collector deletes every child still referring to it.
        release::retained(ctx, &gathered).await?;
        Ok(Action::await_change())
    } else {
        // Returning an error keeps the finalizer; the backoff asks again.
        Err(ReconcileError::Plugin {
            plugin: gathered.plugin,
            source: CallError::Guest {
                reason: CLEANUP_PENDING.into(),
                message: "the plugin has not finished cleaning up".into(),
                retryable: true,
            },
        })
    }
}

/// Counts a finished reconcile, and its failure by reason: under the
/// project's names by binding, kind and outcome, and under
/// controller-runtime's by controller and result.
fn record(ctx: &Context, result: &Result<Action, ReconcileError>, started: Instant) {
    let kind = ctx.target.resource.kind.as_str();
    let took = started.elapsed();
    let outcome = match result {
        Ok(_) => Outcome::Success,
        Err(ReconcileError::Refused { .. }) => Outcome::Refused,
        Err(_) => Outcome::Error,
    };
    let metrics = &ctx.metrics;
    let controller = ctx.labels.binding.as_str();
    metrics.record_reconcile(&ctx.labels, kind, outcome, took);
    metrics.record_controller_reconcile(controller, reconcile_result(ctx, result), took);
    if let Err(error) = result {
        metrics.record_reconcile_error(&ctx.labels, kind, error.reason());
        match error {
            ReconcileError::Plugin { source, .. } => {
                if metrics.record_call_failure(&ctx.labels, source) && is_panic(source) {
                    metrics.record_reconcile_panic(controller);
                }
                if !source.is_retryable() {
                    metrics.record_terminal_reconcile_error(controller);
                }
            }
            ReconcileError::Refused { .. } => metrics.record_refused_output(&ctx.labels),
            _ => {}
        }
    }
}

/// The reconcile's result in controller-runtime's words. The host's own
/// resync is no requeue (controller-runtime's `SyncPeriod` is not either):
/// a reconcile is `requeue_after` only when the plugin asked for a delay of
/// its own, and a finalize still in progress, asked again with the backoff,
/// is a `requeue`, not an error.
fn reconcile_result(ctx: &Context, result: &Result<Action, ReconcileError>) -> ReconcileResult {
    match result {
        Ok(action)
            if *action == Action::requeue(ctx.settings.resync)
                || *action == Action::await_change() =>
        {
            ReconcileResult::Success
        }
        Ok(_) => ReconcileResult::RequeueAfter,
        Err(ReconcileError::Plugin {
            source: CallError::Guest { reason, .. },
            ..
        }) if reason == CLEANUP_PENDING => ReconcileResult::Requeue,
        Err(_) => ReconcileResult::Error,
    }
}

/// Whether the plugin's failure is what controller-runtime counts as a
/// recovered panic: the guest panicked, trapped or overflowed its stack
/// (not a deadline or memory limit, which are the sandbox's bounds).
fn is_panic(error: &CallError) -> bool {
    matches!(
        error,
        CallError::Panic { .. } | CallError::Trap { .. } | CallError::StackOverflow
    )
}

fn trace_id() -> String {
    let now = Timestamp::now();
    format!("{:x}{:08x}", now.as_second(), now.subsec_nanosecond())
}
