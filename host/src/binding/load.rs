//! Turns a `ReconcilerPlugin`'s component into a [`BoundPlugin`]: reads the
//! component, checks its pin, loads it, checks that it may replace the
//! version in service, validates the settings against the plugin's schema,
//! and computes its grants.
//!
//! The operator (the [`supervisor`](super::supervisor)) and `wasm-operator
//! plugin push` ([`crate::publish`]) make the same checks through these
//! functions.

use std::collections::BTreeSet;

use k8s_openapi::api::core::v1::ConfigMap;
use serde_json::{Value, json};

use super::bound::BoundPlugin;
use crate::crd::{ConfigMapSource, GrantsSpec, ReconcilerPluginSpec};
use crate::grants::{Grants, ServerPattern};
use crate::runtime::{LoadError, Plugin, PluginDescription, PluginDigest, Runtime};
use crate::vocabulary::ObjectKind;

/// The most a ConfigMap can hold; components are refused above it.
pub const MAX_COMPONENT_BYTES: usize = 1 << 20;

/// Why a binding could not be turned into a running plugin, or a new
/// version of it was refused.
#[derive(Debug, thiserror::Error)]
pub enum BindingError {
    /// Neither or both of `spec.source.configMap` and `spec.source.file` are set.
    #[error("spec.source: set exactly one of configMap and file")]
    Source,
    /// The ConfigMap the binding points at does not exist.
    #[error(
        "spec.source.configMap: ConfigMap {namespace}/{name} not found; create it \
         (wasm-operator plugin push) or point the binding at another"
    )]
    ConfigMapNotFound {
        /// Its namespace.
        namespace: String,
        /// Its name.
        name: String,
    },
    /// The ConfigMap has no such `binaryData` key.
    #[error(
        "spec.source.configMap: ConfigMap {namespace}/{name} has no binaryData key {key:?}; \
         components go in binaryData (wasm-operator plugin push puts them there)"
    )]
    KeyNotFound {
        /// Its namespace.
        namespace: String,
        /// Its name.
        name: String,
        /// The missing key.
        key: String,
    },
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
    #[error(
        "spec.sha256: the component's digest is {found}, but the binding pins {pinned}; \
         update the pin together with the component"
    )]
    DigestMismatch {
        /// The pin.
        pinned: PluginDigest,
        /// The component's digest.
        found: PluginDigest,
    },
    /// The component did not load.
    #[error(transparent)]
    Load(#[from] LoadError),
    /// The component reconciles another kind than the version in service.
    #[error(
        "the component reconciles {found}, but this binding reconciles {serving}; a binding \
         cannot change its kind: create a new ReconcilerPlugin for {found}"
    )]
    TargetChanged {
        /// The kind of the version in service.
        serving: String,
        /// The kind the component names in `describe`.
        found: String,
    },
    /// The component gives itself another name than the version in service.
    #[error(
        "the component calls itself {found:?}, but the version in service is {serving:?}; \
         the name keys the finalizer, field manager and labels of every object the plugin \
         manages: create a new ReconcilerPlugin for another plugin"
    )]
    Renamed {
        /// The name of the version in service.
        serving: String,
        /// The name the component gives in `describe`.
        found: String,
    },
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
}

impl BindingError {
    /// A bounded reason for conditions, events and metrics: each check has
    /// its own.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Source
            | Self::ConfigMapNotFound { .. }
            | Self::KeyNotFound { .. }
            | Self::File { .. } => "SourceUnavailable",
            Self::TooLarge { .. } => "ComponentTooLarge",
            Self::BadPin(_) | Self::DigestMismatch { .. } => "DigestMismatch",
            Self::Load(error) => match error {
                LoadError::NotAComponent { .. } => "NotAComponent",
                LoadError::Malformed { .. } => "MalformedComponent",
                LoadError::IncompatibleWit { .. } => "IncompatibleWit",
                LoadError::MissingExport { .. } => "MissingExport",
                LoadError::UnsatisfiedImport { .. } => "UnsatisfiedImport",
                LoadError::Describe { .. } => "DescribeFailed",
                LoadError::CompileTask { .. } => "LoadFailed",
            },
            Self::TargetChanged { .. } => "TargetKindChanged",
            Self::Renamed { .. } => "PluginRenamed",
            Self::Settings { .. } | Self::Schema(_) => "InvalidSettings",
        }
    }
}

/// Refuses components larger than a ConfigMap may hold.
///
/// # Errors
/// [`BindingError::TooLarge`].
pub fn check_size(size: usize) -> Result<(), BindingError> {
    if size > MAX_COMPONENT_BYTES {
        return Err(BindingError::TooLarge { size });
    }
    Ok(())
}

