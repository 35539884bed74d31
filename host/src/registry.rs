//! Turns `ReconcilerPlugin` bindings into running plugins: fetches the
//! component, checks its pin, loads it, validates the settings against the
//! plugin's schema, computes its grants, and reports the outcome in the
//! binding's status.

use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams};
use kube::{Client, ResourceExt};
use serde_json::{Value, json};

use crate::controller::{EffectiveGrants, PluginBinding};
use crate::crd::{ReconcilerPlugin, ReconcilerPluginStatus};
use crate::runtime::{LoadError, PluginDigest, Runtime};

/// The most a ConfigMap can hold; components are refused above it.
pub const MAX_COMPONENT_BYTES: usize = 1 << 20;

/// Why a binding could not be turned into a running plugin.
#[derive(Debug, thiserror::Error)]
pub enum BindingError {
    /// Neither or both of `spec.source.configMap` and `spec.source.file` are set.
    #[error("spec.source: set exactly one of configMap and file")]
    Source,
    /// The ConfigMap or its key is missing.
    #[error("spec.source.configMap: {0}")]
    ConfigMap(String),
    /// The local file could not be read.
    #[error("spec.source.file: cannot read {path}: {source}")]
    File {
        /// The path.
        path: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The component is larger than a ConfigMap may hold.
    #[error("the component is {size} bytes; a ConfigMap holds at most {MAX_COMPONENT_BYTES} bytes")]
    TooLarge {
        /// Its size.
        size: usize,
    },
    /// `spec.sha256` is not a sha256 digest.
    #[error(
        "spec.sha256: {0:?} is not a sha256 digest (64 hex digits, optionally prefixed sha256:)"
    )]
    BadPin(String),
    /// The component does not match `spec.sha256`.
    #[error("spec.sha256: the component's digest is {found}, but the binding pins {pinned}")]
    DigestMismatch {
        /// The pin.
        pinned: PluginDigest,
        /// The component's digest.
        found: PluginDigest,
    },
    /// The component did not load.
    #[error(transparent)]
    Load(#[from] LoadError),
    /// `spec.settings` does not satisfy the plugin's settings schema.
    #[error("spec.settings{path}: {reason}")]
    Settings {
        /// JSON pointer of the offending value (empty for the root).
        path: String,
        /// What is wrong.
        reason: String,
    },
    /// The plugin's settings schema is not a valid JSON Schema.
    #[error("the plugin's settings schema is invalid: {0}")]
    Schema(String),
    /// A Kubernetes API call failed.
    #[error("reading the component failed: {0}")]
    Kube(#[source] kube::Error),
}

impl BindingError {
    /// A bounded reason for conditions and metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Source | Self::ConfigMap(_) | Self::File { .. } | Self::Kube(_) => {
                "SourceUnavailable"
            }
            Self::TooLarge { .. } => "ComponentTooLarge",
            Self::BadPin(_) | Self::DigestMismatch { .. } => "DigestMismatch",
            Self::Load(LoadError::IncompatibleWit { .. }) => "IncompatibleWit",
            Self::Load(LoadError::NotAComponent { .. } | LoadError::Malformed { .. }) => {
                "InvalidComponent"
            }
            Self::Load(_) => "LoadFailed",
            Self::Settings { .. } | Self::Schema(_) => "InvalidSettings",
        }
    }
}

/// Fetches the component bytes a binding points at.
///
/// # Errors
/// [`BindingError::Source`], [`BindingError::ConfigMap`], [`BindingError::File`],
/// [`BindingError::Kube`] or [`BindingError::TooLarge`].
pub async fn fetch_component(
    client: &Client,
    binding: &ReconcilerPlugin,
) -> Result<Vec<u8>, BindingError> {
    let source = &binding.spec.source;
    let bytes = match (&source.config_map, &source.file) {
        (Some(cm), None) => {
            let api: Api<ConfigMap> = Api::namespaced(client.clone(), &cm.namespace);
            let config_map = api
                .get_opt(&cm.name)
                .await
                .map_err(BindingError::Kube)?
                .ok_or_else(|| {
                    BindingError::ConfigMap(format!(
                        "ConfigMap {}/{} not found",
                        cm.namespace, cm.name
                    ))
                })?;
            config_map
                .binary_data
                .and_then(|mut data| data.remove(&cm.key))
                .map(|b| b.0)
                .ok_or_else(|| {
                    BindingError::ConfigMap(format!(
                        "ConfigMap {}/{} has no binaryData key {:?}",
                        cm.namespace, cm.name, cm.key
                    ))
                })?
        }
        (None, Some(path)) => std::fs::read(path).map_err(|source| BindingError::File {
            path: path.clone(),
            source,
        })?,
        _ => return Err(BindingError::Source),
    };
    if bytes.len() > MAX_COMPONENT_BYTES {
        return Err(BindingError::TooLarge { size: bytes.len() });
    }
    Ok(bytes)
}

