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
//! # What a configuration says
//! Rules for the plugin's target kind (its resource from discovery) and the
//! operations of its admission scope; `sideEffects: None`,
//! `admissionReviewVersions: [v1]`; `failurePolicy` and `timeoutSeconds`
//! from the binding; a namespaceSelector leaving out the operator's own
//! namespace and `kube-system` (so that an outage of the operator never
//! blocks its own Pods or the control plane), ANDed with the binding's;
//! the scope's objectSelector and matchConditions; `clientConfig.service`
//! pointing at the operator's Service; and the CA: the shared CA's bundle,
//! or, with cert-manager, the `cert-manager.io/inject-ca-from` annotation
//! that has its CA injector fill `caBundle`.
//!
//! [`check_in_place`] is what `/readyz` asks on every replica: does the
//! certificate this replica serves chain to the `caBundle` of every
//! configuration it should be called through?

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use k8s_openapi::ByteString;
use k8s_openapi::api::admissionregistration::v1::{
    MatchCondition, MutatingWebhook, MutatingWebhookConfiguration, RuleWithOperations,
    ServiceReference, ValidatingWebhook, ValidatingWebhookConfiguration, WebhookClientConfig,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{
    LabelSelector, LabelSelectorRequirement, OwnerReference,
};
use kube::api::{Api, DeleteParams, ListParams, ObjectMeta, Patch, PatchParams};
use kube::core::GroupVersionKind;
use kube::{Client, Resource, ResourceExt};
use rustls::client::danger::ServerCertVerifier as _;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::watch;

use super::tls::ServingCertificate;
use crate::binding::{BoundPlugin, InService, Shutdown};
use crate::crd::ReconcilerPlugin;
use crate::runtime::{Operation, PluginDescription};

/// The field manager of the host's writes to webhook configurations.
pub const FIELD_MANAGER: &str = "wasm-operator";

/// The label marking the configurations the host owns.
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";

/// Its value.
pub const MANAGED_BY: &str = "wasm-operator";

/// The label naming the binding a configuration belongs to.
pub const BINDING_LABEL: &str = "systems.mikemiller.tech/binding";

/// cert-manager's CA injector fills `caBundle` from this Certificate.
pub const CERT_MANAGER_INJECT_ANNOTATION: &str = "cert-manager.io/inject-ca-from";

/// The label every namespace carries with its own name (set by the API
/// server since Kubernetes 1.21).
const NAMESPACE_NAME_LABEL: &str = "kubernetes.io/metadata.name";

/// How often the leader re-applies everything, to repair drift.
const RESYNC: Duration = Duration::from_secs(30);

/// How soon a failed registration is tried again.
const RETRY: Duration = Duration::from_secs(2);

/// Where the API server finds the CA that signed the webhooks' certificate.
#[derive(Debug, Clone)]
pub enum CaSource {
    /// The shared CA's bundle (PEM), as the certificate keeper publishes it.
    Bundle(watch::Receiver<Option<String>>),
    /// cert-manager injects the CA of this Certificate (`namespace/name`).
    CertManager(String),
    /// Whoever made `--webhook-cert-dir` fills `caBundle`.
    External,
}

/// How the configurations reach the operator.
#[derive(Debug, Clone)]
pub struct RegistrationConfig {
    /// The operator's namespace, left out of every webhook.
    pub operator_namespace: String,
    /// The webhook Service's name.
    pub service: String,
    /// Its namespace.
    pub service_namespace: String,
    /// Its port (443 by default).
    pub port: u16,
    /// Where `caBundle` comes from.
    pub ca: CaSource,
}

/// What a plugin's webhooks are called for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scope {
    /// `CREATE`, `UPDATE`, `DELETE`, `CONNECT`.
    pub operations: Vec<String>,
    /// A label selector (`app=db,tier in (a,b)`); empty for every object.
    pub object_selector: String,
    /// CEL conditions, by name.
    pub match_conditions: Vec<(String, String)>,
}

