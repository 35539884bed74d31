//! The error a plugin returns instead of a decision, and the errors of host calls.

use std::fmt;

/// An error a plugin returns instead of a decision.
///
/// The host records it as a `Ready=False` condition with [`reason`](Self::reason)
/// and [`message`](Self::message), emits a Warning event, and retries with
/// backoff when the error is [retryable](Self::retryable).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}: {message}")]
pub struct PluginError {
    /// Machine-readable, UpperCamelCase (`InvalidSpec`, `ServerUnreachable`).
    pub reason: String,
    /// What failed and what the user can do about it. Never put secrets here.
    pub message: String,
    /// Whether trying again later might succeed without a spec change.
    pub retryable: bool,
}

impl PluginError {
    /// A non-retryable error: trying again will fail the same way until the
    /// object changes.
    #[must_use]
    pub fn permanent(reason: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            reason: reason.into(),
            message: message.into(),
            retryable: false,
        }
    }

    /// A retryable error: the host tries again with backoff.
    #[must_use]
    pub fn retryable(reason: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            reason: reason.into(),
            message: message.into(),
            retryable: true,
        }
    }

    /// A non-retryable `InvalidSpec` error. Name the offending field in
    /// `message` (`spec.greeting must not be empty`).
    #[must_use]
    pub fn invalid_spec(message: impl Into<String>) -> Self {
        Self::permanent("InvalidSpec", message)
    }
}

/// The host capability a failed [`HostError`] came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostCall {
    /// `kube.get`.
    KubeGet,
    /// `kube.list`.
    KubeList,
    /// `sql.query`.
    SqlQuery,
}

impl fmt::Display for HostCall {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::KubeGet => "kube get",
            Self::KubeList => "kube list",
            Self::SqlQuery => "sql query",
        })
    }
}

/// A host call failed, or returned JSON the SDK could not parse.
///
/// Converts into a retryable [`PluginError`] with reason `KubeReadFailed` or
/// `SqlQueryFailed`, so `?` in a reconcile function does the usual thing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{call} failed: {message}")]
pub struct HostError {
    /// Which call failed.
    pub call: HostCall,
    /// The host's message (for example: the kind is not granted).
    pub message: String,
}

impl From<HostError> for PluginError {
    fn from(error: HostError) -> Self {
        let reason = match error.call {
            HostCall::KubeGet | HostCall::KubeList => "KubeReadFailed",
            HostCall::SqlQuery => "SqlQueryFailed",
        };
        Self::retryable(reason, error.to_string())
    }
}
