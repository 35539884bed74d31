//! One admission review answered by one binding's plugin: the seam between
//! the HTTP layer and the Wasm runtime.
//!
//! Every way a review can fail becomes an answer here, in one function
//! ([`failed`]), naming the binding and the reason: a denial, or, when the
//! plugin failed to decide (error, trap, deadline, unusable output) and
//! the binding's `spec.admission.failurePolicy` is `Ignore`, an allowance
//! with a warning, so that the API server and the user see the same thing
//! as when the webhook cannot be reached under `Ignore`.

use std::sync::Arc;
use std::time::Instant;

use serde_json::Value;

use super::patch::{PatchError, patch_between};
use super::review::{AdmissionRequest, AdmissionResponse};
use crate::binding::BoundPlugin;
use crate::crd::FailurePolicy;
use crate::grants::Grants;
use crate::metrics::{BindingLabels, Export, Metrics};
use crate::runtime::{self, CallContext, CallError, HostServices, Operation};

/// Which admission decision a path asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// `/validate/<binding>`: the plugin's `validate`.
    Validate,
    /// `/mutate/<binding>`: the plugin's `mutate`.
    Mutate,
}

impl Decision {
    fn export(self) -> Export {
        match self {
            Self::Validate => Export::Validate,
            Self::Mutate => Export::Mutate,
        }
    }
}

/// Why a review was denied without the plugin's say.
#[derive(Debug, thiserror::Error)]
enum Failure {
    #[error(
        "binding {binding} has no plugin version in service on this operator replica: it does not exist, its plugin was refused (see its status), or this replica has not loaded it yet"
    )]
    NotInService { binding: String },
    #[error(
        "the plugin of binding {binding} ({plugin}) does not export `admission`; build it for the admission-plugin world (export_admission_plugin!)"
    )]
    NoAdmission { binding: String, plugin: String },
    #[error("unknown operation {0:?}")]
    Operation(String),
    #[error("binding {binding} ({plugin}) failed to decide: {source}")]
    Call {
        binding: String,
        plugin: String,
        #[source]
        source: CallError,
    },
    #[error("binding {binding} ({plugin}) returned an object for a request without one")]
    ObjectWithoutRequestObject { binding: String, plugin: String },
    #[error("binding {binding} ({plugin}) returned an object that is not JSON: {source}")]
    Object {
        binding: String,
        plugin: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("binding {binding} ({plugin}): {source}")]
    Patch {
        binding: String,
        plugin: String,
        #[source]
        source: PatchError,
    },
}

impl Failure {
    /// Whether the plugin failed to decide (its failure policy applies),
    /// rather than no plugin being there to ask.
    fn is_plugin_failure(&self) -> bool {
        !matches!(
            self,
            Self::NotInService { .. } | Self::NoAdmission { .. } | Self::Operation(_)
        )
    }

    /// A bounded label for metrics.
    fn reason(&self) -> &'static str {
        match self {
            Self::NotInService { .. } => "NotInService",
            Self::NoAdmission { .. } => "NotExported",
            Self::Operation(_) => "UnknownOperation",
            Self::Call { source, .. } => source.reason(),
            Self::ObjectWithoutRequestObject { .. } | Self::Object { .. } => "InvalidOutput",
            Self::Patch { .. } => "InvalidPatch",
        }
    }
}

/// Answers `request` for `binding`, with `version` (the binding's version
/// in service when the review arrived, if any).
///
/// # Guarantees
/// Always an answer carrying the request's `uid`. The plugin runs in a
/// fresh sandbox under the binding's limits, with the binding's settings
/// and the request's dry-run flag; it may read its granted read kinds
/// through `reads` (no SQL). A mutation's answer
/// carries a patch only when the plugin changed the object, and only a
/// patch proven to turn the submitted object into the plugin's. Each
/// review is counted in `wasm_operator_admission_requests_total` and
/// timed; each denial not made by the plugin is counted by reason.
pub async fn answer(
    decision: Decision,
    binding: &str,
    version: Option<BoundPlugin>,
    request: &AdmissionRequest,
    metrics: &Metrics,
    reads: &Arc<dyn HostServices>,
) -> AdmissionResponse {
    let started = Instant::now();
    // The binding's name comes from the URL: only names with a version in
    // service become labels, so that stray paths cannot add series.
    let labels = match &version {
        Some(version) => BindingLabels::new(binding, version.plugin_name()),
        None => BindingLabels::new("", ""),
    };
    let policy = version
        .as_ref()
        .map_or(FailurePolicy::Fail, |v| v.admission.failure_policy());
    let response = match decide(decision, binding, version, request, metrics, &labels, reads).await
    {
        Ok(response) => response,
        Err(failure) => failed(binding, request, &labels, &failure, policy, metrics),
    };
    metrics.record_admission(
        &labels,
        operation_label(&request.operation),
        response.allowed,
        started.elapsed(),
    );
    response
}

