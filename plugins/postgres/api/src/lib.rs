//! The resources of wasm-operator's Postgres plugins, as Rust types.
//!
//! The plugins decode objects into the spec and status types here; the host
//! (with the `crd` feature) derives the `PostgresServer`, `Database` and
//! `DatabaseUser` custom resources and their CRDs from the same types, so the
//! schema the API server enforces and the fields the plugins read cannot
//! drift apart.
//!
//! Kinds live in group `systems.mikemiller.tech`, version `v1alpha1`.

#![warn(missing_docs)]

#[cfg(feature = "crd")]
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The API group of every wasm-operator resource.
pub const GROUP: &str = "systems.mikemiller.tech";
/// The version of these resources.
pub const VERSION: &str = "v1alpha1";
/// Annotation that asks for a new password: set it to any new value
/// (a timestamp, a counter); each change rotates the password once.
pub const ROTATE_PASSWORD_ANNOTATION: &str = "systems.mikemiller.tech/rotate-password";

/// An existing PostgreSQL server that Databases and DatabaseUsers are managed
/// on. The operator connects to it with the administrator credentials of a
/// Secret in the PostgresServer's own namespace.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[cfg_attr(feature = "crd", derive(CustomResource))]
#[cfg_attr(
    feature = "crd",
    kube(
        group = "systems.mikemiller.tech",
        version = "v1alpha1",
        kind = "PostgresServer",
        namespaced,
        shortname = "pgserver",
        category = "wasm-operator",
        status = "PostgresServerStatus",
        printcolumn = r#"{"name":"Host","type":"string","jsonPath":".spec.host"}"#,
        printcolumn = r#"{"name":"Port","type":"integer","jsonPath":".spec.port"}"#,
        printcolumn = r#"{"name":"Version","type":"string","jsonPath":".status.serverVersion"}"#,
        printcolumn = r#"{"name":"Reachable","type":"boolean","jsonPath":".status.reachable"}"#,
        printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
        printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
    )
)]
#[serde(rename_all = "camelCase")]
pub struct PostgresServerSpec {
    /// Host name or address of the server.
    pub host: String,
    /// TCP port (default 5432).
    #[serde(default = "default_port")]
    #[schemars(range(min = 1, max = 65535))]
    pub port: u16,
    /// TLS towards the server (default `prefer`).
    #[serde(default)]
    pub ssl_mode: SslMode,
    /// The administrator role the operator connects as: a superuser, or a
    /// role with CREATEDB and CREATEROLE.
    pub admin_credentials: SecretKeys,
    /// Database the operator connects to when it manages the server itself
    /// (default `postgres`).
    #[serde(default = "default_maintenance_database")]
    pub maintenance_database: String,
    /// Namespaces whose Databases may use this server, besides its own.
    /// `*` allows every namespace. Default: its own namespace only.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_namespaces: Vec<String>,
    /// Let Databases and DatabaseUsers adopt roles and databases that exist
    /// on the server but were not created by wasm-operator (default: such
    /// names are refused with `AlreadyExists`). Adopted objects are never
    /// dropped, and roles with SUPERUSER, CREATEROLE, REPLICATION or
    /// BYPASSRLS are never adopted.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub adopt_existing: bool,
}

fn default_port() -> u16 {
    5432
}

fn default_maintenance_database() -> String {
    "postgres".into()
}

impl PostgresServerSpec {
    /// Whether objects in `namespace` may use a server that lives in `own`.
    pub fn allows_namespace(&self, own: &str, namespace: &str) -> bool {
        namespace == own
            || self
                .allowed_namespaces
                .iter()
                .any(|allowed| allowed == "*" || allowed == namespace)
    }
}

/// How the operator uses TLS towards a server, as libpq's `sslmode`.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum SslMode {
    /// Never use TLS.
    Disable,
    /// Use TLS when the server offers it.
    #[default]
    Prefer,
    /// Always use TLS; do not verify the server's certificate.
    Require,
}

/// Keys of a Secret in the referencing object's namespace.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretKeys {
    /// Name of the Secret.
    pub secret_name: String,
    /// Key holding the user name (default `username`).
    #[serde(default = "default_username_key")]
    pub username_key: String,
    /// Key holding the password (default `password`).
    #[serde(default = "default_password_key")]
    pub password_key: String,
}

fn default_username_key() -> String {
    "username".into()
}

fn default_password_key() -> String {
    "password".into()
}

/// What the operator observed of a PostgresServer.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PostgresServerStatus {
    /// Whether the last connection attempt succeeded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reachable: Option<bool>,
    /// The server's version (`16.4`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_version: Option<String>,
    /// The server's version as a number (`160004`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_version_num: Option<i64>,
    /// Why the server is not usable, when it is not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// Common status fields.
    #[serde(flatten)]
    pub common: CommonStatus,
}

