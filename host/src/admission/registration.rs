//! Registration: the leader keeps one ValidatingWebhookConfiguration and
//! one MutatingWebhookConfiguration per binding whose version in service
//! exports `admission`, named after the binding, and deletes those of
//! bindings that no longer have one.
//!
//! # Ownership
//! The host writes (server-side apply, field manager [`FIELD_MANAGER`])
//! and deletes only configurations it owns: labelled [`MANAGED_BY_LABEL`]
//! `=` [`MANAGED_BY`] and owned by the binding's `ReconcilerPlugin`. A
//! configuration of the same name that someone else made is left alone,
//! with a warning. The owner reference lets the garbage collector remove
//! the configurations with the binding even when no operator runs.
//!
//! What a configuration says is built in
//! [`configuration`](super::configuration).

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use k8s_openapi::api::admissionregistration::v1::{
    MutatingWebhookConfiguration, ValidatingWebhookConfiguration,
};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
use kube::core::GroupVersionKind;
use kube::{Client, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::watch;

use super::configuration::{
    CaSource, Hooks, MANAGED_BY, MANAGED_BY_LABEL, RegistrationConfig, Scope, owned, scope,
};
use crate::binding::{BoundPlugin, InService, Shutdown};
use crate::crd::ReconcilerPlugin;

/// The field manager of the host's writes to webhook configurations.
pub const FIELD_MANAGER: &str = "wasm-operator";

/// How often the leader re-applies everything, to repair drift.
const RESYNC: Duration = Duration::from_secs(30);

/// How soon a failed registration is tried again.
const RETRY: Duration = Duration::from_secs(2);

/// Why a configuration could not be written.
#[derive(Debug, thiserror::Error)]
pub enum RegistrationError {
    /// The plugin's target kind is not served by the API server.
    #[error("binding {binding}: the API server does not serve {kind}: {source}; install its CRD")]
    Discovery {
        /// The binding.
        binding: String,
        /// The kind.
        kind: String,
        /// Why.
        #[source]
        source: kube::Error,
    },
    /// The plugin's object selector is not a label selector.
    #[error("binding {binding}: the plugin's admission object selector {selector:?}: {reason}")]
    Selector {
        /// The binding.
        binding: String,
        /// The selector.
        selector: String,
        /// What is wrong.
        reason: String,
    },
    /// A request to the API server failed.
    #[error(
        "cannot {action} {kind} {name}: {source}; the operator needs get, list, watch, create, patch and delete on webhook configurations"
    )]
    Api {
        /// `read`, `apply`, `list` or `delete`.
        action: &'static str,
        /// The configuration's kind.
        kind: &'static str,
        /// Its name.
        name: String,
        /// Why.
        #[source]
        source: kube::Error,
    },
}

/// The leader's registration of every binding's webhooks.
pub struct Registrar {
    client: Client,
    config: RegistrationConfig,
    in_service: InService,
    leading: watch::Receiver<bool>,
    /// Resources of target kinds, from discovery.
    plurals: HashMap<String, String>,
}

impl Registrar {
    /// A registrar for the versions of `in_service`, writing while
    /// `leading`.
    pub fn new(
        client: Client,
        config: RegistrationConfig,
        in_service: InService,
        leading: watch::Receiver<bool>,
    ) -> Self {
        Self {
            client,
            config,
            in_service,
            leading,
            plurals: HashMap::new(),
        }
    }

    /// Registers until `stop` fires: while this replica leads, at every
    /// change of the versions in service, of the CA bundle, of leadership,
    /// and every 30 s.
    pub async fn run(mut self, stop: Shutdown) {
        let mut versions = self.in_service.changes();
        let mut bundle = match &self.config.ca {
            CaSource::Bundle(bundle) => Some(bundle.clone()),
            _ => None,
        };
        let mut leading = self.leading.clone();
        loop {
            let mut wait = RESYNC;
            if *leading.borrow_and_update()
                && let Err(error) = self.register().await
            {
                tracing::warn!(%error, "registering the admission webhooks failed; retrying");
                wait = RETRY;
            }
            versions.borrow_and_update();
            tokio::select! {
                () = stop.clone() => return,
                () = tokio::time::sleep(wait) => {}
                Ok(()) = versions.changed() => {}
                Ok(()) = leading.changed() => {}
                Ok(()) = async {
                    match &mut bundle {
                        Some(bundle) => bundle.changed().await,
                        None => std::future::pending().await,
                    }
                } => {}
            }
        }
    }

    /// Applies the configurations of every binding in service with
    /// admission, and deletes the owned ones of every other.
    ///
    /// # Errors
    /// The first [`RegistrationError`]; the other bindings are still
    /// registered.
    pub async fn register(&mut self) -> Result<(), RegistrationError> {
        let mut first_error = None;
        let mut wanted = BTreeMap::new();
        for (name, version) in self.in_service.all() {
            let Some(scope) = scope(version.plugin.description()) else {
                continue;
            };
            match self.configurations(&name, &version, &scope).await {
                Ok(Some(pair)) => {
                    wanted.insert(name, pair);
                }
                Ok(None) => {}
                Err(error) => {
                    tracing::warn!(binding = %name, %error, "webhooks not registered");
                    first_error.get_or_insert(error);
                }
            }
        }
        for (name, (validating, mutating)) in &wanted {
            if let Err(error) = self.apply(name, validating).await {
                first_error.get_or_insert(error);
            }
            if let Err(error) = self.apply(name, mutating).await {
                first_error.get_or_insert(error);
            }
        }
        let keep = |name: &str| wanted.contains_key(name);
        if let Err(error) = self.prune::<ValidatingWebhookConfiguration>(&keep).await {
            first_error.get_or_insert(error);
        }
        if let Err(error) = self.prune::<MutatingWebhookConfiguration>(&keep).await {
            first_error.get_or_insert(error);
        }
        first_error.map_or(Ok(()), Err)
    }

