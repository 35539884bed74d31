//! `wasm-operator plugin push`: publishes a built component in a ConfigMap
//! and, optionally, binds it with a `ReconcilerPlugin`, after the checks the
//! operator makes. A component the operator would refuse never reaches the
//! cluster: the component is checked locally first, then against every
//! binding it would reach, and only then written.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::{Client, ResourceExt};
use serde_json::{Value, json};

use crate::binding::{self, BindingError};
use crate::crd::{ConfigMapSource, ReconcilerPlugin, ReconcilerPluginSpec};
use crate::runtime::{Plugin, PluginDigest, Runtime};

/// The field manager of the bindings `push --bind` writes.
pub const FIELD_MANAGER: &str = "wasm-operator-push";

/// What to publish, and where.
#[derive(Debug, Clone)]
pub struct Publication {
    /// Name of the ConfigMap, and of the `ReconcilerPlugin` with `bind`.
    pub name: String,
    /// Namespace of the ConfigMap.
    pub namespace: String,
    /// Key of the ConfigMap's `binaryData`.
    pub key: String,
    /// Also create or update the `ReconcilerPlugin` named `name` so that it
    /// loads from this key.
    pub bind: bool,
    /// With `bind`: pin the binding to the component's sha256.
    pub pin: bool,
    /// The binding's settings: checked against the plugin's schema, and set
    /// in the binding with `bind`.
    pub settings: Option<Value>,
    /// With `bind`: grant the binding exactly the reads and children the
    /// plugin requests in `describe`.
    pub grant_requested: bool,
}

impl Publication {
    fn source(&self) -> ConfigMapSource {
        ConfigMapSource {
            namespace: self.namespace.clone(),
            name: self.name.clone(),
            key: self.key.clone(),
        }
    }
}

/// What was published.
#[derive(Debug, Clone)]
pub struct Published {
    /// The component's digest.
    pub digest: PluginDigest,
    /// The bindings that load from the key now, and will swap the component in.
    pub bindings: Vec<String>,
}

/// Why a component was not published. The messages do not repeat their
/// sources: `wasm-operator` prints the whole chain.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    /// The operator would refuse the component whatever the binding.
    #[error("the operator would refuse this component ({reason})", reason = .0.reason())]
    Refused(#[source] BindingError),
    /// A binding the component would reach would refuse it.
    #[error("ReconcilerPlugin {binding} would refuse this component ({})", .source.reason())]
    RefusedByBinding {
        /// The binding's name.
        binding: String,
        /// What it would refuse.
        #[source]
        source: BindingError,
    },
    /// The bindings could not be listed.
    #[error(
        "cannot list ReconcilerPlugins to check the component against them (is the CRD \
         installed? kubectl apply -f crds/)"
    )]
    ListBindings(#[source] kube::Error),
    /// The ConfigMap could not be written.
    #[error("cannot write ConfigMap {namespace}/{name}")]
    WriteConfigMap {
        /// Its namespace.
        namespace: String,
        /// Its name.
        name: String,
        /// The API error.
        #[source]
        source: kube::Error,
    },
    /// The binding could not be written.
    #[error("cannot write ReconcilerPlugin {name}")]
    WriteBinding {
        /// Its name.
        name: String,
        /// The API error.
        #[source]
        source: kube::Error,
    },
}

/// Loads `bytes` as the operator does (size, component, WIT version,
/// exports, `describe`) and checks `settings` against the plugin's schema
/// when given. Runs locally: nothing is sent to the cluster.
///
/// # Errors
/// [`PublishError::Refused`] with the operator's reason.
pub async fn check(
    runtime: &Runtime,
    bytes: &[u8],
    settings: Option<&Value>,
) -> Result<Plugin, PublishError> {
    binding::check_size(bytes.len()).map_err(PublishError::Refused)?;
    let plugin = runtime
        .load(bytes)
        .await
        .map_err(|e| PublishError::Refused(e.into()))?;
    if let Some(settings) = settings {
        binding::validate_settings(&plugin.description().settings_schema, settings)
            .map_err(PublishError::Refused)?;
    }
    Ok(plugin)
}

/// Publishes a plugin that passed [`check`]: checks it against every
/// binding it would reach (their pin, the kind and name of the version they
/// serve, their settings), then creates or updates the ConfigMap key and,
/// with `bind`, the binding, by server-side apply.
///
/// # Errors
/// [`PublishError::RefusedByBinding`] before anything is written, else a
/// listing or writing error.
pub async fn publish(
    client: &Client,
    plugin: &Plugin,
    bytes: &[u8],
    publication: &Publication,
) -> Result<Published, PublishError> {
    let bindings = reached_bindings(client, plugin, publication).await?;
    write_config_map(client, bytes, publication).await?;
    if publication.bind {
        write_binding(client, plugin, publication).await?;
    }
    Ok(Published {
        digest: plugin.digest().clone(),
        bindings,
    })
}

