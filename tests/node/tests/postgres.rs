//! The acceptance: PostgreSQL 14 and 16 from a plain Pod spec, Ready, reachable
//! through its Service's clusterIP, its data kept on its claim across Pods, and a replica
//! made by `pg_basebackup -R` from that Service streaming from it.

mod support;

use std::os::unix::fs::MetadataExt;
use std::time::Duration;

use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod, Secret, Service};
use kube::api::{Api, DeleteParams};
use serde_json::{Value, json};
use support::{Cluster, condition, eventually};

const PASSWORD: &str = "pod-password";

/// The primary's Pod as a plugin would write it for a real cluster with the official image.
fn postgres_pod(major: u32) -> Value {
    let init = json!({
        "name": "initdb",
        "image": format!("postgres:{major}"),
        "command": ["sh", "-c", concat!(
            "set -e; [ -s \"$PGDATA/PG_VERSION\" ] && exit 0; ",
            "printf '%s' \"$POSTGRES_PASSWORD\" > /tmp/pwfile; ",
            "initdb --username=postgres --pwfile=/tmp/pwfile --auth-local=trust ",
            "--auth-host=scram-sha-256 -D \"$PGDATA\"; ",
            "echo 'host all all 0.0.0.0/0 scram-sha-256' >> \"$PGDATA/pg_hba.conf\"; ",
            "echo 'host replication all 0.0.0.0/0 scram-sha-256' >> \"$PGDATA/pg_hba.conf\"",
        )],
        "env": [pgdata(), {"name": "POSTGRES_PASSWORD",
            "valueFrom": {"secretKeyRef": {"name": "pg-secret", "key": "password"}}}],
        "volumeMounts": data_mount(),
    });
    instance_pod(major, "pg-0", "primary", "pg-data", init)
}

/// A replica's Pod: its init container clones the primary through the `pg-rw` Service
/// (found by the variables the kubelet gives it), `-R` making it a standby of that address.
fn replica_pod(major: u32) -> Value {
    let init = json!({
        "name": "basebackup",
        "image": format!("postgres:{major}"),
        "command": ["sh", "-c", concat!(
            "set -e; [ -s \"$PGDATA/PG_VERSION\" ] && exit 0; ",
            "pg_basebackup -h \"$PG_RW_SERVICE_HOST\" -p \"$PG_RW_SERVICE_PORT\" -U postgres ",
            "-D \"$PGDATA\" -R -X stream",
        )],
        "env": [pgdata(), {"name": "PGPASSWORD",
            "valueFrom": {"secretKeyRef": {"name": "pg-secret", "key": "password"}}}],
        "volumeMounts": data_mount(),
    });
    instance_pod(major, "pg-1", "replica", "pg-data-1", init)
}

fn pgdata() -> Value {
    json!({"name": "PGDATA", "value": "/var/lib/postgresql/data/pgdata"})
}

fn data_mount() -> Value {
    json!([{"name": "data", "mountPath": "/var/lib/postgresql/data"}])
}

fn instance_pod(major: u32, name: &str, role: &str, claim: &str, init: Value) -> Value {
    let image = format!("postgres:{major}");
    let data = data_mount();
    let pgdata = pgdata();
    json!({
        "metadata": {"name": name, "labels": {"app": "pg", "role": role}},
        "spec": {
            "securityContext": {"runAsUser": 999, "runAsGroup": 999, "runAsNonRoot": true},
            "terminationGracePeriodSeconds": 10,
            "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": claim}}],
            "initContainers": [init],
            "containers": [{
                "name": "postgres",
                "image": image,
                "command": ["postgres"],
                "args": ["-c", "listen_addresses=$(POD_IP)", "-c", "fsync=off"],
                "env": [pgdata, {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}],
                "ports": [{"name": "postgres", "containerPort": 5432}],
                "readinessProbe": {"tcpSocket": {"port": "postgres"}, "periodSeconds": 1},
                "volumeMounts": data,
            }],
        },
    })
}

async fn try_connect(ip: &str) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
    let (client, connection) = tokio_postgres::Config::new()
        .host(ip)
        .port(5432)
        .user("postgres")
        .password(PASSWORD)
        .dbname("postgres")
        .connect_timeout(Duration::from_secs(5))
        .connect(tokio_postgres::NoTls)
        .await?;
    tokio::spawn(connection);
    Ok(client)
}

async fn connect(ip: &str) -> tokio_postgres::Client {
    try_connect(ip)
        .await
        .unwrap_or_else(|e| panic!("connecting to {ip}:5432: {e}"))
}

/// Connects through the Service once the forwarder has a ready endpoint for it.
async fn connect_through(cluster_ip: &str) -> tokio_postgres::Client {
    eventually(
        "the Service forwarding",
        Duration::from_secs(20),
        || async { try_connect(cluster_ip).await.ok() },
    )
    .await
}