/// A database on a PostgreSQL server, with its owner role and that role's
/// credentials in a Secret.
///
/// `replication`, `size` and `version` describe a dedicated instance; a
/// Database with `serverRef` is managed on that existing server instead.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[cfg_attr(feature = "crd", derive(CustomResource))]
#[cfg_attr(
    feature = "crd",
    kube(
        group = "systems.mikemiller.tech",
        version = "v1alpha1",
        kind = "Database",
        namespaced,
        shortname = "pgdb",
        category = "wasm-operator",
        status = "DatabaseStatus",
        printcolumn = r#"{"name":"Database","type":"string","jsonPath":".status.databaseName"}"#,
        printcolumn = r#"{"name":"Owner","type":"string","jsonPath":".spec.credentials.username"}"#,
        printcolumn = r#"{"name":"Server","type":"string","jsonPath":".status.server","priority":1}"#,
        printcolumn = r#"{"name":"Instances","type":"integer","jsonPath":".status.instances"}"#,
        printcolumn = r#"{"name":"Primary","type":"string","jsonPath":".status.currentPrimary"}"#,
        printcolumn = r#"{"name":"Size","type":"string","jsonPath":".spec.size"}"#,
        printcolumn = r#"{"name":"Version","type":"string","jsonPath":".status.serverVersion"}"#,
        printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
        printcolumn = r#"{"name":"Reason","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].reason","priority":1}"#,
        printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
    )
)]
#[serde(rename_all = "camelCase")]
pub struct DatabaseSpec {
    /// A dedicated instance with a streaming replica.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replication: Option<bool>,
    /// Storage size of a dedicated instance (a Kubernetes quantity, `120Gi`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<String>,
    /// PostgreSQL major version of a dedicated instance (`14`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 10, max = 99))]
    pub version: Option<u32>,
    /// The owner role of the database and its credentials.
    pub credentials: Credentials,
    /// The PostgresServer that hosts the database. Without it the Database
    /// asks for a dedicated instance.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_ref: Option<ServerRef>,
    /// Name of the database on the server (default: `metadata.name`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database_name: Option<String>,
    /// Character encoding (default `UTF8`). Immutable after creation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encoding: Option<String>,
    /// Locale (`LC_COLLATE` and `LC_CTYPE`; default: the server's).
    /// Immutable after creation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub locale: Option<String>,
    /// Extensions created in the database (each must be available on the server).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub extensions: Vec<String>,
    /// Schemas created in the database, owned by the owner role.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub schemas: Vec<String>,
    /// Maximum concurrent connections to the database (-1: no limit).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = -1))]
    pub connection_limit: Option<i32>,
    /// What happens to the database and its roles when the Database is
    /// deleted (default `Retain`).
    #[serde(default)]
    pub reclaim_policy: ReclaimPolicy,
}

/// The owner role of a Database.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Credentials {
    /// Name of the owner role.
    pub username: String,
    /// Rotate the password on a schedule.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_rotation: Option<PasswordRotation>,
}

/// A password rotation schedule.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PasswordRotation {
    /// How often (`720h`, `30m`; units `s`, `m`, `h`, `d`).
    pub interval: String,
}

/// A reference to a PostgresServer.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ServerRef {
    /// Its name.
    pub name: String,
    /// Its namespace (default: the referencing object's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
}

impl ServerRef {
    /// The `namespace/name` key the host uses for the server.
    pub fn key(&self, own_namespace: &str) -> String {
        format!(
            "{}/{}",
            self.namespace.as_deref().unwrap_or(own_namespace),
            self.name
        )
    }
}

/// What happens to data and roles when their resource is deleted.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum ReclaimPolicy {
    /// Leave them on the server.
    #[default]
    Retain,
    /// Drop them (terminating open sessions).
    Delete,
}

/// Status fields every Postgres resource has.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CommonStatus {
    /// The generation the status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Digest of the plugin component that last reconciled the object.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plugin_digest: Option<String>,
    /// `Ready` and friends, following Kubernetes condition conventions.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "conditions_schema")]
    pub conditions: Vec<Value>,
}

/// What the operator observed of a Database or a DatabaseUser: where it
/// lives, and the Secret with its role's credentials.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CredentialsStatus {
    /// `namespace/name` of the PostgresServer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server: Option<String>,
    /// Name of the database on the server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database_name: Option<String>,
    /// The Secret with the role's credentials.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub binding: Option<Binding>,
    /// Password rotation bookkeeping.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<PasswordStatus>,
    /// Common status fields.
    #[serde(flatten)]
    pub common: CommonStatus,
}

/// What the operator observed of a Database: the credentials fields every
/// Database has and, for a dedicated instance (no `spec.serverRef`), its
/// instances, storage, replication and failover bookkeeping.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DatabaseStatus {
    /// Where the database lives and its credentials Secret.
    #[serde(flatten)]
    pub credentials: CredentialsStatus,
    /// Instances (Pods) the dedicated instance consists of.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instances: Option<u32>,
    /// Instances whose Pod is Ready.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready_instances: Option<u32>,
    /// The instance (Pod name) that is the primary.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_primary: Option<String>,
    /// The streaming replicas, as the primary reports them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub replicas: Vec<ReplicaStatus>,
    /// Requested storage and what each volume reports.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage: Option<StorageStatus>,
    /// The primary's version as PostgreSQL reports it (`14.23`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_version: Option<String>,
    /// The major version the instance's data directory was created with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_version: Option<u32>,
    /// A failover being decided or carried out; kept in the status so that
    /// it survives operator restarts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failover: Option<FailoverStatus>,
}

