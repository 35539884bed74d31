//! The child objects of a dedicated instance, as complete as a real
//! cluster needs them: Pods and their PVCs (one per instance, not a
//! StatefulSet — see the README), Services, Secrets, the ConfigMap, the
//! PodDisruptionBudget and one PostgresServer per instance.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};
use wasm_operator_sdk::{ChildBuilder, GroupVersionKind};

use super::config::{
    self, BOOTSTRAP, CONFIG_MOUNT, DATA_MOUNT, PG_HBA_CONF, PGDATA, POSTGRESQL_CONF,
    SUPERUSER_MOUNT,
};
use super::layout::{
    DATABASE_LABEL, INSTANCE_LABEL, Layout, PORT, PRIMARY, REPLICA, REPLICATION_USER, ROLE_LABEL,
    SUPERUSER,
};
use crate::credentials::SECRET_TYPE;
use crate::postgres_server_kind;

/// The official image's `postgres` user and group.
const POSTGRES_UID: i64 = 999;

/// The core `v1 Pod` kind.
pub(crate) fn pod_kind() -> GroupVersionKind {
    GroupVersionKind::core("v1", "Pod")
}

/// The core `v1 PersistentVolumeClaim` kind.
pub(crate) fn claim_kind() -> GroupVersionKind {
    GroupVersionKind::core("v1", "PersistentVolumeClaim")
}

/// The core `v1 Service` kind.
pub(crate) fn service_kind() -> GroupVersionKind {
    GroupVersionKind::core("v1", "Service")
}

/// The core `v1 ConfigMap` kind.
pub(crate) fn config_map_kind() -> GroupVersionKind {
    GroupVersionKind::core("v1", "ConfigMap")
}

/// The `policy/v1 PodDisruptionBudget` kind.
pub(crate) fn disruption_budget_kind() -> GroupVersionKind {
    GroupVersionKind::new("policy", "v1", "PodDisruptionBudget")
}

/// What every instance Pod is built from.
pub(crate) struct PodTemplate<'a> {
    /// The names.
    pub(crate) layout: &'a Layout,
    /// The image of the major version.
    pub(crate) image: &'a str,
    /// Container resources from the settings.
    pub(crate) resources: Option<&'a Value>,
}