/// The admission scope of a plugin, or `None` when it does not admit: the
/// one place the plugin's declared scope (`describe` of `admission-info`,
/// else creates and updates of every object) is read.
pub fn scope(description: &PluginDescription) -> Option<Scope> {
    description.admission.as_ref().map(|scope| Scope {
        operations: scope
            .operations
            .iter()
            .map(|operation| operation_name(*operation).to_owned())
            .collect(),
        object_selector: scope.object_selector.clone(),
        match_conditions: scope
            .match_conditions
            .iter()
            .map(|c| (c.name.clone(), c.expression.clone()))
            .collect(),
    })
}

/// An operation as webhook rules name it.
fn operation_name(operation: Operation) -> &'static str {
    match operation {
        Operation::Create => "CREATE",
        Operation::Update => "UPDATE",
        Operation::Delete => "DELETE",
        Operation::Connect => "CONNECT",
    }
}

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
        let hooks = Hooks::new(&self.config, binding, version, scope, &plural, ca_bundle)?;
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

/// Whether the host owns a configuration named after `binding`: its label
/// and an owner reference to the binding.
fn owned(meta: &ObjectMeta, binding: &str) -> bool {
    let labelled = meta
        .labels
        .as_ref()
        .and_then(|l| l.get(MANAGED_BY_LABEL))
        .is_some_and(|v| v == MANAGED_BY);
    let by_binding = meta.owner_references.iter().flatten().any(|o| {
        o.kind == "ReconcilerPlugin"
            && o.api_version.starts_with(crate::crd::GROUP)
            && o.name == binding
    });
    labelled && by_binding
}

/// The parts both configurations of a binding share.
struct Hooks {
    binding: String,
    rules: Vec<RuleWithOperations>,
    failure_policy: String,
    timeout_seconds: i32,
    namespace_selector: LabelSelector,
    object_selector: Option<LabelSelector>,
    match_conditions: Option<Vec<MatchCondition>>,
    ca_bundle: Option<ByteString>,
}

impl Hooks {
    fn new(
        config: &RegistrationConfig,
        binding: &str,
        version: &BoundPlugin,
        scope: &Scope,
        plural: &str,
        ca_bundle: Option<String>,
    ) -> Result<Self, RegistrationError> {
        let target = &version.plugin.description().target;
        let mut namespace_selector = LabelSelector {
            match_expressions: Some(vec![LabelSelectorRequirement {
                key: NAMESPACE_NAME_LABEL.to_owned(),
                operator: "NotIn".to_owned(),
                values: Some(vec![
                    config.operator_namespace.clone(),
                    "kube-system".to_owned(),
                ]),
            }]),
            match_labels: None,
        };
        if let Some(extra) = &version.admission.namespace_selector {
            namespace_selector
                .match_expressions
                .get_or_insert_default()
                .extend(extra.match_expressions.iter().flatten().cloned());
            if let Some(labels) = &extra.match_labels
                && !labels.is_empty()
            {
                namespace_selector.match_labels = Some(labels.clone());
            }
        }
        let object_selector = if scope.object_selector.trim().is_empty() {
            None
        } else {
            Some(parse_selector(&scope.object_selector).map_err(|reason| {
                RegistrationError::Selector {
                    binding: binding.to_owned(),
                    selector: scope.object_selector.clone(),
                    reason,
                }
            })?)
        };
        let match_conditions = (!scope.match_conditions.is_empty()).then(|| {
            scope
                .match_conditions
                .iter()
                .map(|(name, expression)| MatchCondition {
                    name: name.clone(),
                    expression: expression.clone(),
                })
                .collect()
        });
        Ok(Self {
            binding: binding.to_owned(),
            rules: vec![RuleWithOperations {
                api_groups: Some(vec![target.group.clone()]),
                api_versions: Some(vec![target.version.clone()]),
                resources: Some(vec![plural.to_owned()]),
                operations: Some(scope.operations.clone()),
                scope: Some("*".to_owned()),
            }],
            failure_policy: version.admission.failure_policy().as_str().to_owned(),
            timeout_seconds: i32::from(version.admission.timeout_seconds()),
            namespace_selector,
            object_selector,
            match_conditions,
            ca_bundle: ca_bundle.map(|pem| ByteString(pem.into_bytes())),
        })
    }

