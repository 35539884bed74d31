//! The first acceptance point: PostgreSQL 14 from a plain Pod spec, Ready, reachable
//! on its Pod IP, and its data kept on its claim across Pods.

mod support;

use std::os::unix::fs::MetadataExt;
use std::time::Duration;

use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod, Secret};
use kube::api::{Api, DeleteParams};
use serde_json::{Value, json};
use support::{Cluster, condition, eventually};

const PASSWORD: &str = "pod-password";

/// The Pod as a plugin would write it for a real cluster with the official image.
fn postgres_pod(major: u32) -> Value {
    let image = format!("postgres:{major}");
    let data = json!([{"name": "data", "mountPath": "/var/lib/postgresql/data"}]);
    let pgdata = json!({"name": "PGDATA", "value": "/var/lib/postgresql/data/pgdata"});
    json!({
        "metadata": {"name": "pg-0", "labels": {"app": "pg"}},
        "spec": {
            "securityContext": {"runAsUser": 999, "runAsGroup": 999, "runAsNonRoot": true},
            "terminationGracePeriodSeconds": 10,
            "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": "pg-data"}}],
            "initContainers": [{
                "name": "initdb",
                "image": image,
                "command": ["sh", "-c", concat!(
                    "set -e; [ -s \"$PGDATA/PG_VERSION\" ] && exit 0; ",
                    "printf '%s' \"$POSTGRES_PASSWORD\" > /tmp/pwfile; ",
                    "initdb --username=postgres --pwfile=/tmp/pwfile --auth-local=trust ",
                    "--auth-host=scram-sha-256 -D \"$PGDATA\"; ",
                    "echo 'host all all 0.0.0.0/0 scram-sha-256' >> \"$PGDATA/pg_hba.conf\"",
                )],
                "env": [pgdata, {"name": "POSTGRES_PASSWORD",
                    "valueFrom": {"secretKeyRef": {"name": "pg-secret", "key": "password"}}}],
                "volumeMounts": data,
            }],
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

async fn connect(ip: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::Config::new()
        .host(ip)
        .port(5432)
        .user("postgres")
        .password(PASSWORD)
        .dbname("postgres")
        .connect(tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|e| panic!("connecting to {ip}:5432: {e}"));
    tokio::spawn(connection);
    client
}

async fn ready_pod_ip(cluster: &Cluster) -> String {
    let pod = cluster
        .pod_when("pg-0", "PostgreSQL Ready", |p| condition(p, "Ready"))
        .await;
    pod.status.unwrap().pod_ip.unwrap()
}

#[tokio::test]
async fn postgres_14_from_a_plain_pod_spec_is_ready_on_its_pod_ip_and_keeps_its_data() {
    ready_on_its_pod_ip_and_keeps_its_data(14).await;
}

#[tokio::test]
async fn postgres_16_from_a_plain_pod_spec_is_ready_on_its_pod_ip_and_keeps_its_data() {
    ready_on_its_pod_ip_and_keeps_its_data(16).await;
}

async fn ready_on_its_pod_ip_and_keeps_its_data(major: u32) {
    let cluster = Cluster::start(&format!("postgres-{major}")).await;
    cluster
        .create::<Secret>(
            json!({"metadata": {"name": "pg-secret"}, "stringData": {"password": PASSWORD}}),
        )
        .await;
    cluster
        .create::<PersistentVolumeClaim>(json!({
            "metadata": {"name": "pg-data"},
            "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
        }))
        .await;
    cluster.create::<Pod>(postgres_pod(major)).await;

    let ip = ready_pod_ip(&cluster).await;
    let db = connect(&ip).await;
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
    let second_ip = ready_pod_ip(&cluster).await;
    let db = connect(&second_ip).await;
    let note: String = db
        .query_one("SELECT note FROM kept", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(note, "written by the first Pod");
}
