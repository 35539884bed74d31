//! The operator as a cluster runs it, under exactly the RBAC that
//! `wasm-operator rbac` generates, on a test API server that enforces it.
//!
//! The roles are the binary's own output at test time (its host roles, and
//! the roles of `deploy/components/postgres/bindings.yaml`, as `deploy/` is
//! generated), bound to the ServiceAccount `wasm-operator/wasm-operator`; the
//! operator runs with that ServiceAccount's token and leader election on.
//! The Postgres plugins are pushed with `wasm-operator plugin push` and bound
//! by the component's own bindings file, against a real PostgreSQL. So a rule
//! the operator needs but the generator leaves out fails here, not in a
//! cluster; and the second test shows that such a gap is noticed.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::Client;
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, PostParams};
use kube::core::{ApiResource, GroupVersionKind};
use serde_json::{Value, json};
use support::cluster::{Cluster, Operator, OperatorLog, eventually};
use support::pg_cluster;
use support::postgres::PgServer;
use tokio_postgres::NoTls;

/// The operator's namespace and ServiceAccount, as `deploy/base` installs them.
const OPERATOR_NS: &str = "wasm-operator";
const SERVICE_ACCOUNT: &str = "wasm-operator";
/// Where the PostgresServer and its admin Secret live.
const SERVER_NS: &str = "db";
/// The seed's namespace.
const APP_NS: &str = "infra";
const WAIT: Duration = Duration::from_secs(60);
/// How long a run with a rule missing is watched for a Ready it must never reach.
const NEVER: Duration = Duration::from_secs(8);
/// This replica's identity: the Lease must name it.
const IDENTITY: &str = "enforced-0";
/// What the real API server's 403 says (`responsewriters.Forbidden`).
const FORBIDDEN: &str = "is forbidden: User \"system:serviceaccount:wasm-operator:wasm-operator\"";

/// The seed document of the project, with the serverRef a database on an
/// existing server needs, and Delete so that deletion is seen on the server.
const SEED: &str = r#"
apiVersion: systems.mikemiller.tech/v1alpha1
kind: Database
metadata:
  name: foo-db
  namespace: infra
spec:
  replication: true
  size: 120Gi
  version: 14
  credentials:
    username: foo
  serverRef:
    name: main
    namespace: db
  reclaimPolicy: Delete
"#;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn bindings_file() -> PathBuf {
    repo().join("deploy/components/postgres/bindings.yaml")
}

/// Runs `wasm-operator ARGS` (with `kubeconfig` when given) and returns its
/// standard output; fails the test with its standard error otherwise. It
/// runs off the test's runtime, which serves the API server the command
/// may talk to.
async fn wasm_operator(kubeconfig: Option<&Path>, args: &[&str]) -> String {
    let kubeconfig = kubeconfig.map(Path::to_path_buf);
    let args: Vec<String> = args.iter().map(|&a| a.to_owned()).collect();
    tokio::task::spawn_blocking(move || run_wasm_operator(kubeconfig.as_deref(), &args))
        .await
        .expect("running wasm-operator")
}

