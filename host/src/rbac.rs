//! The least-privilege RBAC the operator needs for a set of bindings,
//! derived from what each plugin does under its grants: the target kind
//! (watched, patched, its status written, its finalizers set), child kinds
//! (applied and pruned), read kinds (watched), and for plugins that use SQL
//! the PostgresServers and their admin Secrets. The host's own needs
//! (bindings, events, webhook configurations, the Lease, plugin
//! ConfigMaps, the webhook TLS Secret) come first.
//!
//! `wasm-operator rbac` prints it; `deploy/` holds its output, and a test
//! fails when they drift apart.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use k8s_openapi::api::rbac::v1::{
    ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding, RoleRef, Subject,
};
use kube::api::ObjectMeta;
use kube::core::{ApiResource, GroupVersionKind};
use serde::Serialize;

use crate::binding::grants_for;
use crate::crd::{PluginSource, ReconcilerPlugin};
use crate::grants::Grants;
use crate::runtime::{LoadError, PluginDescription, Runtime};
use crate::vocabulary::ObjectKind;

/// Why RBAC could not be derived.
#[derive(Debug, thiserror::Error)]
pub enum RbacError {
    /// A bindings file could not be read or parsed.
    #[error("cannot read bindings from {path}: {reason}")]
    Bindings {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// A binding's component could not be found or read.
    #[error(
        "binding {binding}: cannot read its component {path}: {source}; build the plugins (scripts/build-plugins.sh) or pass --plugins-dir"
    )]
    Component {
        /// The binding.
        binding: String,
        /// Where it was looked for.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A binding's component does not load.
    #[error("binding {binding}: its component does not load: {source}")]
    Load {
        /// The binding.
        binding: String,
        /// Why (boxed: a load error is large, and rare).
        #[source]
        source: Box<LoadError>,
    },
    /// The manifests could not be written as YAML.
    #[error("cannot write the manifests as YAML: {0}")]
    Yaml(String),
}

/// Where the operator runs: the subject every role is bound to.
#[derive(Debug, Clone)]
pub struct ServiceAccount {
    /// Its namespace (also that of the Lease and the plugin ConfigMaps).
    pub namespace: String,
    /// Its name.
    pub name: String,
}

const WATCH: &[&str] = &["get", "list", "watch"];
const TARGET: &[&str] = &["get", "list", "watch", "patch", "update"];
const STATUS: &[&str] = &["get", "patch", "update"];
const CHILD: &[&str] = &[
    "get", "list", "watch", "create", "patch", "update", "delete",
];

/// The webhook configurations the host registers (cluster-scoped; their
/// names are the bindings', so they cannot be listed in `resourceNames`).
const WEBHOOK_CONFIGURATIONS: &[&str] = &["get", "list", "watch", "create", "patch", "delete"];

/// The default name of the Secret holding the shared webhook CA.
pub const WEBHOOK_SECRET: &str = "wasm-operator-webhook-tls";

/// Rules keyed by (API group, resource), verbs merged; and rules limited
/// to one object, keyed by (API group, resource, name).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rules(
    BTreeMap<(String, String), BTreeSet<&'static str>>,
    BTreeMap<(String, String, String), BTreeSet<&'static str>>,
);

