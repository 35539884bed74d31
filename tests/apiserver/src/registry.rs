//! The resource types the server knows: built-in kinds plus those registered by CRDs.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::Value;

/// One served `group/version/plural` and what the server knows about it.
#[derive(Debug, Clone)]
pub struct ResourceType {
    /// API group, `""` for the core group.
    pub group: String,
    /// Version, e.g. `v1`.
    pub version: String,
    /// Plural resource name used in URLs.
    pub plural: String,
    /// Singular name.
    pub singular: String,
    /// Kind.
    pub kind: String,
    /// Whether objects live in namespaces.
    pub namespaced: bool,
    /// kubectl short names.
    pub short_names: Vec<String>,
    /// Whether a `/status` subresource exists (main writes then ignore `.status`).
    pub status: bool,
    /// `openAPIV3Schema` for custom resources.
    pub schema: Option<Value>,
    /// Whether this type comes from a CRD (strategic merge then means merge patch).
    pub custom: bool,
    /// The CRD version's `additionalPrinterColumns` (server-side `kubectl get` columns).
    pub printer_columns: Vec<Value>,
}

impl ResourceType {
    /// `apiVersion` string of objects of this type.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// Key of the storage collection shared by all versions. events.k8s.io Events share
    /// the core Events storage, as on a real server (see `events.rs`).
    pub fn group_resource(&self) -> GroupResource {
        let group = if crate::events::is_events_view(self) {
            String::new()
        } else {
            self.group.clone()
        };
        GroupResource {
            group,
            resource: self.plural.clone(),
        }
    }
}

/// A `group` + `resource` pair: one storage collection.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct GroupResource {
    /// API group.
    pub group: String,
    /// Plural resource name.
    pub resource: String,
}

/// All served resource types, keyed by `(group, version, plural)`.
#[derive(Debug, Default)]
pub struct Registry {
    types: BTreeMap<(String, String, String), Arc<ResourceType>>,
    /// Group → preferred version, in registration order of groups.
    groups: Vec<(String, Vec<String>)>,
}

struct Builtin(
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    bool,
    &'static [&'static str],
    bool,
);

// (group, version, plural, kind, namespaced, shortNames, status subresource)
const BUILTINS: &[Builtin] = &[
    Builtin("", "v1", "namespaces", "Namespace", false, &["ns"], true),
    Builtin("", "v1", "configmaps", "ConfigMap", true, &["cm"], false),
    Builtin("", "v1", "secrets", "Secret", true, &[], false),
    Builtin("", "v1", "services", "Service", true, &["svc"], true),
    Builtin("", "v1", "pods", "Pod", true, &["po"], true),
    Builtin(
        "",
        "v1",
        "persistentvolumeclaims",
        "PersistentVolumeClaim",
        true,
        &["pvc"],
        true,
    ),
    Builtin(
        "",
        "v1",
        "serviceaccounts",
        "ServiceAccount",
        true,
        &["sa"],
        false,
    ),
    Builtin("", "v1", "events", "Event", true, &["ev"], false),
    Builtin("", "v1", "nodes", "Node", false, &["no"], true),
    Builtin(
        "",
        "v1",
        "persistentvolumes",
        "PersistentVolume",
        false,
        &["pv"],
        true,
    ),
    Builtin(
        "discovery.k8s.io",
        "v1",
        "endpointslices",
        "EndpointSlice",
        true,
        &[],
        false,
    ),
    Builtin(
        "storage.k8s.io",
        "v1",
        "storageclasses",
        "StorageClass",
        false,
        &["sc"],
        false,
    ),
    Builtin(
        "apps",
        "v1",
        "deployments",
        "Deployment",
        true,
        &["deploy"],
        true,
    ),
    Builtin(
        "apps",
        "v1",
        "statefulsets",
        "StatefulSet",
        true,
        &["sts"],
        true,
    ),
    Builtin(
        "policy",
        "v1",
        "poddisruptionbudgets",
        "PodDisruptionBudget",
        true,
        &["pdb"],
        true,
    ),
    Builtin(
        "events.k8s.io",
        "v1",
        "events",
        "Event",
        true,
        &["ev"],
        false,
    ),
    Builtin(
        "coordination.k8s.io",
        "v1",
        "leases",
        "Lease",
        true,
        &[],
        false,
    ),
    Builtin(
        "rbac.authorization.k8s.io",
        "v1",
        "roles",
        "Role",
        true,
        &[],
        false,
    ),
    Builtin(
        "rbac.authorization.k8s.io",
        "v1",
        "rolebindings",
        "RoleBinding",
        true,
        &[],
        false,
    ),
    Builtin(
        "rbac.authorization.k8s.io",
        "v1",
        "clusterroles",
        "ClusterRole",
        false,
        &[],
        false,
    ),
    Builtin(
        "rbac.authorization.k8s.io",
        "v1",
        "clusterrolebindings",
        "ClusterRoleBinding",
        false,
        &[],
        false,
    ),
    Builtin(
        "admissionregistration.k8s.io",
        "v1",
        "mutatingwebhookconfigurations",
        "MutatingWebhookConfiguration",
        false,
        &[],
        false,
    ),
    Builtin(
        "admissionregistration.k8s.io",
        "v1",
        "validatingwebhookconfigurations",
        "ValidatingWebhookConfiguration",
        false,
        &[],
        false,
    ),
    Builtin(
        "apiextensions.k8s.io",
        "v1",
        "customresourcedefinitions",
        "CustomResourceDefinition",
        false,
        &["crd", "crds"],
        true,
    ),
];

