//! Check: a decision is held against the plugin's grants for the object
//! before anything of it is carried out; a refused decision changes nothing.

use super::error::ReconcileError;
use super::gather::Gathered;
use crate::runtime::{Decision, FinalizeDecision};

/// Checks a reconcile decision: the kinds and namespaces of its children,
/// and the servers of its SQL plans.
///
/// # Errors
/// [`ReconcileError::Refused`] naming the first thing outside the grants.
pub(super) fn reconcile(gathered: &Gathered, decision: &Decision) -> Result<(), ReconcileError> {
    let grants = &gathered.grants;
    grants
        .check_children(
            gathered.object.metadata.namespace.as_deref(),
            decision
                .children
                .iter()
                .map(|child| (&child.kind, child.namespace.as_deref())),
        )
        .and_then(|()| grants.check_plans(decision.sql.iter().map(|plan| &plan.server)))
        .map_err(|source| ReconcileError::Refused {
            plugin: gathered.plugin.clone(),
            source,
        })
}

/// Checks a finalize decision: the servers of its SQL plans.
///
/// # Errors
/// [`ReconcileError::Refused`] naming the first plan outside the grants.
pub(super) fn finalize(
    gathered: &Gathered,
    decision: &FinalizeDecision,
) -> Result<(), ReconcileError> {
    gathered
        .grants
        .check_plans(decision.sql.iter().map(|plan| &plan.server))
        .map_err(|source| ReconcileError::Refused {
            plugin: gathered.plugin.clone(),
            source,
        })
}
