//! What stops a reconcile, with a bounded reason for conditions, events
//! and metrics.

use super::cache::NotSynced;
use crate::grants::Refusal;
use crate::postgres::ServerError;
use crate::runtime::CallError;

/// What stopped a reconcile.
#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    /// The plugin did not produce a decision.
    #[error("plugin {plugin} failed: {source}")]
    Plugin {
        /// The plugin's name.
        plugin: String,
        /// Why.
        #[source]
        source: CallError,
    },
    /// The decision reached outside the plugin's grants; nothing was applied.
    #[error("decision of plugin {plugin} refused: {source}")]
    Refused {
        /// The plugin's name.
        plugin: String,
        /// What was outside the grants.
        #[source]
        source: Refusal,
    },
    /// Running the decision's SQL failed; children and status were not
    /// applied.
    #[error("running the SQL plan failed: {0}")]
    Sql(#[source] ServerError),
    /// A Kubernetes API call failed.
    #[error("Kubernetes API call failed while {action}: {source}")]
    Kube {
        /// What the host was doing.
        action: &'static str,
        /// The client's error.
        #[source]
        source: kube::Error,
    },
    /// Adding or removing the finalizer failed.
    #[error("finalizer handling failed: {0}")]
    Finalizer(#[source] Box<kube::runtime::finalizer::Error<ReconcileError>>),
    /// A watch cache the reconcile reads from has not synced.
    #[error(transparent)]
    Cache(#[from] NotSynced),
}

impl ReconcileError {
    /// A bounded reason for conditions, events and metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Plugin { source, .. } => source.reason(),
            Self::Refused {
                source: Refusal::ChildConflict { .. },
                ..
            } => "ChildConflict",
            Self::Refused { .. } => "OutputRefused",
            Self::Sql(ServerError::Sql { .. }) => "SqlFailed",
            Self::Sql(_) => "ServerUnavailable",
            Self::Kube { .. } => "KubernetesApiError",
            Self::Finalizer(_) => "FinalizerError",
            Self::Cache(_) => "CacheNotSynced",
        }
    }

    /// The reason shown in the `Ready` condition and the Warning event: the
    /// plugin's own reason when it returned an error.
    pub fn condition_reason(&self) -> String {
        match self {
            Self::Plugin {
                source: CallError::Guest { reason, .. },
                ..
            } => reason.clone(),
            other => other.reason().to_owned(),
        }
    }
}

/// Wraps a client error with what the host was doing.
pub(super) fn kube_error(action: &'static str) -> impl FnOnce(kube::Error) -> ReconcileError {
    move |source| ReconcileError::Kube { action, source }
}
