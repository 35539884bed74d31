//! Decide: the sandboxed call. The plugin gets what was gathered and reads
//! only through [`PluginReads`], under the grants for the object.

use std::sync::Arc;

use super::context::Context;
use super::error::ReconcileError;
use super::gather::Gathered;
use super::plugin_reads::PluginReads;
use crate::metrics::Export;
use kube::ResourceExt;

use crate::postgres::ResultLimits;
use crate::runtime::{CallContext, CallError, Decision, FinalizeDecision, PluginLimits};

/// Asks the plugin for its decision on the gathered object.
///
/// # Errors
/// [`ReconcileError::Plugin`] when the call failed.
pub(super) async fn reconcile(
    ctx: &Context,
    gathered: &Gathered,
) -> Result<Decision, ReconcileError> {
    let _timer = ctx.metrics.time_plugin_call(&ctx.labels, Export::Reconcile);
    ctx.plugin
        .plugin
        .reconcile(&gathered.input, call_context(ctx, gathered))
        .await
        .map_err(failed(gathered))
}

/// Asks the plugin to clean up after the gathered object, which is being
/// deleted.
///
/// # Errors
/// [`ReconcileError::Plugin`] when the call failed.
pub(super) async fn finalize(
    ctx: &Context,
    gathered: &Gathered,
) -> Result<FinalizeDecision, ReconcileError> {
    let _timer = ctx.metrics.time_plugin_call(&ctx.labels, Export::Finalize);
    ctx.plugin
        .plugin
        .finalize(&gathered.input, call_context(ctx, gathered))
        .await
        .map_err(failed(gathered))
}

fn call_context(ctx: &Context, gathered: &Gathered) -> CallContext {
    CallContext {
        services: Arc::new(PluginReads {
            reads: Arc::clone(&ctx.reads),
            servers: Arc::clone(&ctx.servers),
            limits: result_limits(ctx.plugin.plugin.limits()),
            object: match gathered.object.metadata.namespace.as_deref() {
                Some(namespace) => format!("{namespace}/{}", gathered.object.name_any()),
                None => gathered.object.name_any(),
            },
            labels: ctx.labels.clone(),
            metrics: Arc::clone(&ctx.metrics),
        }),
        grants: Arc::clone(&gathered.grants),
    }
}

/// A query may bring a plugin at most a quarter of its memory cap (a
/// result is copied into the guest's memory) and 100,000 rows: what the
/// host holds for one call stays bounded by the binding's limits.
fn result_limits(limits: &PluginLimits) -> ResultLimits {
    ResultLimits {
        max_rows: 100_000,
        max_bytes: usize::try_from(limits.memory_bytes / 4).unwrap_or(usize::MAX),
    }
}

fn failed(gathered: &Gathered) -> impl FnOnce(CallError) -> ReconcileError + '_ {
    |source| ReconcileError::Plugin {
        plugin: gathered.plugin.clone(),
        source,
    }
}