/// Loads a binding's component and checks it against the binding.
///
/// # Errors
/// Any [`BindingError`]; nothing is changed in the cluster.
pub async fn load(
    client: &Client,
    runtime: &Runtime,
    binding: &ReconcilerPlugin,
) -> Result<PluginBinding, BindingError> {
    let bytes = fetch_component(client, binding).await?;
    if let Some(pin) = &binding.spec.sha256 {
        let pinned = PluginDigest::parse(pin).ok_or_else(|| BindingError::BadPin(pin.clone()))?;
        let found = PluginDigest::of(&bytes);
        if pinned != found {
            return Err(BindingError::DigestMismatch { pinned, found });
        }
    }
    let plugin = runtime.load(&bytes).await?;
    let settings = binding.spec.settings.clone().unwrap_or_else(|| json!({}));
    validate_settings(&plugin.description().settings_schema, &settings)?;
    let grants = EffectiveGrants::intersect(plugin.description(), &binding.spec.grants);
    Ok(PluginBinding {
        plugin: plugin.with_limits(binding.spec.limits.to_limits()),
        grants,
        settings,
        concurrency: binding.spec.limits.concurrency(),
    })
}

/// Checks settings against a plugin's JSON Schema.
///
/// # Errors
/// [`BindingError::Settings`] naming the first offending field, or
/// [`BindingError::Schema`] when the schema itself is invalid.
pub fn validate_settings(schema: &Value, settings: &Value) -> Result<(), BindingError> {
    let validator =
        jsonschema::validator_for(schema).map_err(|e| BindingError::Schema(e.to_string()))?;
    match validator.iter_errors(settings).next() {
        None => Ok(()),
        Some(error) => {
            let pointer = error.instance_path().to_string();
            Err(BindingError::Settings {
                path: if pointer.is_empty() {
                    String::new()
                } else {
                    pointer.replace('/', ".")
                },
                reason: error.to_string(),
            })
        }
    }
}

/// Records the outcome of loading a binding in its status.
///
/// # Errors
/// When the status cannot be written.
pub async fn record_status(
    client: &Client,
    binding: &ReconcilerPlugin,
    outcome: Result<&PluginBinding, &BindingError>,
) -> Result<(), kube::Error> {
    let api: Api<ReconcilerPlugin> = Api::all(client.clone());
    let previous = binding.status.clone().unwrap_or_default();
    let generation = binding.metadata.generation;
    let mut status = ReconcilerPluginStatus {
        observed_generation: generation,
        ..previous.clone()
    };
    let (ok, reason, message) = match outcome {
        Ok(loaded) => {
            let d = loaded.plugin.description();
            status.digest = Some(loaded.plugin.digest().to_string());
            status.plugin_name = Some(d.name.clone());
            status.plugin_version = Some(d.version.clone());
            status.wit_version = Some(d.wit_version.clone());
            status.target = Some(d.target.to_string());
            status.last_error = None;
            (
                true,
                "Loaded",
                format!("{} {} reconciles {}", d.name, d.version, d.target),
            )
        }
        Err(error) => {
            status.last_error = Some(error.to_string());
            (false, error.reason(), error.to_string())
        }
    };
    status.conditions = ["Loaded", "Ready"]
        .iter()
        .map(|type_| {
            condition(
                &previous.conditions,
                type_,
                ok,
                reason,
                &message,
                generation,
            )
        })
        .collect();
    if status == previous {
        return Ok(());
    }
    let patch = json!({"status": status});
    api.patch_status(
        &binding.name_any(),
        &PatchParams::default(),
        &Patch::Merge(&patch),
    )
    .await?;
    Ok(())
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
