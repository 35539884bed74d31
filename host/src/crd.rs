//! The operator's own custom resources, and the CRD YAML generated from them.
//!
//! `crds/*.yaml` is produced by `wasm-operator crd` and kept in sync by a
//! test, so the Rust types are the single source of truth.

use std::collections::BTreeMap;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, LabelSelector};
use kube::CustomResource;
use kube::CustomResourceExt;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::runtime::PluginLimits;
use crate::vocabulary::ObjectKind;

/// The API group of every wasm-operator resource.
pub const GROUP: &str = "systems.mikemiller.tech";

/// Binds a plugin component to the kind it reconciles, with the settings,
/// limits and grants it runs under.
///
/// Cluster-scoped: one binding drives a controller for its kind in every
/// namespace.
#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "systems.mikemiller.tech",
    version = "v1alpha1",
    kind = "ReconcilerPlugin",
    shortname = "rplugin",
    category = "wasm-operator",
    status = "ReconcilerPluginStatus",
    printcolumn = r#"{"name":"Target","type":"string","jsonPath":".status.target"}"#,
    printcolumn = r#"{"name":"Plugin","type":"string","jsonPath":".status.pluginName"}"#,
    printcolumn = r#"{"name":"Version","type":"string","jsonPath":".status.pluginVersion"}"#,
    printcolumn = r#"{"name":"Digest","type":"string","jsonPath":".status.digest"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct ReconcilerPluginSpec {
    /// Where the component comes from.
    pub source: PluginSource,
    /// Optional pin: the component's sha256 (64 hex digits, optionally
    /// prefixed `sha256:`). A component with another digest is refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// Settings passed to the plugin, validated against its settings schema.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "preserve_unknown_fields")]
    pub settings: Option<serde_json::Value>,
    /// Resource limits of every call into the plugin.
    #[serde(default)]
    pub limits: LimitsSpec,
    /// What the plugin may read and write; it gets the intersection of this
    /// and what it requests in `describe`.
    #[serde(default)]
    pub grants: GrantsSpec,
    /// How the API server calls this binding's admission webhooks, when its
    /// component exports `admission` (unset: the defaults).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admission: Option<AdmissionSpec>,
}

/// How the API server treats a binding's admission webhooks.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AdmissionSpec {
    /// What happens when the plugin cannot decide (error, trap, deadline)
    /// or the operator cannot be reached: `Fail` (default) denies, `Ignore`
    /// allows with a warning naming the binding and the reason.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_policy: Option<FailurePolicy>,
    /// How long the API server waits for an answer, in seconds (default 5).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 30))]
    pub timeout_seconds: Option<u8>,
    /// Namespaces the webhooks apply to, in addition to the default that
    /// leaves out the operator's own namespace and `kube-system` (both must
    /// match).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace_selector: Option<LabelSelector>,
}

/// A webhook's `failurePolicy`.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum FailurePolicy {
    /// Deny when the plugin cannot decide.
    #[default]
    Fail,
    /// Allow, with a warning, when the plugin cannot decide.
    Ignore,
}

impl FailurePolicy {
    /// The name the API server uses.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Fail => "Fail",
            Self::Ignore => "Ignore",
        }
    }
}

/// The default `timeoutSeconds` of a binding's webhooks.
pub const DEFAULT_ADMISSION_TIMEOUT_SECONDS: u8 = 5;

impl AdmissionSpec {
    /// The failure policy, defaulted.
    pub fn failure_policy(&self) -> FailurePolicy {
        self.failure_policy.unwrap_or_default()
    }

    /// `timeoutSeconds`, defaulted and clamped to what the API server accepts.
    pub fn timeout_seconds(&self) -> u8 {
        self.timeout_seconds
            .unwrap_or(DEFAULT_ADMISSION_TIMEOUT_SECONDS)
            .clamp(1, 30)
    }
}

/// Where a plugin component is loaded from: exactly one of the fields.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PluginSource {
    /// A key of a ConfigMap's `binaryData` (a component is at most 1 MiB).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_map: Option<ConfigMapSource>,
    /// A path on the operator's filesystem, for development.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
}

/// A ConfigMap key holding a component.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConfigMapSource {
    /// Namespace of the ConfigMap.
    pub namespace: String,
    /// Name of the ConfigMap.
    pub name: String,
    /// Key in `binaryData`.
    pub key: String,
}