    fn client_config(&self, config: &RegistrationConfig, path: &str) -> WebhookClientConfig {
        WebhookClientConfig {
            service: Some(ServiceReference {
                name: config.service.clone(),
                namespace: config.service_namespace.clone(),
                path: Some(format!("/{path}/{}", self.binding)),
                port: Some(i32::from(config.port)),
            }),
            ca_bundle: self.ca_bundle.clone(),
            url: None,
        }
    }

    fn metadata(&self, config: &RegistrationConfig, owner: &ReconcilerPlugin) -> ObjectMeta {
        let annotations = match &config.ca {
            CaSource::CertManager(certificate) => Some(BTreeMap::from([(
                CERT_MANAGER_INJECT_ANNOTATION.to_owned(),
                certificate.clone(),
            )])),
            _ => None,
        };
        ObjectMeta {
            name: Some(self.binding.clone()),
            labels: Some(BTreeMap::from([
                (MANAGED_BY_LABEL.to_owned(), MANAGED_BY.to_owned()),
                (BINDING_LABEL.to_owned(), self.binding.clone()),
            ])),
            annotations,
            owner_references: Some(vec![OwnerReference {
                api_version: ReconcilerPlugin::api_version(&()).into_owned(),
                kind: ReconcilerPlugin::kind(&()).into_owned(),
                name: owner.name_any(),
                uid: owner.uid().unwrap_or_default(),
                controller: Some(true),
                block_owner_deletion: None,
            }]),
            ..ObjectMeta::default()
        }
    }

    fn configurations(
        &self,
        config: &RegistrationConfig,
        owner: &ReconcilerPlugin,
    ) -> (ValidatingWebhookConfiguration, MutatingWebhookConfiguration) {
        let validating = ValidatingWebhookConfiguration {
            metadata: self.metadata(config, owner),
            webhooks: Some(vec![ValidatingWebhook {
                name: webhook_name("validate", &self.binding),
                admission_review_versions: vec!["v1".to_owned()],
                client_config: self.client_config(config, "validate"),
                failure_policy: Some(self.failure_policy.clone()),
                match_conditions: self.match_conditions.clone(),
                match_policy: None,
                namespace_selector: Some(self.namespace_selector.clone()),
                object_selector: self.object_selector.clone(),
                rules: Some(self.rules.clone()),
                side_effects: "None".to_owned(),
                timeout_seconds: Some(self.timeout_seconds),
            }]),
        };
        let mutating = MutatingWebhookConfiguration {
            metadata: self.metadata(config, owner),
            webhooks: Some(vec![MutatingWebhook {
                name: webhook_name("mutate", &self.binding),
                admission_review_versions: vec!["v1".to_owned()],
                client_config: self.client_config(config, "mutate"),
                failure_policy: Some(self.failure_policy.clone()),
                match_conditions: self.match_conditions.clone(),
                match_policy: None,
                namespace_selector: Some(self.namespace_selector.clone()),
                object_selector: self.object_selector.clone(),
                reinvocation_policy: None,
                rules: Some(self.rules.clone()),
                side_effects: "None".to_owned(),
                timeout_seconds: Some(self.timeout_seconds),
            }]),
        };
        (validating, mutating)
    }
}

/// The fully qualified name of a binding's webhook (the API server
/// requires at least three DNS labels).
pub fn webhook_name(decision: &str, binding: &str) -> String {
    format!("{binding}.{decision}.{}", crate::crd::GROUP)
}