/// One streaming replica.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReplicaStatus {
    /// The instance (Pod name).
    pub name: String,
    /// `pg_stat_replication.state` (`streaming`, `catchup`, …), or
    /// `disconnected` when its slot is inactive.
    pub state: String,
    /// Bytes of WAL the primary has written that the replica has not replayed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lag_bytes: Option<i64>,
}

/// Storage of a dedicated instance.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StorageStatus {
    /// The size each volume is asked to have (`spec.size`, never less than
    /// what the volumes were created with).
    pub requested: String,
    /// Each volume's capacity as the cluster reports it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub volumes: Vec<VolumeStatus>,
}

/// One PersistentVolumeClaim of an instance.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VolumeStatus {
    /// The claim's name (the instance's).
    pub name: String,
    /// `status.capacity.storage`, once bound.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capacity: Option<String>,
}

/// The bookkeeping of a failover.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FailoverStatus {
    /// The primary that stopped being healthy.
    pub primary: String,
    /// Since when (RFC 3339) it has not been healthy.
    pub unhealthy_since: String,
    /// The replica being promoted, once the failover started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub promoting: Option<String>,
}

/// A Service Binding reference to a credentials Secret.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
pub struct Binding {
    /// Name of the Secret, in the resource's namespace.
    pub name: String,
}

/// When a password last changed and which rotation request it answered.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PasswordStatus {
    /// When the password in the Secret was last set (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_rotated: Option<String>,
    /// The value of the rotation annotation last acted upon.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_request: Option<String>,
}

/// An extra role on a Database, with an access profile.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[cfg_attr(feature = "crd", derive(CustomResource))]
#[cfg_attr(
    feature = "crd",
    kube(
        group = "systems.mikemiller.tech",
        version = "v1alpha1",
        kind = "DatabaseUser",
        namespaced,
        shortname = "pguser",
        category = "wasm-operator",
        status = "CredentialsStatus",
        printcolumn = r#"{"name":"Username","type":"string","jsonPath":".spec.username"}"#,
        printcolumn = r#"{"name":"Database","type":"string","jsonPath":".spec.databaseRef.name"}"#,
        printcolumn = r#"{"name":"Access","type":"string","jsonPath":".spec.access"}"#,
        printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
        printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
    )
)]
#[serde(rename_all = "camelCase")]
pub struct DatabaseUserSpec {
    /// The Database (in the same namespace) the role gets access to.
    pub database_ref: DatabaseRef,
    /// Name of the role.
    pub username: String,
    /// What the role may do (default `readOnly`).
    #[serde(default)]
    pub access: Access,
    /// Maximum concurrent connections of the role (-1: no limit).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = -1))]
    pub connection_limit: Option<i32>,
    /// The password stops working after this time (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub valid_until: Option<String>,
    /// Rotate the password on a schedule.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_rotation: Option<PasswordRotation>,
    /// What happens to the role when the DatabaseUser is deleted (default
    /// `Delete`: a role holds no data; its privileges are revoked first).
    #[serde(default = "delete_policy")]
    pub reclaim_policy: ReclaimPolicy,
    /// Who may be given the role's credentials by injection into a Pod
    /// (none: any Pod of the namespace).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consumers: Option<Consumers>,
}

/// The workloads allowed to receive a DatabaseUser's credentials.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Consumers {
    /// ServiceAccounts of the DatabaseUser's namespace whose Pods may have
    /// the credentials injected (`systems.mikemiller.tech/inject-credentials`);
    /// a Pod of any other ServiceAccount is denied at admission.
    #[serde(default)]
    #[schemars(inner(
        length(min = 1, max = 253),
        regex(pattern = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
    ))]
    pub service_accounts: Vec<String>,
}

fn delete_policy() -> ReclaimPolicy {
    ReclaimPolicy::Delete
}

/// A reference to a Database in the same namespace.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
pub struct DatabaseRef {
    /// Its name.
    pub name: String,
}

/// An access profile.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum Access {
    /// Read tables and sequences, now and those the owner creates later.
    #[default]
    ReadOnly,
    /// Read and write rows and use sequences, now and later.
    ReadWrite,
    /// Member of the owner role: everything the owner may do.
    Owner,
}

/// Conditions as Kubernetes defines them (`type`, `status`, `reason`,
/// `message`, `lastTransitionTime`, `observedGeneration`).
fn conditions_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "array",
        "x-kubernetes-list-type": "map",
        "x-kubernetes-list-map-keys": ["type"],
        "items": {
            "type": "object",
            "required": ["type", "status"],
            "properties": {
                "type": {"type": "string"},
                "status": {"type": "string", "enum": ["True", "False", "Unknown"]},
                "reason": {"type": "string"},
                "message": {"type": "string"},
                "lastTransitionTime": {"type": "string", "format": "date-time"},
                "observedGeneration": {"type": "integer", "format": "int64"}
            }
        }
    })
}