/// Limits of every call into a plugin. Unset fields take the defaults.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LimitsSpec {
    /// Deadline of one call in milliseconds (default 1000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 10, max = 60000))]
    pub deadline_ms: Option<u64>,
    /// Memory cap in MiB (default 64, at most 1024).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 1024))]
    pub memory_mib: Option<u64>,
    /// Objects reconciled at once (default 4).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 256))]
    pub concurrency: Option<u16>,
    /// Events one decision may carry (default 100); the rest are dropped
    /// with one Warning event saying how many.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 1000))]
    pub max_events: Option<usize>,
    /// Events recorded per object per minute (default 30); the rest are
    /// dropped and counted in `wasm_operator_events_dropped_total`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 600))]
    pub events_per_minute: Option<u32>,
    /// Log records one call may write (default 256); each also costs 128
    /// bytes of the 64 KiB log volume.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 10000))]
    pub max_log_records: Option<usize>,
    /// The shortest requeue a plugin may ask for, in milliseconds (default
    /// 1000); shorter ones are raised to it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 100, max = 86400000))]
    pub min_requeue_ms: Option<u64>,
}

impl LimitsSpec {
    /// The runtime limits these settings describe.
    pub fn to_limits(&self) -> PluginLimits {
        let defaults = PluginLimits::default();
        PluginLimits {
            deadline: self
                .deadline_ms
                .map_or(defaults.deadline, std::time::Duration::from_millis),
            memory_bytes: self.memory_mib.map_or(defaults.memory_bytes, |m| m << 20),
            max_events: self.max_events.unwrap_or(defaults.max_events),
            max_events_per_minute: self
                .events_per_minute
                .unwrap_or(defaults.max_events_per_minute),
            max_log_records: self.max_log_records.unwrap_or(defaults.max_log_records),
            min_requeue: self
                .min_requeue_ms
                .map_or(defaults.min_requeue, std::time::Duration::from_millis),
            ..defaults
        }
    }

    /// How many objects may be reconciled at once.
    pub fn concurrency(&self) -> u16 {
        self.concurrency.unwrap_or(4)
    }
}

/// What a binding allows its plugin.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GrantsSpec {
    /// Kinds the plugin may read from the cache.
    #[serde(default)]
    pub read: Vec<ObjectKind>,
    /// Kinds of children the plugin may create, update and delete.
    #[serde(default)]
    pub children: Vec<ObjectKind>,
    /// PostgreSQL servers the plugin may query and plan against: the
    /// `namespace/name` of a PostgresServer, `namespace/*` or `*`. A server
    /// is used for an object only when it also consents to the object's
    /// namespace (its `spec.allowedNamespaces`).
    #[serde(default)]
    pub servers: Vec<String>,
}

/// What the operator observed of a binding.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReconcilerPluginStatus {
    /// The generation the status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Digest of the component in service (unset while none serves).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
    /// Name the plugin gave itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plugin_name: Option<String>,
    /// Version the plugin gave itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plugin_version: Option<String>,
    /// WIT package version the component was built against.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wit_version: Option<String>,
    /// The kind it reconciles (`group/version/Kind`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// Digest of the component the binding points at, when it was refused
    /// and the previous version (if any) keeps serving.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rejected_digest: Option<String>,
    /// Why the component the binding points at was refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// `Ready`: a version serves (it stays `True` while a refused update
    /// leaves the previous version in service). `Loaded`: the component the
    /// binding points at now is the one in service (`False` with the reason
    /// of its refusal otherwise).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

/// A schema that accepts any JSON object and keeps its fields.
fn preserve_unknown_fields(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "object",
        "x-kubernetes-preserve-unknown-fields": true
    })
}

/// Every CRD the operator installs, by file name under `crds/`.
pub fn all() -> BTreeMap<&'static str, CustomResourceDefinition> {
    BTreeMap::from([
        ("reconcilerplugins.yaml", ReconcilerPlugin::crd()),
        ("postgresservers.yaml", postgres_api::PostgresServer::crd()),
        ("databases.yaml", postgres_api::Database::crd()),
        ("databaseusers.yaml", postgres_api::DatabaseUser::crd()),
    ])
}

/// A CRD as the YAML committed under `crds/`.
///
/// # Errors
/// When serialization fails (it does not for well-formed CRDs).
pub fn to_yaml(crd: &CustomResourceDefinition) -> Result<String, serde_saphyr::ser::Error> {
    let body = serde_saphyr::to_string(crd)?;
    Ok(format!(
        "# Generated by `wasm-operator crd`; do not edit by hand.\n{body}"
    ))
}