/// A label selector in the `kubectl -l` syntax as a `LabelSelector`:
/// `k=v`, `k==v`, `k!=v`, `k`, `!k`, `k in (a,b)`, `k notin (a,b)`.
fn parse_selector(text: &str) -> Result<LabelSelector, String> {
    let mut labels = BTreeMap::new();
    let mut expressions = Vec::new();
    let mut requirement = |part: &str| -> Result<(), String> {
        let part = part.trim();
        let expression =
            |key: &str, operator: &str, values: Option<Vec<String>>| LabelSelectorRequirement {
                key: key.trim().to_owned(),
                operator: operator.to_owned(),
                values,
            };
        let set = |rest: &str| -> Result<Vec<String>, String> {
            let inner = rest
                .trim()
                .strip_prefix('(')
                .and_then(|r| r.strip_suffix(')'))
                .ok_or_else(|| format!("{part:?}: the values go in parentheses"))?;
            Ok(inner.split(',').map(|v| v.trim().to_owned()).collect())
        };
        if let Some((key, value)) = part.split_once("!=") {
            expressions.push(expression(
                key,
                "NotIn",
                Some(vec![value.trim().to_owned()]),
            ));
        } else if let Some((key, value)) = part.split_once("==").or_else(|| part.split_once('=')) {
            labels.insert(key.trim().to_owned(), value.trim().to_owned());
        } else if let Some((key, rest)) = part.split_once(" notin ") {
            expressions.push(expression(key, "NotIn", Some(set(rest)?)));
        } else if let Some((key, rest)) = part.split_once(" in ") {
            expressions.push(expression(key, "In", Some(set(rest)?)));
        } else if let Some(key) = part.strip_prefix('!') {
            expressions.push(expression(key, "DoesNotExist", None));
        } else if !part.is_empty() && !part.contains([' ', '(', ')']) {
            expressions.push(expression(part, "Exists", None));
        } else {
            return Err(format!("{part:?} is not a label requirement"));
        }
        Ok(())
    };
    let mut depth = 0_u32;
    let mut start = 0;
    for (i, c) in text.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth = depth.saturating_sub(1),
            ',' if depth == 0 => {
                requirement(&text[start..i])?;
                start = i + 1;
            }
            _ => {}
        }
    }
    requirement(&text[start..])?;
    Ok(LabelSelector {
        match_labels: (!labels.is_empty()).then_some(labels),
        match_expressions: (!expressions.is_empty()).then_some(expressions),
    })
}

/// Whether this replica can be called through the configurations of every
/// binding in service with admission: each exists and its `caBundle`
/// trusts the certificate `serving` serves, for the name
/// `<service>.<namespace>.svc`.
///
/// # Errors
/// What is not in place yet, for `/readyz`.
pub async fn check_in_place(
    client: &Client,
    in_service: &InService,
    serving: &ServingCertificate,
    server_name: &str,
) -> Result<(), String> {
    let bindings: Vec<String> = in_service
        .all()
        .into_iter()
        .filter(|(_, v)| scope(v.plugin.description()).is_some())
        .map(|(name, _)| name)
        .collect();
    if bindings.is_empty() {
        return Ok(());
    }
    let chain = serving.chain();
    let name = ServerName::try_from(server_name.to_owned())
        .map_err(|e| format!("{server_name} is not a server name: {e}"))?;
    for binding in bindings {
        let validating: Api<ValidatingWebhookConfiguration> = Api::all(client.clone());
        let mutating: Api<MutatingWebhookConfiguration> = Api::all(client.clone());
        let read =
            |e: kube::Error| format!("cannot read the webhook configurations of {binding}: {e}");
        let bundles: Vec<Option<ByteString>> = match (
            validating.get_opt(&binding).await.map_err(read)?,
            mutating.get_opt(&binding).await.map_err(read)?,
        ) {
            (Some(v), Some(m)) => v
                .webhooks
                .into_iter()
                .flatten()
                .map(|w| w.client_config.ca_bundle)
                .chain(
                    m.webhooks
                        .into_iter()
                        .flatten()
                        .map(|w| w.client_config.ca_bundle),
                )
                .collect(),
            _ => {
                return Err(format!(
                    "the webhook configurations of binding {binding} are not registered yet"
                ));
            }
        };
        for bundle in bundles {
            let Some(bundle) = bundle else {
                return Err(format!(
                    "the webhook configurations of binding {binding} have no caBundle yet"
                ));
            };
            trusts(&bundle.0, &chain, &name).map_err(|reason| {
                format!("the caBundle of binding {binding}'s webhooks does not trust the certificate this replica serves: {reason}")
            })?;
        }
    }
    Ok(())
}

