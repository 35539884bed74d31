//! Decide: the sandboxed call. The plugin gets what was gathered and reads
//! only through [`PluginReads`], under the grants for the object.

use std::sync::Arc;

use super::context::Context;
use super::error::ReconcileError;
use super::gather::Gathered;
use super::plugin_reads::PluginReads;
use crate::metrics::Export;
use crate::runtime::{CallContext, CallError, Decision, FinalizeDecision};

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
        }),
        grants: Arc::clone(&gathered.grants),
    }
}

fn failed(gathered: &Gathered) -> impl FnOnce(CallError) -> ReconcileError + '_ {
    |source| ReconcileError::Plugin {
        plugin: gathered.plugin.clone(),
        source,
    }
}
