//! What a binding's webhook configurations say, built from its version in
//! service: rules for the plugin's target kind (its resource from
//! discovery) and the operations of its admission scope; `sideEffects:
//! None`, `admissionReviewVersions: [v1]`; `failurePolicy` and
//! `timeoutSeconds` from the binding; a namespaceSelector leaving out the
//! operator's own namespace and `kube-system` (so that an outage of the
//! operator never blocks its own Pods or the control plane), ANDed with the
//! binding's; the scope's objectSelector and matchConditions;
//! `clientConfig.service` pointing at the operator's Service; and the CA:
//! the shared CA's bundle, or, with cert-manager, the
//! `cert-manager.io/inject-ca-from` annotation that has its CA injector
//! fill `caBundle`.
//!
//! The host owns a configuration labelled [`MANAGED_BY_LABEL`] `=`
//! [`MANAGED_BY`] and owned by the binding's `ReconcilerPlugin` ([`owned`]);
//! the owner reference lets the garbage collector remove it with the
//! binding even when no operator runs.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::admissionregistration::v1::{
    MatchCondition, MutatingWebhook, MutatingWebhookConfiguration, RuleWithOperations,
    ServiceReference, ValidatingWebhook, ValidatingWebhookConfiguration, WebhookClientConfig,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{
    LabelSelector, LabelSelectorRequirement, ObjectMeta, OwnerReference,
};
use kube::{Resource, ResourceExt};
use tokio::sync::watch;

use crate::binding::BoundPlugin;
use crate::crd::ReconcilerPlugin;
use crate::runtime::{Operation, PluginDescription};

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

/// A plugin's admission object selector that is not a label selector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidSelector {
    /// The selector as the plugin declared it.
    pub selector: String,
    /// What is wrong with it.
    pub reason: String,
}

/// Whether the host owns a configuration named after `binding`: its label
/// and an owner reference to the binding.
pub(super) fn owned(meta: &ObjectMeta, binding: &str) -> bool {
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
pub(super) struct Hooks {
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
    /// The shared parts of `binding`'s configurations.
    ///
    /// # Errors
    /// The scope's object selector is not a label selector.
    pub(super) fn new(
        config: &RegistrationConfig,
        binding: &str,
        version: &BoundPlugin,
        scope: &Scope,
        plural: &str,
        ca_bundle: Option<String>,
    ) -> Result<Self, InvalidSelector> {
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
            Some(
                parse_selector(&scope.object_selector).map_err(|reason| InvalidSelector {
                    selector: scope.object_selector.clone(),
                    reason,
                })?,
            )
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

    /// The ValidatingWebhookConfiguration and MutatingWebhookConfiguration,
    /// owned by `owner`.
    pub(super) fn configurations(
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