fn run_wasm_operator(kubeconfig: Option<&Path>, args: &[String]) -> String {
    let mut command = Command::new(env!("CARGO_BIN_EXE_wasm-operator"));
    command.args([
        "--plugin-cache-dir",
        concat!(env!("CARGO_TARGET_TMPDIR"), "/e2e-plugin-cache"),
    ]);
    if let Some(path) = kubeconfig {
        command.env("KUBECONFIG", path);
    }
    let output = command.args(args).output().expect("running wasm-operator");
    assert!(
        output.status.success(),
        "wasm-operator {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("UTF-8 output")
}

fn documents(yaml: &str) -> Vec<Value> {
    serde_saphyr::from_str_multiple::<Value, Vec<_>>(yaml)
        .expect("YAML documents")
        .into_iter()
        .filter(|d| !d.is_null())
        .collect()
}

/// What `deploy/` installs for the Postgres overlay: the host's roles
/// (`wasm-operator rbac`) and the Postgres bindings' roles
/// (`wasm-operator rbac deploy/components/postgres/bindings.yaml`).
async fn generated_rbac() -> Vec<Value> {
    let plugins = support::plugin_dir();
    let plugins = plugins.to_str().expect("a UTF-8 path");
    let bindings = bindings_file();
    let host = wasm_operator(None, &["rbac", "--plugins-dir", plugins]).await;
    let postgres = wasm_operator(
        None,
        &[
            "rbac",
            bindings.to_str().expect("a UTF-8 path"),
            "--name",
            "wasm-operator-postgres",
            "--plugins-dir",
            plugins,
        ],
    )
    .await;
    let mut all = documents(&host);
    all.extend(documents(&postgres));
    all
}

/// Removes `resource` from every rule of the ClusterRole `role`, and rules
/// left with no resource.
fn without(mut manifests: Vec<Value>, role: &str, resource: &str) -> Vec<Value> {
    let mut removed = false;
    for doc in &mut manifests {
        if doc["kind"] != "ClusterRole" || doc["metadata"]["name"] != role {
            continue;
        }
        let rules = doc["rules"].as_array_mut().expect("rules");
        for rule in rules.iter_mut() {
            let resources = rule["resources"].as_array_mut().expect("resources");
            let before = resources.len();
            resources.retain(|r| r != resource);
            removed |= resources.len() < before;
        }
        rules.retain(|rule| !rule["resources"].as_array().unwrap().is_empty());
    }
    assert!(removed, "no rule of ClusterRole {role} names {resource}");
    manifests
}

/// Creates `object` as the cluster admin would (`kubectl apply`).
async fn create(client: &Client, object: &Value) {
    let (group, version) = match object["apiVersion"].as_str().unwrap().split_once('/') {
        Some((group, version)) => (group, version),
        None => ("", object["apiVersion"].as_str().unwrap()),
    };
    let kind = object["kind"].as_str().unwrap();
    let resource = ApiResource::from_gvk(&GroupVersionKind::gvk(group, version, kind));
    let api: Api<DynamicObject> = match object["metadata"]["namespace"].as_str() {
        Some(ns) => Api::namespaced_with(client.clone(), ns, &resource),
        None => Api::all_with(client.clone(), &resource),
    };
    api.create(
        &PostParams::default(),
        &serde_json::from_value(object.clone()).unwrap(),
    )
    .await
    .unwrap_or_else(|e| panic!("creating {kind} {}: {e}", object["metadata"]["name"]));
}

/// An enforcing cluster with `rbac` applied, the Postgres plugins pushed and
/// bound as `deploy/` does it, the PostgresServer `db/main` registered, and
/// the operator running as its ServiceAccount.
async fn install(pg: &PgServer, name: &str, rbac: &[Value]) -> (Cluster, Operator, OperatorLog) {
    let crds = wasm_operator::crd::all()
        .into_values()
        .map(|crd| serde_json::to_value(crd).unwrap())
        .collect();
    let cluster =
        Cluster::start_enforcing_rbac(name, crds, &[OPERATOR_NS, SERVER_NS, APP_NS]).await;
    let admin = cluster.client();
    for object in rbac {
        create(&admin, object).await;
    }
    for plugin in ["server", "database", "user"] {
        let name = format!("postgres-{plugin}-plugin");
        let file = support::plugin_dir().join(format!("{name}.wasm"));
        let report = wasm_operator(
            Some(&cluster.kubeconfig),
            &["plugin", "push", "--name", &name, file.to_str().unwrap()],
        )
        .await;
        assert!(
            report.contains("sha256:"),
            "plugin push reports a digest: {report}"
        );
        let pushed = Api::<ConfigMap>::namespaced(admin.clone(), OPERATOR_NS)
            .get(&name)
            .await
            .expect("the pushed ConfigMap");
        assert!(
            pushed
                .binary_data
                .is_some_and(|data| data.contains_key("plugin.wasm")),
            "ConfigMap {name} holds the component"
        );
    }
    let bindings = std::fs::read_to_string(bindings_file()).expect("reading the bindings");
    for binding in documents(&bindings) {
        create(&admin, &binding).await;
    }
    pg_cluster::register_server(&admin, SERVER_NS, pg.port, &[APP_NS]).await;
    let kubeconfig = cluster.service_account_kubeconfig(OPERATOR_NS, SERVICE_ACCOUNT);
    // The webhooks the operator registers name its Service; the API server
    // reaches this replica there.
    let webhooks = format!("127.0.0.1:{}", support::cluster::free_port());
    cluster.server.set_service_address(
        OPERATOR_NS,
        "wasm-operator-webhook",
        443,
        webhooks.parse().unwrap(),
    );
    let (operator, log) = cluster.start_operator_logged_as(
        &kubeconfig,
        &[
            "--resync-seconds",
            "2",
            "--identity",
            IDENTITY,
            "--webhook-addr",
            &webhooks,
        ],
    );
    (cluster, operator, log)
}

fn api(client: &Client, ns: &str, kind: &str) -> Api<DynamicObject> {
    pg_cluster::api(client, ns, kind)
}

/// Waits for `Ready=True` and returns the object.
async fn wait_ready(client: &Client, ns: &str, kind: &str, name: &str) -> DynamicObject {
    pg_cluster::wait_ready(client, ns, kind, name, WAIT).await
}

/// The keys of the credentials Secret the object's status names.
async fn credentials(client: &Client, object: &DynamicObject) -> Vec<String> {
    let name = object.data["status"]["binding"]["name"]
        .as_str()
        .expect("status.binding.name");
    let secret = Api::<Secret>::namespaced(client.clone(), APP_NS)
        .get(name)
        .await
        .unwrap_or_else(|e| panic!("the credentials Secret {APP_NS}/{name}: {e}"));
    secret.data.unwrap_or_default().into_keys().collect()
}

async fn database_exists(pg: &PgServer, name: &str) -> bool {
    let uri = format!(
        "postgresql://{}:{}@127.0.0.1:{}/postgres",
        support::postgres::ADMIN_USER,
        support::postgres::ADMIN_PASSWORD,
        pg.port
    );
    let (client, connection) = tokio_postgres::connect(&uri, NoTls).await.unwrap();
    tokio::spawn(connection);
    !client
        .query("select 1 from pg_database where datname = $1", &[&name])
        .await
        .unwrap()
        .is_empty()
}

#[tokio::test]
async fn the_operator_works_under_exactly_the_rbac_it_generates() {
    let pg = PgServer::start();
    let rbac = generated_rbac().await;
    let (cluster, _operator, log) = install(&pg, "enforced-rbac", &rbac).await;
    let client = cluster.client();

    let server = wait_ready(&client, SERVER_NS, "PostgresServer", "main").await;
    assert_eq!(server.data["status"]["reachable"], true);

    let seed: DynamicObject = serde_saphyr::from_str(SEED).unwrap();
    api(&client, APP_NS, "Database")
        .create(&PostParams::default(), &seed)
        .await
        .unwrap();
    let database = wait_ready(&client, APP_NS, "Database", "foo-db").await;
    let keys = credentials(&client, &database).await;
    for key in ["username", "password", "dbname", "uri"] {
        assert!(keys.iter().any(|k| k == key), "no key {key} in {keys:?}");
    }
    assert!(database_exists(&pg, "foo-db").await);

    pg_cluster::create(
        &client,
        Some(APP_NS),
        json!({
            "apiVersion": "systems.mikemiller.tech/v1alpha1",
            "kind": "DatabaseUser",
            "metadata": {"name": "app", "namespace": APP_NS},
            "spec": {"databaseRef": {"name": "foo-db"}, "username": "app", "access": "readWrite"},
        }),
    )
    .await;
    let user = wait_ready(&client, APP_NS, "DatabaseUser", "app").await;
    assert!(
        credentials(&client, &user)
            .await
            .contains(&"password".into())
    );

    // Leader election: this replica holds the Lease in its own namespace.
    let lease = Api::<Lease>::namespaced(client.clone(), OPERATOR_NS)
        .get("wasm-operator")
        .await
        .expect("the leader-election Lease");
    assert_eq!(
        lease.spec.and_then(|s| s.holder_identity).as_deref(),
        Some(IDENTITY)
    );
    // Events: the database's creation was recorded.
    let events = support::cluster::events(&client, APP_NS);
    eventually("a Created event for foo-db", WAIT, || async {
        let list = events.list(&ListParams::default()).await.ok()?;
        list.items
            .iter()
            .any(|e| e.data["reason"] == "Created" && e.data["regarding"]["name"] == "foo-db")
            .then_some(())
    })
    .await;

    // Deletion finalizes: the user and then the database go, on the server too.
    api(&client, APP_NS, "DatabaseUser")
        .delete("app", &DeleteParams::default())
        .await
        .unwrap();
    api(&client, APP_NS, "Database")
        .delete("foo-db", &DeleteParams::default())
        .await
        .unwrap();
    for kind in ["DatabaseUser", "Database"] {
        let objects = api(&client, APP_NS, kind);
        eventually(&format!("the {kind} to be finalized"), WAIT, || async {
            objects
                .list(&ListParams::default())
                .await
                .ok()?
                .items
                .is_empty()
                .then_some(())
        })
        .await;
    }
    assert!(
        !database_exists(&pg, "foo-db").await,
        "reclaimPolicy Delete drops the database"
    );

    // Nothing on the way was refused.
    let refused = log.containing(FORBIDDEN);
    assert!(
        refused.is_empty(),
        "the operator was refused under its generated RBAC: {refused:#?}"
    );
}

#[tokio::test]
async fn without_the_secrets_rule_the_server_is_never_ready_and_the_403_is_named() {
    let pg = PgServer::start();
    let rbac = without(generated_rbac().await, "wasm-operator-postgres", "secrets");
    let (cluster, _operator, log) = install(&pg, "enforced-rbac-no-secrets", &rbac).await;
    let client = cluster.client();

    let servers = api(&client, SERVER_NS, "PostgresServer");
    let condition = eventually(
        "PostgresServer db/main to say why it is not Ready",
        WAIT,
        || async {
            let server = servers.get("main").await.ok()?;
            let condition = pg_cluster::ready(&server)?.clone();
            (condition["status"] == "False").then_some(condition)
        },
    )
    .await;
    let message = condition["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("secrets \"main-admin\" is forbidden"),
        "the status names the refused read: {condition}"
    );
    eventually("the 403 in the operator's log", WAIT, || async {
        (!log.containing(FORBIDDEN).is_empty()).then_some(())
    })
    .await;
    let started = std::time::Instant::now();
    while started.elapsed() < NEVER {
        let server = servers.get("main").await.unwrap();
        assert_ne!(
            pg_cluster::ready(&server).map(|c| c["status"].clone()),
            Some(json!("True")),
            "Ready without the Secrets rule"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