    /// The pair of configurations of `binding`, or `None` when the binding
    /// is gone.
    async fn configurations(
        &mut self,
        binding: &str,
        version: &BoundPlugin,
        scope: &Scope,
    ) -> Result<
        Option<(ValidatingWebhookConfiguration, MutatingWebhookConfiguration)>,
        RegistrationError,
    > {
        let api: Api<ReconcilerPlugin> = Api::all(self.client.clone());
        let Some(owner) = api
            .get_opt(binding)
            .await
            .map_err(|source| RegistrationError::Api {
                action: "read",
                kind: "ReconcilerPlugin",
                name: binding.to_owned(),
                source,
            })?
        else {
            return Ok(None);
        };
        let plural = self.plural(binding, version).await?;
        let ca_bundle = match &self.config.ca {
            CaSource::Bundle(bundle) => bundle.borrow().clone(),
            _ => None,
        };
        let hooks = Hooks::new(&self.config, binding, version, scope, &plural, ca_bundle).map_err(
            |invalid| RegistrationError::Selector {
                binding: binding.to_owned(),
                selector: invalid.selector,
                reason: invalid.reason,
            },
        )?;
        Ok(Some(hooks.configurations(&self.config, &owner)))
    }

    async fn plural(
        &mut self,
        binding: &str,
        version: &BoundPlugin,
    ) -> Result<String, RegistrationError> {
        let target = &version.plugin.description().target;
        let key = target.to_string();
        if let Some(plural) = self.plurals.get(&key) {
            return Ok(plural.clone());
        }
        let gvk = GroupVersionKind::gvk(&target.group, &target.version, &target.kind);
        let (resource, _) = kube::discovery::pinned_kind(&self.client, &gvk)
            .await
            .map_err(|source| RegistrationError::Discovery {
                binding: binding.to_owned(),
                kind: key.clone(),
                source,
            })?;
        self.plurals.insert(key, resource.plural.clone());
        Ok(resource.plural)
    }

    /// Applies `desired` unless a configuration of that name exists that
    /// the host does not own.
    async fn apply<K>(&self, binding: &str, desired: &K) -> Result<(), RegistrationError>
    where
        K: Resource<DynamicType = (), Scope = k8s_openapi::ClusterResourceScope>
            + Clone
            + Serialize
            + DeserializeOwned
            + std::fmt::Debug,
    {
        let api: Api<K> = Api::all(self.client.clone());
        let kind = kind_name::<K>();
        let api_error = |action, source| RegistrationError::Api {
            action,
            kind,
            name: binding.to_owned(),
            source,
        };
        if let Some(existing) = api
            .get_opt(binding)
            .await
            .map_err(|e| api_error("read", e))?
            && !owned(existing.meta(), binding)
        {
            tracing::warn!(%binding, kind, "a webhook configuration of this name exists and is not the operator's: left alone, the binding's webhooks are not registered");
            return Ok(());
        }
        api.patch(
            binding,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(desired),
        )
        .await
        .map_err(|e| api_error("apply", e))?;
        Ok(())
    }

    /// Deletes the owned configurations of bindings `keep` does not keep.
    async fn prune<K>(&self, keep: &(dyn Fn(&str) -> bool + Sync)) -> Result<(), RegistrationError>
    where
        K: Resource<DynamicType = (), Scope = k8s_openapi::ClusterResourceScope>
            + Clone
            + DeserializeOwned
            + std::fmt::Debug,
    {
        let api: Api<K> = Api::all(self.client.clone());
        let kind = kind_name::<K>();
        let listed = api
            .list(&ListParams::default().labels(&format!("{MANAGED_BY_LABEL}={MANAGED_BY}")))
            .await
            .map_err(|source| RegistrationError::Api {
                action: "list",
                kind,
                name: String::new(),
                source,
            })?;
        for config in listed {
            let name = config.name_any();
            if keep(&name) || !owned(config.meta(), &name) {
                continue;
            }
            tracing::info!(binding = %name, kind, "the binding has no admission in service: deleting its webhook configuration");
            match api.delete(&name, &DeleteParams::default()).await {
                Ok(_) => {}
                Err(kube::Error::Api(status)) if status.code == 404 => {}
                Err(source) => {
                    return Err(RegistrationError::Api {
                        action: "delete",
                        kind,
                        name,
                        source,
                    });
                }
            }
        }
        Ok(())
    }
}

fn kind_name<K: Resource<DynamicType = ()>>() -> &'static str {
    if K::kind(&()) == "ValidatingWebhookConfiguration" {
        "ValidatingWebhookConfiguration"
    } else {
        "MutatingWebhookConfiguration"
    }
}