impl Rules {
    fn allow_named(&mut self, group: &str, resource: &str, name: &str, verbs: &[&'static str]) {
        self.1
            .entry((group.to_owned(), resource.to_owned(), name.to_owned()))
            .or_default()
            .extend(verbs.iter().copied());
    }

    fn allow(&mut self, group: &str, resource: &str, verbs: &[&'static str]) {
        self.0
            .entry((group.to_owned(), resource.to_owned()))
            .or_default()
            .extend(verbs.iter().copied());
    }

    fn allow_kind(&mut self, kind: &ObjectKind, subresource: Option<&str>, verbs: &[&'static str]) {
        let resource = plural(kind);
        let resource = match subresource {
            Some(sub) => format!("{resource}/{sub}"),
            None => resource,
        };
        self.allow(&kind.group, &resource, verbs);
    }

    /// The rules as RBAC `PolicyRule`s, one per group and verb set, sorted.
    #[must_use]
    pub fn policy_rules(&self) -> Vec<PolicyRule> {
        // Resources that share a group and verbs share a rule.
        let mut merged: BTreeMap<(String, Vec<&str>), Vec<String>> = BTreeMap::new();
        for ((group, resource), verbs) in &self.0 {
            merged
                .entry((group.clone(), verbs.iter().copied().collect()))
                .or_default()
                .push(resource.clone());
        }
        let mut rules: Vec<PolicyRule> = merged
            .into_iter()
            .map(|((group, verbs), resources)| PolicyRule {
                api_groups: Some(vec![group]),
                resources: Some(resources),
                verbs: verbs.into_iter().map(str::to_owned).collect(),
                ..PolicyRule::default()
            })
            .collect();
        // Named objects of one resource and verbs share a rule.
        let mut named: BTreeMap<(String, String, Vec<&str>), Vec<String>> = BTreeMap::new();
        for ((group, resource, name), verbs) in &self.1 {
            named
                .entry((
                    group.clone(),
                    resource.clone(),
                    verbs.iter().copied().collect(),
                ))
                .or_default()
                .push(name.clone());
        }
        rules.extend(
            named
                .into_iter()
                .map(|((group, resource, verbs), names)| PolicyRule {
                    api_groups: Some(vec![group]),
                    resources: Some(vec![resource]),
                    resource_names: Some(names),
                    verbs: verbs.into_iter().map(str::to_owned).collect(),
                    ..PolicyRule::default()
                }),
        );
        rules
    }
}

/// The cluster-wide rules of the host itself: bindings and their status,
/// events on the objects it reconciles, the webhook configurations it
/// registers for bindings with admission.
#[must_use]
pub fn host_rules() -> Rules {
    let mut rules = Rules::default();
    for resource in [
        "validatingwebhookconfigurations",
        "mutatingwebhookconfigurations",
    ] {
        rules.allow(
            "admissionregistration.k8s.io",
            resource,
            WEBHOOK_CONFIGURATIONS,
        );
    }
    rules.allow("systems.mikemiller.tech", "reconcilerplugins", WATCH);
    rules.allow(
        "systems.mikemiller.tech",
        "reconcilerplugins/status",
        STATUS,
    );
    rules.allow("events.k8s.io", "events", &["create", "patch"]);
    rules
}

/// The rules in the operator's namespace: the leader-election Lease, the
/// ConfigMaps that hold components, and the Secret of the shared webhook
/// CA (`create` cannot be limited to a name: RBAC does not know the name
/// of an object before it exists).
#[must_use]
pub fn namespace_rules() -> Rules {
    let mut rules = Rules::default();
    rules.allow_named("", "secrets", WEBHOOK_SECRET, &["get", "update"]);
    rules.allow("", "secrets", &["create"]);
    rules.allow(
        "coordination.k8s.io",
        "leases",
        &["get", "create", "update"],
    );
    rules.allow("", "configmaps", WATCH);
    rules
}

/// What a bound plugin needs: `description` as its binding grants it.
#[must_use]
pub fn binding_rules(description: &PluginDescription, grants: &Grants) -> Rules {
    let mut rules = Rules::default();
    let target = &description.target;
    // An admission-only plugin runs no controller: its kind is neither
    // watched nor written (the webhook gets its objects in the reviews).
    if !description.is_admission_only() {
        rules.allow_kind(target, None, TARGET);
        rules.allow_kind(target, Some("status"), STATUS);
    }
    // Children carry blockOwnerDeletion; where the API server enforces
    // OwnerReferencesPermissionEnforcement that needs the owner's finalizers.
    if !grants.child_kinds.is_empty() {
        rules.allow_kind(target, Some("finalizers"), &["update"]);
    }
    for kind in &grants.child_kinds {
        rules.allow_kind(kind, None, CHILD);
    }
    for kind in &grants.read_kinds {
        rules.allow_kind(kind, None, WATCH);
    }
    if !grants.servers.is_empty() {
        rules.allow("systems.mikemiller.tech", "postgresservers", WATCH);
        rules.allow("", "secrets", &["get"]);
    }
    rules
}

/// A ClusterRole named `name` with `rules`.
#[must_use]
pub fn cluster_role(name: &str, rules: &Rules) -> ClusterRole {
    ClusterRole {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            ..ObjectMeta::default()
        },
        rules: Some(rules.policy_rules()),
        ..ClusterRole::default()
    }
}

/// A Role `namespace/name` with `rules`.
#[must_use]
pub fn role(namespace: &str, name: &str, rules: &Rules) -> Role {
    Role {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            namespace: Some(namespace.to_owned()),
            ..ObjectMeta::default()
        },
        rules: Some(rules.policy_rules()),
    }
}

/// The manifests for the bindings in `files` (none: the host's own roles),
/// named `name` and bound to `account`. A binding's component is its
/// `source.file`, or `<plugins_dir>/<ConfigMap name>.wasm` for a ConfigMap
/// source (the layout of `target/plugins` and of the image's `/plugins`).
///
/// # Errors
/// An [`RbacError`] naming the binding or file that failed.
pub async fn manifests(
    runtime: &Runtime,
    files: &[PathBuf],
    plugins_dir: &Path,
    name: &str,
    account: &ServiceAccount,
) -> Result<String, RbacError> {
    let mut yaml = String::from(
        "# Generated by `wasm-operator rbac`; do not edit by hand (host/tests/rbac.rs checks it).\n",
    );
    if files.is_empty() {
        push(&mut yaml, &cluster_role(name, &host_rules()))?;
        push(&mut yaml, &cluster_role_binding(name, account))?;
        push(
            &mut yaml,
            &role(&account.namespace, name, &namespace_rules()),
        )?;
        push(&mut yaml, &role_binding(name, account))?;
        return Ok(yaml);
    }
    let mut rules = Rules::default();
    for bindings_file in files {
        for binding in read_bindings(bindings_file)? {
            let binding_name = binding.metadata.name.clone().unwrap_or_default();
            let PluginSource { config_map, file } = &binding.spec.source;
            let path = match (file, config_map) {
                (Some(path), _) => PathBuf::from(path),
                (None, Some(source)) => plugins_dir.join(format!("{}.wasm", source.name)),
                (None, None) => {
                    return Err(RbacError::Bindings {
                        path: bindings_file.clone(),
                        reason: format!("binding {binding_name} has no spec.source"),
                    });
                }
            };
            let bytes = std::fs::read(&path).map_err(|source| RbacError::Component {
                binding: binding_name.clone(),
                path: path.clone(),
                source,
            })?;
            let plugin = runtime
                .load(&bytes)
                .await
                .map_err(|source| RbacError::Load {
                    binding: binding_name.clone(),
                    source: Box::new(source),
                })?;
            let description = plugin.description();
            let grants = grants_for(description, &binding.spec.grants);
            for (key, verbs) in binding_rules(description, &grants).0 {
                rules.0.entry(key).or_default().extend(verbs);
            }
        }
    }
    push(&mut yaml, &cluster_role(name, &rules))?;
    push(&mut yaml, &cluster_role_binding(name, account))?;
    Ok(yaml)
}

fn read_bindings(path: &Path) -> Result<Vec<ReconcilerPlugin>, RbacError> {
    let error = |reason: String| RbacError::Bindings {
        path: path.to_owned(),
        reason,
    };
    let text = std::fs::read_to_string(path).map_err(|e| error(e.to_string()))?;
    let mut bindings = Vec::new();
    for document in serde_saphyr::from_str_multiple::<serde_json::Value, Vec<_>>(&text)
        .map_err(|e| error(e.to_string()))?
    {
        if document.get("kind").and_then(serde_json::Value::as_str) == Some("ReconcilerPlugin") {
            bindings.push(serde_json::from_value(document).map_err(|e| error(e.to_string()))?);
        }
    }
    Ok(bindings)
}

fn push(yaml: &mut String, object: &impl Serialize) -> Result<(), RbacError> {
    yaml.push_str("---\n");
    yaml.push_str(&serde_saphyr::to_string(object).map_err(|e| RbacError::Yaml(e.to_string()))?);
    Ok(())
}

fn subject(account: &ServiceAccount) -> Vec<Subject> {
    vec![Subject {
        kind: "ServiceAccount".into(),
        name: account.name.clone(),
        namespace: Some(account.namespace.clone()),
        ..Subject::default()
    }]
}

fn cluster_role_binding(name: &str, account: &ServiceAccount) -> ClusterRoleBinding {
    ClusterRoleBinding {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            ..ObjectMeta::default()
        },
        role_ref: RoleRef {
            api_group: Some("rbac.authorization.k8s.io".into()),
            kind: "ClusterRole".into(),
            name: name.to_owned(),
        },
        subjects: Some(subject(account)),
    }
}