/// The component a ConfigMap holds under the binding's key.
///
/// # Errors
/// [`BindingError::KeyNotFound`] or [`BindingError::TooLarge`].
pub fn component_in(
    config_map: &ConfigMap,
    source: &ConfigMapSource,
) -> Result<Vec<u8>, BindingError> {
    let bytes = config_map
        .binary_data
        .as_ref()
        .and_then(|data| data.get(&source.key))
        .map(|b| b.0.clone())
        .ok_or_else(|| BindingError::KeyNotFound {
            namespace: source.namespace.clone(),
            name: source.name.clone(),
            key: source.key.clone(),
        })?;
    check_size(bytes.len())?;
    Ok(bytes)
}

/// Reads a component from the operator's filesystem (`spec.source.file`).
///
/// # Errors
/// [`BindingError::File`] or [`BindingError::TooLarge`].
pub async fn read_file(path: &str) -> Result<Vec<u8>, BindingError> {
    let bytes = tokio::fs::read(path)
        .await
        .map_err(|source| BindingError::File {
            path: path.to_owned(),
            source,
        })?;
    check_size(bytes.len())?;
    Ok(bytes)
}

/// Checks a component's digest against the binding's pin, if it has one.
///
/// # Errors
/// [`BindingError::BadPin`] or [`BindingError::DigestMismatch`].
pub fn check_pin(spec: &ReconcilerPluginSpec, digest: &PluginDigest) -> Result<(), BindingError> {
    let Some(pin) = &spec.sha256 else {
        return Ok(());
    };
    let pinned = PluginDigest::parse(pin).ok_or_else(|| BindingError::BadPin(pin.clone()))?;
    if pinned != *digest {
        return Err(BindingError::DigestMismatch {
            pinned,
            found: digest.clone(),
        });
    }
    Ok(())
}

/// Checks that a new version may replace the one in service, which is
/// named `serving_name` and reconciles `serving_target` (`group/version/Kind`):
/// a binding keeps its kind and its plugin's name for its whole life.
///
/// # Errors
/// [`BindingError::TargetChanged`] or [`BindingError::Renamed`].
pub fn check_replaces(
    serving_name: &str,
    serving_target: &str,
    next: &PluginDescription,
) -> Result<(), BindingError> {
    let target = next.target.to_string();
    if target != serving_target {
        return Err(BindingError::TargetChanged {
            serving: serving_target.to_owned(),
            found: target,
        });
    }
    if next.name != serving_name {
        return Err(BindingError::Renamed {
            serving: serving_name.to_owned(),
            found: next.name.clone(),
        });
    }
    Ok(())
}

/// Binds a loaded plugin to a binding's spec: validates the settings
/// against the plugin's schema, computes the grants, applies the limits.
///
/// # Errors
/// [`BindingError::Settings`] or [`BindingError::Schema`].
pub fn bind(plugin: &Plugin, spec: &ReconcilerPluginSpec) -> Result<BoundPlugin, BindingError> {
    let settings = spec.settings.clone().unwrap_or_else(|| json!({}));
    validate_settings(&plugin.description().settings_schema, &settings)?;
    Ok(BoundPlugin {
        plugin: plugin.with_limits(spec.limits.to_limits()),
        grants: grants_for(plugin.description(), &spec.grants),
        settings,
        concurrency: spec.limits.concurrency(),
        admission: spec.admission.clone().unwrap_or_default(),
    })
}

/// Loads component bytes as a version of a binding.
///
/// # Guarantees
/// The checks run in this order, and the first that fails is returned: the
/// pin; loading (the component header, compiling off the async threads or
/// reading the precompiled cache, the WIT version, the exports, `describe`);
/// when a version is in service, the same kind and the same plugin name;
/// the settings against the new settings schema. Bytes with the digest of
/// the version in service reuse its compiled plugin.
///
/// # Errors
/// Any [`BindingError`] but the source ones; nothing is changed in the
/// cluster.
pub async fn load(
    runtime: &Runtime,
    spec: &ReconcilerPluginSpec,
    bytes: &[u8],
    serving: Option<&BoundPlugin>,
) -> Result<BoundPlugin, BindingError> {
    let digest = PluginDigest::of(bytes);
    check_pin(spec, &digest)?;
    let plugin = match serving {
        Some(serving) if *serving.plugin.digest() == digest => serving.plugin.clone(),
        _ => runtime.load(bytes).await?,
    };
    if let Some(serving) = serving {
        let current = serving.plugin.description();
        check_replaces(
            &current.name,
            &current.target.to_string(),
            plugin.description(),
        )?;
    }
    bind(&plugin, spec)
}