/// Whether the PEM `bundle` trusts `chain` for `name` now.
fn trusts(
    bundle: &[u8],
    chain: &[CertificateDer<'static>],
    name: &ServerName<'_>,
) -> Result<(), String> {
    // A bundle written by hand may be base64 of PEM once more.
    let decoded;
    let pem = if bundle.starts_with(b"-----") {
        bundle
    } else {
        decoded = base64::engine::general_purpose::STANDARD
            .decode(bundle)
            .unwrap_or_default();
        &decoded
    };
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(pem) {
        let cert = cert.map_err(|e| format!("the bundle is not PEM: {e}"))?;
        roots.add(cert).map_err(|e| e.to_string())?;
    }
    if roots.is_empty() {
        return Err("the bundle holds no certificate".to_owned());
    }
    let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(
        Arc::new(roots),
        Arc::new(rustls::crypto::ring::default_provider()),
    )
    .build()
    .map_err(|e| e.to_string())?;
    let (leaf, intermediates) = chain.split_first().ok_or("no certificate is served")?;
    verifier
        .verify_server_cert(leaf, intermediates, name, &[], UnixTime::now())
        .map(drop)
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selectors_in_the_kubectl_syntax_become_label_selectors() {
        let selector = parse_selector("app=db, tier in (a, b),!legacy,env!=prod,team").unwrap();
        assert_eq!(
            selector.match_labels,
            Some(BTreeMap::from([("app".to_owned(), "db".to_owned())]))
        );
        let expressions = selector.match_expressions.unwrap();
        let ops: Vec<_> = expressions
            .iter()
            .map(|e| (e.key.as_str(), e.operator.as_str()))
            .collect();
        assert_eq!(
            ops,
            [
                ("tier", "In"),
                ("legacy", "DoesNotExist"),
                ("env", "NotIn"),
                ("team", "Exists")
            ]
        );
        assert_eq!(
            expressions[0].values,
            Some(vec!["a".to_owned(), "b".to_owned()])
        );
        assert!(parse_selector("tier in a").is_err());
    }

    #[test]
    fn only_labelled_configurations_owned_by_the_binding_are_the_hosts() {
        let mut meta = ObjectMeta {
            labels: Some(BTreeMap::from([(
                MANAGED_BY_LABEL.to_owned(),
                MANAGED_BY.to_owned(),
            )])),
            ..ObjectMeta::default()
        };
        assert!(!owned(&meta, "b"), "no owner reference");
        meta.owner_references = Some(vec![OwnerReference {
            api_version: "systems.mikemiller.tech/v1alpha1".into(),
            kind: "ReconcilerPlugin".into(),
            name: "b".into(),
            uid: "u".into(),
            ..OwnerReference::default()
        }]);
        assert!(owned(&meta, "b"));
        assert!(!owned(&meta, "other"));
        meta.labels = None;
        assert!(!owned(&meta, "b"), "no label");
    }

    #[test]
    fn webhook_names_are_fully_qualified() {
        assert_eq!(
            webhook_name("validate", "pg"),
            "pg.validate.systems.mikemiller.tech"
        );
    }
}