fn role_binding(name: &str, account: &ServiceAccount) -> RoleBinding {
    RoleBinding {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            namespace: Some(account.namespace.clone()),
            ..ObjectMeta::default()
        },
        role_ref: RoleRef {
            api_group: Some("rbac.authorization.k8s.io".into()),
            kind: "Role".into(),
            name: name.to_owned(),
        },
        subjects: Some(subject(account)),
    }
}

/// The resource name of `kind` (kube's pluralisation, as discovery would
/// name the kinds the operator uses).
fn plural(kind: &ObjectKind) -> String {
    ApiResource::from_gvk(&GroupVersionKind::gvk(
        &kind.group,
        &kind.version,
        &kind.kind,
    ))
    .plural
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::grants::ServerPattern;

    fn description(target: ObjectKind, sql: bool) -> PluginDescription {
        PluginDescription {
            name: "p".into(),
            version: "1".into(),
            target,
            child_kinds: Vec::new(),
            read_kinds: Vec::new(),
            wants_sql: sql,
            settings_schema: json!({}),
            wit_version: "0.1.0".into(),
            offers_admission: false,
            admission: None,
            role: crate::runtime::PluginRole::Reconciler,
        }
    }

    fn rules_json(rules: &Rules) -> serde_json::Value {
        serde_json::to_value(rules.policy_rules()).unwrap()
    }

    #[test]
    fn a_database_plugin_gets_its_kind_its_secrets_and_the_servers_nothing_more() {
        let database = ObjectKind::new("systems.mikemiller.tech", "v1alpha1", "Database");
        let secret = ObjectKind::new("", "v1", "Secret");
        let server = ObjectKind::new("systems.mikemiller.tech", "v1alpha1", "PostgresServer");
        let grants = Grants {
            read_kinds: [server].into(),
            child_kinds: [secret].into(),
            servers: vec![ServerPattern::new("*")],
        };
        let rules = binding_rules(&description(database, true), &grants);
        assert_eq!(
            rules_json(&rules),
            json!([
                {"apiGroups": [""], "resources": ["secrets"],
                 "verbs": ["create", "delete", "get", "list", "patch", "update", "watch"]},
                {"apiGroups": ["systems.mikemiller.tech"], "resources": ["databases"],
                 "verbs": ["get", "list", "patch", "update", "watch"]},
                {"apiGroups": ["systems.mikemiller.tech"], "resources": ["postgresservers"],
                 "verbs": ["get", "list", "watch"]},
                {"apiGroups": ["systems.mikemiller.tech"], "resources": ["databases/status"],
                 "verbs": ["get", "patch", "update"]},
                {"apiGroups": ["systems.mikemiller.tech"], "resources": ["databases/finalizers"],
                 "verbs": ["update"]},
            ])
        );
    }

    #[test]
    fn a_plugin_without_children_or_sql_gets_only_its_kind() {
        let greeting = ObjectKind::new("examples.systems.mikemiller.tech", "v1alpha1", "Greeting");
        let rules = binding_rules(&description(greeting, true), &Grants::default());
        let resources: Vec<String> = rules.0.keys().map(|(_, r)| r.clone()).collect();
        assert_eq!(resources, ["greetings", "greetings/status"]);
    }
}