/// The one place a failure becomes an answer: a denial, or under
/// `failurePolicy: Ignore` an allowance with a warning when the plugin
/// failed to decide.
fn failed(
    binding: &str,
    request: &AdmissionRequest,
    labels: &BindingLabels,
    failure: &Failure,
    policy: FailurePolicy,
    metrics: &Metrics,
) -> AdmissionResponse {
    metrics.record_admission_failure(labels, failure.reason());
    if policy == FailurePolicy::Ignore && failure.is_plugin_failure() {
        tracing::warn!(%binding, uid = %request.uid, reason = failure.reason(), error = %failure, "admission review allowed without the plugin's decision (failurePolicy: Ignore)");
        return AdmissionResponse::allow(&request.uid, vec![ignored_warning(failure)]);
    }
    tracing::warn!(%binding, uid = %request.uid, reason = failure.reason(), error = %failure, "admission review denied");
    AdmissionResponse::deny(&request.uid, failure.to_string(), Vec::new())
}

/// The warning of a review allowed under `failurePolicy: Ignore`: the
/// binding and the reason, first, as kubectl prints it.
fn ignored_warning(failure: &Failure) -> String {
    format!("allowed without its decision (failurePolicy: Ignore): {failure}")
}

async fn decide(
    decision: Decision,
    binding: &str,
    version: Option<BoundPlugin>,
    request: &AdmissionRequest,
    metrics: &Metrics,
    labels: &BindingLabels,
    reads: &Arc<dyn HostServices>,
) -> Result<AdmissionResponse, Failure> {
    let Some(version) = version else {
        return Err(Failure::NotInService {
            binding: binding.to_owned(),
        });
    };
    let plugin = version.plugin_name().to_owned();
    if !version.plugin.description().offers_admission {
        return Err(Failure::NoAdmission {
            binding: binding.to_owned(),
            plugin,
        });
    }
    let input = runtime::AdmissionRequest {
        operation: operation(&request.operation)?,
        object: request.object.as_ref().map(json_text),
        old_object: request.old_object.as_ref().map(json_text),
        user: request.user_info.username.clone(),
        dry_run: request.dry_run,
        settings: json_text(&version.settings),
    };
    // Reads only: the binding's read grants, no children, no servers.
    let ctx = || CallContext {
        services: Arc::clone(reads),
        grants: Arc::new(Grants {
            read_kinds: version.grants.read_kinds.clone(),
            ..Grants::default()
        }),
    };
    let call_failed = |source: CallError| {
        metrics.record_call_failure(labels, &source);
        Failure::Call {
            binding: binding.to_owned(),
            plugin: plugin.clone(),
            source,
        }
    };
    let timer = metrics.time_plugin_call(labels, decision.export());
    match decision {
        Decision::Validate => {
            let validation = version
                .plugin
                .validate(&input, ctx())
                .await
                .map_err(call_failed)?;
            drop(timer);
            Ok(if validation.allowed {
                AdmissionResponse::allow(&request.uid, validation.warnings)
            } else {
                let message = validation
                    .message
                    .unwrap_or_else(|| format!("denied by binding {binding} ({plugin})"));
                AdmissionResponse::deny(&request.uid, message, validation.warnings)
            })
        }
        Decision::Mutate => {
            let mutation = version
                .plugin
                .mutate(&input, ctx())
                .await
                .map_err(call_failed)?;
            drop(timer);
            let allowed = AdmissionResponse::allow(&request.uid, mutation.warnings);
            let Some(wanted) = mutation.object else {
                return Ok(allowed);
            };
            let Some(submitted) = &request.object else {
                return Err(Failure::ObjectWithoutRequestObject {
                    binding: binding.to_owned(),
                    plugin,
                });
            };
            let wanted: Value = match serde_json::from_str(&wanted) {
                Ok(wanted) => wanted,
                Err(source) => {
                    return Err(Failure::Object {
                        binding: binding.to_owned(),
                        plugin,
                        source,
                    });
                }
            };
            match patch_between(submitted, &wanted) {
                Ok(Some(patch)) => Ok(allowed.with_patch(&patch)),
                Ok(None) => Ok(allowed),
                Err(source) => Err(Failure::Patch {
                    binding: binding.to_owned(),
                    plugin,
                    source,
                }),
            }
        }
    }
}

fn operation(name: &str) -> Result<Operation, Failure> {
    match name {
        "CREATE" => Ok(Operation::Create),
        "UPDATE" => Ok(Operation::Update),
        "DELETE" => Ok(Operation::Delete),
        "CONNECT" => Ok(Operation::Connect),
        other => Err(Failure::Operation(other.to_owned())),
    }
}

/// The operation as a bounded label.
fn operation_label(name: &str) -> &'static str {
    match name {
        "CREATE" => "CREATE",
        "UPDATE" => "UPDATE",
        "DELETE" => "DELETE",
        "CONNECT" => "CONNECT",
        _ => "other",
    }
}

fn json_text(value: &Value) -> String {
    // A `Value` always serializes: its map keys are strings.
    serde_json::to_string(value).unwrap_or_default()
}