impl PodTemplate<'_> {
    /// Instance `n`'s Pod, labelled with `role`. The spec is the same
    /// whatever the role: the bootstrap script reads the role label.
    pub(crate) fn pod(&self, n: u32, role: &str) -> Value {
        let layout = self.layout;
        let instance = layout.instance(n);
        let mounts = json!([
            {"name": "data", "mountPath": DATA_MOUNT},
            {"name": "config", "mountPath": CONFIG_MOUNT, "readOnly": true},
        ]);
        let mut init_mounts = mounts.clone();
        if let Value::Array(list) = &mut init_mounts {
            list.push(json!({"name": "superuser", "mountPath": SUPERUSER_MOUNT, "readOnly": true}));
        }
        let env = |extra: Vec<Value>| {
            let mut env = vec![
                json!({"name": "PGDATA", "value": PGDATA}),
                json!({"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}),
                json!({"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}),
            ];
            env.extend(extra);
            Value::Array(env)
        };
        let init_env = env(vec![
            json!({"name": "ROLE", "valueFrom": {"fieldRef": {
                "fieldPath": format!("metadata.labels['{ROLE_LABEL}']")}}}),
            json!({"name": "SLOT", "value": Layout::slot(n)}),
            json!({"name": "PGPASSWORD", "valueFrom": {"secretKeyRef": {
                "name": layout.replication(), "key": "password"}}}),
        ]);
        let security = json!({
            "allowPrivilegeEscalation": false,
            "capabilities": {"drop": ["ALL"]},
        });
        let mut init = json!({
            "name": "bootstrap",
            "image": self.image,
            "command": ["sh", format!("{CONFIG_MOUNT}/{BOOTSTRAP}")],
            "env": init_env,
            "volumeMounts": init_mounts,
            "securityContext": security,
        });
        let mut postgres = json!({
            "name": "postgres",
            "image": self.image,
            "command": ["postgres"],
            "args": [
                "-D", "$(PGDATA)",
                "-c", format!("config_file={CONFIG_MOUNT}/{POSTGRESQL_CONF}"),
                "-c", "listen_addresses=$(POD_IP)",
                "-c", format!("port={PORT}"),
                "-c", "cluster_name=$(POD_NAME)",
            ],
            "env": env(Vec::new()),
            "ports": [{"name": "postgres", "containerPort": PORT, "protocol": "TCP"}],
            "readinessProbe": {
                "exec": {"command": ["sh", "-c",
                    format!("exec pg_isready -q -h \"$POD_IP\" -p {PORT} -U {SUPERUSER}")]},
                "periodSeconds": 2, "timeoutSeconds": 2, "failureThreshold": 3,
            },
            "volumeMounts": mounts,
            "securityContext": security,
        });
        if let Some(resources) = self.resources {
            init["resources"] = resources.clone();
            postgres["resources"] = resources.clone();
        }
        ChildBuilder::new(&pod_kind(), instance.clone())
            .namespace(&layout.namespace)
            .label(DATABASE_LABEL, &layout.name)
            .label(INSTANCE_LABEL, instance.clone())
            .label(ROLE_LABEL, role)
            .field(
                "spec",
                json!({
                    "restartPolicy": "Always",
                    // PostgreSQL's fast shutdown on SIGTERM needs a moment
                    // to write its checkpoint.
                    "terminationGracePeriodSeconds": 30,
                    "enableServiceLinks": true,
                    "securityContext": {
                        "runAsUser": POSTGRES_UID, "runAsGroup": POSTGRES_UID,
                        "runAsNonRoot": true, "fsGroup": POSTGRES_UID,
                    },
                    "volumes": [
                        {"name": "data", "persistentVolumeClaim": {"claimName": instance}},
                        {"name": "config", "configMap": {"name": layout.config()}},
                        {"name": "superuser", "secret": {"secretName": layout.superuser()}},
                    ],
                    "initContainers": [init],
                    "containers": [postgres],
                }),
            )
            .build()
    }
}

/// Instance `n`'s PVC requesting `request`, of `storage_class` when set.
pub(crate) fn claim(
    layout: &Layout,
    n: u32,
    request: &str,
    storage_class: Option<&str>,
    retain: bool,
) -> Value {
    let mut spec = json!({
        "accessModes": ["ReadWriteOnce"],
        "resources": {"requests": {"storage": request}},
    });
    if let Some(class) = storage_class {
        spec["storageClassName"] = Value::String(class.to_owned());
    }
    let builder = ChildBuilder::new(&claim_kind(), layout.instance(n))
        .namespace(&layout.namespace)
        .label(DATABASE_LABEL, &layout.name)
        .label(INSTANCE_LABEL, layout.instance(n))
        .field("spec", spec);
    if retain {
        builder.retain_on_delete().build()
    } else {
        builder.build()
    }
}

/// A ClusterIP Service named `name` on port 5432 over the instance Pods
/// with `role` (any role when `None`).
pub(crate) fn service(layout: &Layout, name: &str, role: Option<&str>) -> Value {
    let mut selector = json!({DATABASE_LABEL: layout.name});
    if let Some(role) = role {
        selector[ROLE_LABEL] = Value::String(role.to_owned());
    }
    ChildBuilder::new(&service_kind(), name)
        .namespace(&layout.namespace)
        .label(DATABASE_LABEL, &layout.name)
        .field(
            "spec",
            json!({
                "type": "ClusterIP",
                "selector": selector,
                "ports": [{"name": "postgres", "port": PORT, "targetPort": PORT, "protocol": "TCP"}],
            }),
        )
        .build()
}

/// The three Services: `-rw` (primary), `-ro` (replicas), `-r` (any).
pub(crate) fn services(layout: &Layout) -> [Value; 3] {
    [
        service(layout, &layout.read_write(), Some(PRIMARY)),
        service(layout, &layout.read_only(), Some(REPLICA)),
        service(layout, &layout.any(), None),
    ]
}

/// A basic-auth Secret `name` with `username` and `password`.
pub(crate) fn login_secret(
    layout: &Layout,
    name: &str,
    username: &str,
    password: &str,
    retain: bool,
) -> Value {
    let builder = ChildBuilder::new(&crate::secret_kind(), name)
        .namespace(&layout.namespace)
        .label(DATABASE_LABEL, &layout.name)
        .field("type", Value::String(SECRET_TYPE.to_owned()))
        .field(
            "data",
            json!({"username": STANDARD.encode(username), "password": STANDARD.encode(password)}),
        );
    if retain {
        builder.retain_on_delete().build()
    } else {
        builder.build()
    }
}

/// The replication role's Secret.
pub(crate) fn replication_secret(layout: &Layout, password: &str, retain: bool) -> Value {
    login_secret(
        layout,
        &layout.replication(),
        REPLICATION_USER,
        password,
        retain,
    )
}

/// The superuser's Secret (also the PostgresServers' `adminCredentials`).
pub(crate) fn superuser_secret(layout: &Layout, password: &str, retain: bool) -> Value {
    login_secret(layout, &layout.superuser(), SUPERUSER, password, retain)
}

/// The ConfigMap with the configuration files and the bootstrap script.
pub(crate) fn config_map(layout: &Layout, postgresql_conf: String) -> Value {
    ChildBuilder::new(&config_map_kind(), layout.config())
        .namespace(&layout.namespace)
        .label(DATABASE_LABEL, &layout.name)
        .data(POSTGRESQL_CONF, postgresql_conf)
        .data(PG_HBA_CONF, config::pg_hba_conf())
        .data(BOOTSTRAP, config::bootstrap_script(layout))
        .build()
}

/// The PodDisruptionBudget of a two-instance Database: at least one of its
/// instances stays, whichever role it has; a Pod that is not Ready may
/// always be evicted. It never blocks a node drain for good: evicting the
/// primary leaves the replica, which the failover promotes. (A
/// `minAvailable: 1` over the primary alone, CloudNativePG's choice, blocks
/// draining the primary's node until a switchover moves the primary, which
/// this plugin does not do on a cordon.)
pub(crate) fn disruption_budget(layout: &Layout) -> Value {
    ChildBuilder::new(&disruption_budget_kind(), layout.disruption_budget())
        .namespace(&layout.namespace)
        .label(DATABASE_LABEL, &layout.name)
        .field(
            "spec",
            json!({
                "minAvailable": 1,
                "selector": {"matchLabels": {DATABASE_LABEL: layout.name}},
                "unhealthyPodEvictionPolicy": "AlwaysAllow",
            }),
        )
        .build()
}

/// Instance `n`'s PostgresServer at the Pod's IP, with the superuser's
/// credentials: what SQL plans and queries aimed at that instance name.
pub(crate) fn postgres_server(layout: &Layout, n: u32, pod_ip: &str) -> Value {
    ChildBuilder::new(&postgres_server_kind(), layout.instance(n))
        .namespace(&layout.namespace)
        .label(DATABASE_LABEL, &layout.name)
        .label(INSTANCE_LABEL, layout.instance(n))
        .field(
            "spec",
            json!({
                "host": pod_ip,
                "port": PORT,
                // The instances do not serve TLS (yet).
                "sslMode": "disable",
                "adminCredentials": {"secretName": layout.superuser()},
            }),
        )
        .build()
}