async fn ready_pod_ip(cluster: &Cluster, name: &str) -> String {
    let pod = cluster
        .pod_when(name, "PostgreSQL Ready", |p| condition(p, "Ready"))
        .await;
    pod.status.unwrap().pod_ip.unwrap()
}

fn claim(name: &str) -> Value {
    json!({
        "metadata": {"name": name},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
    })
}

#[tokio::test]
async fn postgres_14_from_a_plain_pod_spec_serves_through_its_service_keeps_its_data_and_streams_to_a_replica()
 {
    primary_and_replica(14).await;
}

/// No replica for 16: the PostgreSQL 16 install (npm's embedded build) has no
/// `pg_basebackup`, and the host's (Debian's 15) refuses a newer server.
#[tokio::test]
async fn postgres_16_from_a_plain_pod_spec_serves_through_its_service_and_keeps_its_data() {
    primary(16).await;
}

/// A primary behind its Service `pg-rw`, with a row kept across two Pods; returns the
/// cluster and the Service's address.
async fn primary(major: u32) -> (Cluster, String) {
    let cluster = Cluster::start(&format!("postgres-{major}")).await;
    cluster
        .create::<Secret>(
            json!({"metadata": {"name": "pg-secret"}, "stringData": {"password": PASSWORD}}),
        )
        .await;
    cluster
        .create::<PersistentVolumeClaim>(claim("pg-data"))
        .await;
    let service: Service = cluster
        .create(json!({
            "metadata": {"name": "pg-rw"},
            "spec": {"selector": {"app": "pg", "role": "primary"},
                "ports": [{"name": "postgres", "port": 5432, "targetPort": "postgres"}]},
        }))
        .await;
    let cluster_ip = service.spec.unwrap().cluster_ip.unwrap();
    cluster.create::<Pod>(postgres_pod(major)).await;

    let ip = ready_pod_ip(&cluster, "pg-0").await;
    let db = connect_through(&cluster_ip).await;
    let row = db
        .query_one("SELECT current_setting('server_version_num')::int / 10000, current_setting('listen_addresses')", &[])
        .await
        .unwrap();
    assert_eq!(
        (row.get::<_, i32>(0), row.get::<_, String>(1)),
        (i32::try_from(major).unwrap(), ip.clone())
    );
    db.batch_execute(
        "CREATE TABLE kept (note text); INSERT INTO kept VALUES ('written by the first Pod')",
    )
    .await
    .unwrap();
    drop(db);

    let pvc: PersistentVolumeClaim = Api::namespaced(cluster.client.clone(), "default")
        .get("pg-data")
        .await
        .unwrap();
    let pgdata = cluster
        .node
        .volume_dir(&pvc.spec.unwrap().volume_name.unwrap())
        .join("pgdata");
    assert_eq!(
        std::fs::metadata(&pgdata).unwrap().uid(),
        999,
        "the server runs as uid 999"
    );

    cluster
        .pods()
        .delete("pg-0", &DeleteParams::default())
        .await
        .unwrap();
    let pods = cluster.pods();
    eventually("the first Pod gone", Duration::from_secs(20), || async {
        pods.get_opt("pg-0").await.unwrap().is_none().then_some(())
    })
    .await;
    assert!(
        cluster
            .node
            .container_log("default", "pg-0", "postgres")
            .contains("received smart shutdown request"),
        "PostgreSQL was stopped with SIGTERM"
    );

    cluster.create::<Pod>(postgres_pod(major)).await;
    let second_ip = ready_pod_ip(&cluster, "pg-0").await;
    let db = connect(&second_ip).await;
    let note: String = db
        .query_one("SELECT note FROM kept", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(note, "written by the first Pod");
    (cluster, cluster_ip)
}

async fn primary_and_replica(major: u32) {
    let (cluster, cluster_ip) = primary(major).await;
    // The replica, cloned through the Service, streams from the primary.
    cluster
        .create::<PersistentVolumeClaim>(claim("pg-data-1"))
        .await;
    cluster.create::<Pod>(replica_pod(major)).await;
    let replica_ip = ready_pod_ip(&cluster, "pg-1").await;
    let primary = connect_through(&cluster_ip).await;
    eventually("the replica streaming", Duration::from_secs(20), || async {
        let row = primary
            .query_one(
                "SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'",
                &[],
            )
            .await
            .unwrap();
        (row.get::<_, i64>(0) == 1).then_some(())
    })
    .await;
    primary
        .batch_execute("INSERT INTO kept VALUES ('streamed to the replica')")
        .await
        .unwrap();
    let replica = connect(&replica_ip).await;
    let in_recovery: bool = replica
        .query_one("SELECT pg_is_in_recovery()", &[])
        .await
        .unwrap()
        .get(0);
    assert!(in_recovery, "pg-1 is a standby");
    eventually(
        "the row on the replica",
        Duration::from_secs(10),
        || async {
            let rows = replica
                .query(
                    "SELECT note FROM kept WHERE note = 'streamed to the replica'",
                    &[],
                )
                .await
                .unwrap();
            (rows.len() == 1).then_some(())
        },
    )
    .await;
}
