//! What a binding's status says: which version serves, and why the one it
//! points at was refused.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams};
use kube::{Client, ResourceExt};
use serde_json::{Value, json};

use super::bound::BoundPlugin;
use super::controller::ControllerStartError;
use super::load::BindingError;
use crate::crd::{ReconcilerPlugin, ReconcilerPluginStatus};
use crate::runtime::PluginDigest;
use crate::vocabulary::READY;

/// What a binding's status reports.
#[derive(Debug, Clone, Copy)]
pub enum BindingState<'a> {
    /// This version serves, and it is what the binding points at.
    Serving(&'a BoundPlugin),
    /// What the binding points at was refused; `serving`, if any, stays in
    /// service.
    Refused {
        /// The version that keeps serving.
        serving: Option<&'a BoundPlugin>,
        /// Why the binding's component was refused.
        error: &'a BindingError,
        /// The refused component's digest, when its bytes could be read.
        digest: Option<&'a PluginDigest>,
    },
    /// This version is loaded and is what the binding points at, but its
    /// controller could not start; it is started again until it can.
    NotStarted {
        /// The version loaded (it serves admission).
        serving: &'a BoundPlugin,
        /// Why its controller could not start.
        error: &'a ControllerStartError,
    },
}

/// The `Ready` reason of a binding whose controller could not start.
pub const CONTROLLER_NOT_STARTED: &str = "ControllerNotStarted";

/// The status that reports `state`, keeping the transition times of
/// unchanged conditions from `previous`.
pub fn status_for(
    binding: &ReconcilerPlugin,
    previous: &ReconcilerPluginStatus,
    state: BindingState<'_>,
) -> ReconcilerPluginStatus {
    let generation = binding.metadata.generation;
    let (serving, refused, not_started) = match state {
        BindingState::Serving(serving) => (Some(serving), None, None),
        BindingState::Refused {
            serving,
            error,
            digest,
        } => (serving, Some((error, digest)), None),
        BindingState::NotStarted { serving, error } => (Some(serving), None, Some(error)),
    };
    let mut status = ReconcilerPluginStatus {
        observed_generation: generation,
        rejected_digest: refused.and_then(|(_, d)| d.map(ToString::to_string)),
        last_error: refused
            .map(|(e, _)| e.to_string())
            .or_else(|| not_started.map(ToString::to_string)),
        ..ReconcilerPluginStatus::default()
    };
    let serving_message = serving.map(|s| {
        let d = s.plugin.description();
        status.digest = Some(s.plugin.digest().to_string());
        status.plugin_name = Some(d.name.clone());
        status.plugin_version = Some(d.version.clone());
        status.wit_version = Some(d.wit_version.clone());
        status.target = Some(d.target.to_string());
        format!(
            "{} {} ({}) reconciles {}",
            d.name,
            d.version,
            s.plugin.digest(),
            d.target
        )
    });
    let condition = |type_: &str, ok: bool, reason: &str, message: String| {
        condition(
            &previous.conditions,
            type_,
            ok,
            reason,
            &message,
            generation,
        )
    };
    let (loaded, ready) = match (serving_message, refused, not_started) {
        (Some(message), None, Some(error)) => (
            condition("Loaded", true, "Loaded", message.clone()),
            condition(
                READY,
                false,
                CONTROLLER_NOT_STARTED,
                format!("{message}, but its controller could not start: {error}"),
            ),
        ),
        (Some(message), None, None) => (
            condition("Loaded", true, "Loaded", message.clone()),
            condition(READY, true, "Serving", message),
        ),
        (Some(message), Some((error, _)), _) => (
            condition(
                "Loaded",
                false,
                error.reason(),
                format!(
                    "{error}; the previous version {} keeps serving",
                    status.digest.as_deref().unwrap_or_default()
                ),
            ),
            condition(READY, true, "Serving", message),
        ),
        (None, Some((error, _)), _) => (
            condition("Loaded", false, error.reason(), error.to_string()),
            condition(READY, false, error.reason(), error.to_string()),
        ),
        (None, None, _) => unreachable!("BindingState::Serving always has a version"),
    };
    status.conditions = vec![loaded, ready];
    status
}

/// Writes a binding's status reporting `state`, unless `previous` (the
/// status last written) already says the same. Returns the status now in
/// place.
///
/// # Errors
/// When the status cannot be written.
pub async fn record_status(
    client: &Client,
    binding: &ReconcilerPlugin,
    previous: &ReconcilerPluginStatus,
    state: BindingState<'_>,
) -> Result<ReconcilerPluginStatus, kube::Error> {
    let status = status_for(binding, previous, state);
    if status == *previous {
        return Ok(status);
    }
    let api: Api<ReconcilerPlugin> = Api::all(client.clone());
    api.patch_status(
        &binding.name_any(),
        &PatchParams::default(),
        &Patch::Merge(&json!({"status": status_patch(&status)})),
    )
    .await?;
    Ok(status)
}

/// The status as a merge patch: fields that are unset are written as
/// `null`, so that a merge patch removes what an earlier status said.
fn status_patch(status: &ReconcilerPluginStatus) -> Value {
    let mut patch = serde_json::to_value(status).unwrap_or_else(|_| json!({}));
    if let Some(fields) = patch.as_object_mut() {
        for key in [
            "digest",
            "pluginName",
            "pluginVersion",
            "witVersion",
            "target",
            "rejectedDigest",
            "lastError",
        ] {
            fields.entry(key).or_insert(Value::Null);
        }
    }
    patch
}

fn condition(
    previous: &[Condition],
    type_: &str,
    ok: bool,
    reason: &str,
    message: &str,
    generation: Option<i64>,
) -> Condition {
    let status = if ok { "True" } else { "False" };
    let since = previous
        .iter()
        .find(|c| c.type_ == type_ && c.status == status)
        .map(|c| c.last_transition_time.clone())
        .unwrap_or_else(|| Time(Timestamp::now()));
    Condition {
        type_: type_.to_owned(),
        status: status.to_owned(),
        reason: reason.to_owned(),
        message: message.to_owned(),
        last_transition_time: since,
        observed_generation: generation,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::binding::fixtures::binding;
    use crate::runtime::LoadError;

    #[test]
    fn a_refused_first_version_is_not_ready_and_names_the_refused_digest() {
        let digest = PluginDigest::of(b"bad");
        let error = BindingError::Load(LoadError::NotAComponent {
            found: "a core WebAssembly module",
        });
        let status = status_for(
            &binding(),
            &ReconcilerPluginStatus::default(),
            BindingState::Refused {
                serving: None,
                error: &error,
                digest: Some(&digest),
            },
        );
        assert_eq!(status.rejected_digest, Some(digest.to_string()));
        assert_eq!(status.digest, None);
        assert_eq!(status.observed_generation, Some(3));
        for type_ in ["Loaded", READY] {
            let c = status.conditions.iter().find(|c| c.type_ == type_).unwrap();
            assert_eq!(
                (c.status.as_str(), c.reason.as_str()),
                ("False", "NotAComponent")
            );
        }
        let patch = status_patch(&status);
        assert_eq!(patch["digest"], Value::Null, "{patch}");
        assert_eq!(patch["rejectedDigest"], json!(digest.to_string()));
    }
}