impl Registry {
    /// The built-in kinds an operator touches.
    pub fn with_builtins() -> Self {
        let mut registry = Self::default();
        for Builtin(group, version, plural, kind, namespaced, short, status) in BUILTINS {
            registry.insert(ResourceType {
                group: (*group).into(),
                version: (*version).into(),
                plural: (*plural).into(),
                singular: kind.to_lowercase(),
                kind: (*kind).into(),
                namespaced: *namespaced,
                short_names: short.iter().map(|s| (*s).to_string()).collect(),
                status: *status,
                schema: None,
                custom: false,
                printer_columns: Vec::new(),
            });
        }
        registry
    }

    fn insert(&mut self, rt: ResourceType) {
        match self.groups.iter_mut().find(|(g, _)| *g == rt.group) {
            Some((_, versions)) if !versions.contains(&rt.version) => {
                versions.push(rt.version.clone())
            }
            Some(_) => {}
            None => self
                .groups
                .push((rt.group.clone(), vec![rt.version.clone()])),
        }
        self.types.insert(
            (rt.group.clone(), rt.version.clone(), rt.plural.clone()),
            Arc::new(rt),
        );
    }

    /// Looks up a served type.
    pub fn get(&self, group: &str, version: &str, plural: &str) -> Option<Arc<ResourceType>> {
        self.types
            .get(&(group.to_string(), version.to_string(), plural.to_string()))
            .cloned()
    }

    /// Any served version of a group resource.
    pub fn any_version(&self, gr: &GroupResource) -> Option<Arc<ResourceType>> {
        self.types
            .values()
            .find(|rt| rt.group == gr.group && rt.plural == gr.resource)
            .cloned()
    }

    /// Groups with their served versions, first version preferred.
    pub fn groups(&self) -> &[(String, Vec<String>)] {
        &self.groups
    }

    /// Types served in one group version.
    pub fn in_group_version<'a>(
        &'a self,
        group: &'a str,
        version: &'a str,
    ) -> impl Iterator<Item = &'a Arc<ResourceType>> + 'a {
        self.types
            .values()
            .filter(move |rt| rt.group == group && rt.version == version)
    }

    /// The group resource a CRD defines.
    pub fn crd_group_resource(crd: &Value) -> Option<GroupResource> {
        let group = crd.pointer("/spec/group")?.as_str()?.to_string();
        let resource = crd.pointer("/spec/names/plural")?.as_str()?.to_string();
        Some(GroupResource { group, resource })
    }

    /// Registers (or re-registers) every served version of a CRD. Returns the group resource.
    pub fn register_crd(&mut self, crd: &Value) -> Option<GroupResource> {
        let spec = crd.get("spec")?;
        let group = spec.get("group")?.as_str()?.to_string();
        let names = spec.get("names")?;
        let plural = names.get("plural")?.as_str()?.to_string();
        let kind = names.get("kind")?.as_str()?.to_string();
        let singular = names
            .get("singular")
            .and_then(Value::as_str)
            .map_or_else(|| kind.to_lowercase(), str::to_string);
        let short_names: Vec<String> = names
            .get("shortNames")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|s| s.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        let namespaced = spec.get("scope").and_then(Value::as_str) != Some("Cluster");
        self.unregister(&group, &plural);
        let mut versions: Vec<&Value> = spec.get("versions")?.as_array()?.iter().collect();
        // The storage version is preferred in discovery.
        versions.sort_by_key(|v| !v.get("storage").and_then(Value::as_bool).unwrap_or(false));
        for version in versions {
            if version.get("served").and_then(Value::as_bool) == Some(false) {
                continue;
            }
            self.insert(ResourceType {
                group: group.clone(),
                version: version.get("name")?.as_str()?.to_string(),
                plural: plural.clone(),
                singular: singular.clone(),
                kind: kind.clone(),
                namespaced,
                short_names: short_names.clone(),
                status: version.pointer("/subresources/status").is_some(),
                schema: version.pointer("/schema/openAPIV3Schema").cloned(),
                custom: true,
                printer_columns: version
                    .get("additionalPrinterColumns")
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default(),
            });
        }
        Some(GroupResource {
            group,
            resource: plural,
        })
    }

    /// Removes every version of a group resource.
    pub fn unregister(&mut self, group: &str, plural: &str) {
        self.types
            .retain(|(g, _, p), _| !(g == group && p == plural));
        let types = &self.types;
        self.groups.retain_mut(|(g, versions)| {
            versions.retain(|v| types.keys().any(|(tg, tv, _)| tg == g && tv == v));
            !versions.is_empty()
        });
    }
}
