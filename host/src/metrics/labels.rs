//! The label sets of the operator's series, each from a bounded set.

use prometheus_client::encoding::EncodeLabelSet;

/// How a reconcile ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// The decision was carried out.
    Success,
    /// The plugin call or carrying out its decision failed.
    Error,
    /// The plugin's response was outside its grants and was not carried out.
    Refused,
}

impl Outcome {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Success => "success",
            Self::Error => "error",
            Self::Refused => "refused",
        }
    }
}

/// A function a plugin exports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Export {
    /// `describe`, called once per load.
    Describe,
    /// `reconcile`.
    Reconcile,
    /// `finalize`, on deletion.
    Finalize,
    /// `validate`, for validating admission.
    Validate,
    /// `mutate`, for mutating admission.
    Mutate,
}

impl Export {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Describe => "describe",
            Self::Reconcile => "reconcile",
            Self::Finalize => "finalize",
            Self::Validate => "validate",
            Self::Mutate => "mutate",
        }
    }
}

/// A write the host makes on a plugin's behalf.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WriteVerb {
    /// Server-side apply of a child.
    Apply,
    /// Deletion of a child no longer desired.
    Delete,
    /// A status patch of the reconciled object.
    Status,
    /// An emitted Event.
    Event,
}

impl WriteVerb {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Apply => "apply",
            Self::Delete => "delete",
            Self::Status => "status",
            Self::Event => "event",
        }
    }
}

/// The labels every series carries: the binding (the `ReconcilerPlugin`)
/// and its plugin (the name the component gives itself in `describe`), so
/// that a dashboard can join any two series of one binding.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct BindingLabels {
    /// The `ReconcilerPlugin`'s name.
    pub binding: String,
    /// The plugin's name; empty while no version of the binding serves.
    pub plugin: String,
}

impl BindingLabels {
    /// The labels of `binding` running `plugin`.
    pub fn new(binding: &str, plugin: &str) -> Self {
        Self {
            binding: binding.to_owned(),
            plugin: plugin.to_owned(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub(super) struct PluginKindLabels {
    #[prometheus(flatten)]
    pub(super) binding: BindingLabels,
    pub(super) kind: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub(super) struct OutcomeLabels {
    #[prometheus(flatten)]
    pub(super) binding: BindingLabels,
    pub(super) kind: String,
    pub(super) outcome: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub(super) struct ErrorLabels {
    #[prometheus(flatten)]
    pub(super) binding: BindingLabels,
    pub(super) kind: String,
    pub(super) reason: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub(super) struct ExportLabels {
    #[prometheus(flatten)]
    pub(super) binding: BindingLabels,
    pub(super) export: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub(super) struct TrapLabels {
    #[prometheus(flatten)]
    pub(super) binding: BindingLabels,
    pub(super) kind: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub(super) struct ReasonLabels {
    #[prometheus(flatten)]
    pub(super) binding: BindingLabels,
    pub(super) reason: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub(super) struct LoadLabels {
    #[prometheus(flatten)]
    pub(super) binding: BindingLabels,
    pub(super) source: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub(super) struct VerbLabels {
    #[prometheus(flatten)]
    pub(super) binding: BindingLabels,
    pub(super) verb: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub(super) struct AdmissionLabels {
    #[prometheus(flatten)]
    pub(super) binding: BindingLabels,
    pub(super) operation: &'static str,
    pub(super) allowed: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub(super) struct OperationLabels {
    #[prometheus(flatten)]
    pub(super) binding: BindingLabels,
    pub(super) operation: &'static str,
}

/// How a reconcile ended, in controller-runtime's words (its `result`
/// label of `controller_runtime_reconcile_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReconcileResult {
    /// Done until the next change or the resync.
    Success,
    /// Failed: counted in `controller_runtime_reconcile_errors_total` too.
    Error,
    /// Not done yet, asked again with the backoff (a finalize still in
    /// progress), as controller-runtime's `Requeue: true`.
    Requeue,
    /// Done, and the plugin asked to be called again after a delay of its
    /// own, as controller-runtime's `RequeueAfter`.
    RequeueAfter,
}

impl ReconcileResult {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Success => "success",
            Self::Error => "error",
            Self::Requeue => "requeue",
            Self::RequeueAfter => "requeue_after",
        }
    }
}

/// controller-runtime's `controller` label: the binding's name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub(super) struct ControllerLabels {
    pub(super) controller: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub(super) struct ResultLabels {
    pub(super) controller: String,
    pub(super) result: &'static str,
}

/// client-go's workqueue labels as controller-runtime sets them: `name`
/// and `controller` both the controller's (here the binding's) name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub(super) struct QueueLabels {
    pub(super) name: String,
    pub(super) controller: String,
}

/// client-go's leader-election label: the Lease's name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub(super) struct LeaseLabels {
    pub(super) name: String,
}