/// The grants a plugin runs under: what it requested in `describe`, as far
/// as its binding allows it.
pub fn grants_for(description: &PluginDescription, allowed: &GrantsSpec) -> Grants {
    let requested = |requested: &[ObjectKind], allowed: &[ObjectKind]| -> BTreeSet<ObjectKind> {
        requested
            .iter()
            .filter(|kind| allowed.contains(kind))
            .cloned()
            .collect()
    };
    Grants {
        read_kinds: requested(&description.read_kinds, &allowed.read),
        child_kinds: requested(&description.child_kinds, &allowed.children),
        servers: if description.wants_sql {
            allowed.servers.iter().map(ServerPattern::new).collect()
        } else {
            Vec::new()
        },
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::binding::fixtures::binding;

    fn description(name: &str, kind: &str) -> PluginDescription {
        PluginDescription {
            name: name.into(),
            version: "0.1.0".into(),
            target: ObjectKind::new("examples.systems.mikemiller.tech", "v1alpha1", kind),
            child_kinds: Vec::new(),
            read_kinds: Vec::new(),
            wants_sql: false,
            settings_schema: json!({}),
            wit_version: "0.1.0".into(),
            offers_admission: false,
            admission: None,
            role: crate::runtime::PluginRole::Reconciler,
        }
    }

    #[test]
    fn a_new_version_must_keep_the_kind_and_the_name() {
        let serving = description("greeting", "Greeting");
        let target = serving.target.to_string();
        assert!(check_replaces("greeting", &target, &serving).is_ok());
        let error =
            check_replaces("greeting", &target, &description("greeting", "Farewell")).unwrap_err();
        assert_eq!(error.reason(), "TargetKindChanged");
        assert!(
            error.to_string().contains("create a new ReconcilerPlugin"),
            "{error}"
        );
        let error =
            check_replaces("greeting", &target, &description("other", "Greeting")).unwrap_err();
        assert_eq!(error.reason(), "PluginRenamed");
    }

    #[test]
    fn a_pin_refuses_every_other_digest() {
        let mut spec = binding().spec;
        let digest = PluginDigest::of(b"v1");
        assert!(check_pin(&spec, &digest).is_ok());
        spec.sha256 = Some(digest.to_string());
        assert!(check_pin(&spec, &digest).is_ok());
        let error = check_pin(&spec, &PluginDigest::of(b"v2")).unwrap_err();
        assert_eq!(error.reason(), "DigestMismatch");
        spec.sha256 = Some("sha256:nope".into());
        assert!(matches!(
            check_pin(&spec, &digest),
            Err(BindingError::BadPin(_))
        ));
    }

    #[test]
    fn a_config_map_without_the_key_or_with_too_much_is_refused() {
        let source = binding().spec.source.config_map.unwrap();
        let mut config_map = ConfigMap::default();
        let error = component_in(&config_map, &source).unwrap_err();
        assert!(
            error.to_string().contains("no binaryData key \"k\""),
            "{error}"
        );
        config_map.binary_data = Some(
            [(
                "k".to_owned(),
                k8s_openapi::ByteString(vec![0; MAX_COMPONENT_BYTES + 1]),
            )]
            .into(),
        );
        assert_eq!(
            component_in(&config_map, &source).unwrap_err().reason(),
            "ComponentTooLarge"
        );
    }

    #[test]
    fn each_check_has_its_own_reason() {
        let digest = PluginDigest::of(b"x");
        let reasons = [
            BindingError::Load(LoadError::NotAComponent { found: "garbage" }).reason(),
            BindingError::Load(LoadError::Malformed {
                digest: digest.clone(),
                reason: "truncated".into(),
            })
            .reason(),
            BindingError::Load(LoadError::IncompatibleWit {
                digest,
                package: "p",
                found: "1.0.0".into(),
                accepted: "0.1.0",
                compatible: "0.1".into(),
            })
            .reason(),
            BindingError::TargetChanged {
                serving: "a".into(),
                found: "b".into(),
            }
            .reason(),
            BindingError::Settings {
                path: String::new(),
                reason: "x".into(),
            }
            .reason(),
        ];
        let unique: std::collections::BTreeSet<_> = reasons.iter().collect();
        assert_eq!(unique.len(), reasons.len(), "{reasons:?}");
    }

    #[test]
    fn a_plugin_gets_only_what_it_asks_for_and_its_binding_allows() {
        let cm = ObjectKind::new("", "v1", "ConfigMap");
        let secret = ObjectKind::new("", "v1", "Secret");
        let description = PluginDescription {
            child_kinds: vec![cm.clone(), secret.clone()],
            read_kinds: vec![secret],
            ..description("p", "Thing")
        };
        let grants = grants_for(
            &description,
            &GrantsSpec {
                read: vec![cm.clone()],
                children: vec![cm.clone()],
                servers: vec!["db/main".into()],
            },
        );
        assert_eq!(grants.child_kinds, BTreeSet::from([cm]));
        assert!(
            grants.read_kinds.is_empty(),
            "the binding does not allow Secret reads"
        );
        assert!(grants.servers.is_empty(), "the plugin asked for no SQL");
    }
}