/// The bindings that will load the component, each checked as the
/// operator will check it.
async fn reached_bindings(
    client: &Client,
    plugin: &Plugin,
    publication: &Publication,
) -> Result<Vec<String>, PublishError> {
    let source = publication.source();
    let all = Api::<ReconcilerPlugin>::all(client.clone())
        .list(&ListParams::default())
        .await
        .map_err(PublishError::ListBindings)?;
    let mut reached = Vec::new();
    let mut bound_exists = false;
    for binding in all.items {
        let rebound = publication.bind && binding.name_any() == publication.name;
        bound_exists |= rebound;
        if !rebound && binding.spec.source.config_map.as_ref() != Some(&source) {
            continue;
        }
        let spec = if rebound {
            bound_spec(binding.spec.clone(), plugin, publication)
        } else {
            binding.spec.clone()
        };
        check_against(&binding, &spec, plugin).map_err(|source| {
            PublishError::RefusedByBinding {
                binding: binding.name_any(),
                source,
            }
        })?;
        reached.push(binding.name_any());
    }
    if publication.bind && !bound_exists {
        let spec = bound_spec(empty_spec(&source), plugin, publication);
        binding::bind(plugin, &spec).map_err(|source| PublishError::RefusedByBinding {
            binding: publication.name.clone(),
            source,
        })?;
        reached.push(publication.name.clone());
    }
    Ok(reached)
}

/// The operator's checks of a component against a binding that already
/// exists: its pin, the version it serves (same kind and name), its settings.
fn check_against(
    binding: &ReconcilerPlugin,
    spec: &ReconcilerPluginSpec,
    plugin: &Plugin,
) -> Result<(), BindingError> {
    binding::check_pin(spec, plugin.digest())?;
    let status = binding.status.clone().unwrap_or_default();
    if let (Some(name), Some(target)) = (&status.plugin_name, &status.target) {
        binding::check_replaces(name, target, plugin.description())?;
    }
    binding::bind(plugin, spec).map(drop)
}

fn empty_spec(source: &ConfigMapSource) -> ReconcilerPluginSpec {
    ReconcilerPluginSpec {
        source: crate::crd::PluginSource {
            config_map: Some(source.clone()),
            file: None,
        },
        sha256: None,
        settings: None,
        limits: Default::default(),
        grants: Default::default(),
        admission: None,
    }
}

/// A binding's spec once `push --bind` has written its fields.
fn bound_spec(
    mut spec: ReconcilerPluginSpec,
    plugin: &Plugin,
    publication: &Publication,
) -> ReconcilerPluginSpec {
    spec.source.config_map = Some(publication.source());
    if publication.pin {
        spec.sha256 = Some(plugin.digest().to_string());
    }
    if let Some(settings) = &publication.settings {
        spec.settings = Some(settings.clone());
    }
    if publication.grant_requested {
        let d = plugin.description();
        spec.grants.read = d.read_kinds.clone();
        spec.grants.children = d.child_kinds.clone();
    }
    spec
}

async fn write_config_map(
    client: &Client,
    bytes: &[u8],
    publication: &Publication,
) -> Result<(), PublishError> {
    let config_map = ConfigMap {
        metadata: ObjectMeta {
            name: Some(publication.name.clone()),
            namespace: Some(publication.namespace.clone()),
            ..ObjectMeta::default()
        },
        binary_data: Some(BTreeMap::from([(
            publication.key.clone(),
            ByteString(bytes.to_vec()),
        )])),
        ..ConfigMap::default()
    };
    // One field manager per key: applying one key never removes the others
    // (a previous version kept for a rollback, say).
    let manager = format!("{FIELD_MANAGER}.{}", publication.key);
    Api::<ConfigMap>::namespaced(client.clone(), &publication.namespace)
        .patch(
            &publication.name,
            &PatchParams::apply(&manager).force(),
            &Patch::Apply(&config_map),
        )
        .await
        .map_err(|source| PublishError::WriteConfigMap {
            namespace: publication.namespace.clone(),
            name: publication.name.clone(),
            source,
        })?;
    Ok(())
}

async fn write_binding(
    client: &Client,
    plugin: &Plugin,
    publication: &Publication,
) -> Result<(), PublishError> {
    let source = publication.source();
    let mut spec = json!({"source": {"configMap": source}});
    if publication.pin {
        spec["sha256"] = json!(plugin.digest().to_string());
    }
    if let Some(settings) = &publication.settings {
        spec["settings"] = settings.clone();
    }
    if publication.grant_requested {
        let d = plugin.description();
        spec["grants"] = json!({
            "read": d.read_kinds,
            "children": d.child_kinds,
        });
    }
    let binding = json!({
        "apiVersion": "systems.mikemiller.tech/v1alpha1",
        "kind": "ReconcilerPlugin",
        "metadata": {"name": publication.name},
        "spec": spec,
    });
    Api::<ReconcilerPlugin>::all(client.clone())
        .patch(
            &publication.name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&binding),
        )
        .await
        .map_err(|source| PublishError::WriteBinding {
            name: publication.name.clone(),
            source,
        })?;
    Ok(())
}
