//! Credentials injected into Pods, end to end: the real operator binary with
//! the `postgres-inject` admission-only plugin registered by the host, the
//! test API server calling its webhook over HTTPS, a real PostgreSQL server,
//! and the test node running the injected Pod as a real process that
//! connects with what it was given.

mod support;

use std::time::Duration;

use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::Client;
use kube::api::{Api, PostParams};
use serde_json::{Value, json};
use support::cluster::{Cluster, eventually, metric, scrape};
use support::{fixtures, pg_cluster};
use test_node::{Config, TestNode};
use test_postgres::PgServer;

const SERVER_NS: &str = "db";
const APP_NS: &str = "app";
const WAIT: Duration = Duration::from_secs(60);
const INJECT: &str = "systems.mikemiller.tech/inject-credentials";

/// The injector's admission requests as the operator counts them.
const INJECT_REQUESTS: &str = "wasm_operator_admission_requests_total{binding=\"postgres-inject\"";

/// Binds `postgres-inject` from its built component, with the reads its
/// validation needs.
async fn bind_injector(client: &Client) {
    let path = support::plugin_dir().join("postgres-inject-plugin.wasm");
    assert!(
        path.exists(),
        "{} is missing; build the plugins with scripts/build-plugins.sh",
        path.display()
    );
    fixtures::Binding::named("postgres-inject")
        .source_file(&path)
        .grants(json!({"read": [
            {"group": "systems.mikemiller.tech", "version": "v1alpha1", "kind": "Database"},
            {"group": "systems.mikemiller.tech", "version": "v1alpha1", "kind": "DatabaseUser"},
        ]}))
        .create(client)
        .await;
}

/// A Pod of `postgres:15` that prints who it is connected as, through the
/// injected environment, and what the binding volume holds; then sleeps.
fn pod(name: &str, annotations: Value, service_account: Option<&str>) -> Pod {
    let report = concat!(
        "psql -tA -c \"select 'as=' || current_user || '@' || current_database()\"; ",
        "echo \"binding=$(cat \"$SERVICE_BINDING_ROOT\"/orders/username)\"; ",
        "echo \"url=${DATABASE_URL%%:*}\"; exec sleep 600",
    );
    let mut pod = json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": APP_NS, "annotations": annotations},
        "spec": {"containers": [{
            "name": "app",
            "image": "postgres:15",
            "command": ["sh", "-c", report],
        }]},
    });
    if let Some(account) = service_account {
        pod["spec"]["serviceAccountName"] = json!(account);
    }
    serde_json::from_value(pod).unwrap()
}

async fn create_pod(client: &Client, pod: &Pod) -> Result<Pod, kube::core::Status> {
    match Api::<Pod>::namespaced(client.clone(), APP_NS)
        .create(&PostParams::default(), pod)
        .await
    {
        Ok(pod) => Ok(pod),
        Err(kube::Error::Api(status)) => Err(*status),
        Err(error) => panic!("creating a Pod: {error}"),
    }
}

/// A cluster with the PostgresServer `db/main` for `app`, the credential
/// plugins and the injector bound, and the operator running.
async fn start(pg: &PgServer) -> (Cluster, support::cluster::Operator, String) {
    let cluster = Cluster::with_operator_crds("injection", &[SERVER_NS, APP_NS]).await;
    let client = cluster.client();
    pg_cluster::register_server(&client, SERVER_NS, pg.port(), &[APP_NS]).await;
    pg_cluster::bind_plugins(
        &client,
        &["postgres-server", "postgres-database", "postgres-user"],
        None,
    )
    .await;
    bind_injector(&client).await;
    let operator = cluster.start_operator(&["--leader-election=false", "--resync-seconds", "2"]);
    let metrics = operator.http.clone();
    pg_cluster::webhooks_registered(&client, "postgres-inject", WAIT).await;
    (cluster, operator, metrics)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_annotated_pod_gets_credentials_by_reference_and_connects_as_its_role() {
    let install = test_postgres::install_of_major(15)
        .unwrap_or_else(|e| panic!("PostgreSQL 15: {e}; run scripts/install-postgres.sh"));
    let pg = PgServer::start_in(&install, std::path::Path::new(env!("CARGO_TARGET_TMPDIR")))
        .expect("starting PostgreSQL 15");
    let (cluster, mut operator, metrics) = start(&pg).await;
    let client = cluster.client();
    let workdir = tempdir("injection-node");
    let node = TestNode::start(client.clone(), &workdir, Config::default())
        .await
        .expect("starting the test node");

    pg_cluster::create(
        &client,
        Some(APP_NS),
        fixtures::database(
            APP_NS,
            "orders",
            json!({"serverRef": {"name": "main", "namespace": SERVER_NS},
                   "credentials": {"username": "orders_app"}}),
        ),
    )
    .await;
    pg_cluster::create(
        &client,
        Some(APP_NS),
        json!({
            "apiVersion": "systems.mikemiller.tech/v1alpha1",
            "kind": "DatabaseUser",
            "metadata": {"name": "reports", "namespace": APP_NS},
            "spec": {"databaseRef": {"name": "orders"}, "username": "reports", "access": "readOnly",
                     "consumers": {"serviceAccounts": ["reporting"]}},
        }),
    )
    .await;
    pg_cluster::wait_ready(&client, APP_NS, "Database", "orders", WAIT).await;
    pg_cluster::wait_ready(&client, APP_NS, "DatabaseUser", "reports", WAIT).await;
    let credentials = Api::<Secret>::namespaced(client.clone(), APP_NS)
        .get("orders-credentials")
        .await
        .expect("the Database's credentials Secret");
    let field =
        |key: &str| String::from_utf8(credentials.data.as_ref().unwrap()[key].0.clone()).unwrap();
    let (role, dbname, password) = (field("username"), field("dbname"), field("password"));

    // A Pod without the annotation is not sent to the injector at all.
    create_pod(&client, &pod("plain", json!({}), None))
        .await
        .expect("an un-annotated Pod is created");
    assert_eq!(
        metric(&scrape(&metrics).await, INJECT_REQUESTS),
        0.0,
        "an un-annotated Pod reached the injector's webhook"
    );

    // The annotated Pod is stored with references, never the password.
    let stored = create_pod(&client, &pod("api", json!({INJECT: "orders"}), None))
        .await
        .expect("the annotated Pod is admitted");
    let text = serde_json::to_string(&stored).unwrap();
    assert!(
        !text.contains(&password),
        "the password is in the stored Pod"
    );
    let container = &stored.spec.as_ref().unwrap().containers[0];
    for (variable, key) in [
        ("PGHOST", "host"),
        ("PGPORT", "port"),
        ("PGDATABASE", "dbname"),
        ("PGUSER", "username"),
        ("PGPASSWORD", "password"),
    ] {
        let var = container
            .env
            .iter()
            .flatten()
            .find(|e| e.name == variable)
            .unwrap_or_else(|| panic!("{variable} is not injected: {text}"));
        assert!(var.value.is_none(), "{variable} carries a value");
        let reference = var
            .value_from
            .as_ref()
            .and_then(|v| v.secret_key_ref.as_ref())
            .unwrap_or_else(|| panic!("{variable} is not a secretKeyRef"));
        assert_eq!(
            (reference.name.as_str(), reference.key.as_str()),
            ("orders-credentials", key)
        );
    }
    let volumes = stored
        .spec
        .as_ref()
        .unwrap()
        .volumes
        .clone()
        .unwrap_or_default();
    assert!(
        volumes
            .iter()
            .any(|v| v
                .projected
                .as_ref()
                .is_some_and(|p| p.sources.iter().flatten().any(|s| s
                    .secret
                    .as_ref()
                    .is_some_and(|s| s.name == "orders-credentials")))),
        "no projected volume of the credentials Secret: {text}"
    );
    assert_eq!(
        stored.metadata.annotations.as_ref().unwrap()["systems.mikemiller.tech/injected-credentials"],
        "orders-credentials"
    );
    assert!(metric(&scrape(&metrics).await, INJECT_REQUESTS) >= 1.0);

    // The Pod runs on the node and connects as the Database's role.
    let log = eventually(
        "the injected Pod to report its connection",
        WAIT,
        || async {
            let log = node.container_log(APP_NS, "api", "app");
            log.contains("url=").then_some(log)
        },
    )
    .await;
    assert!(
        log.contains(&format!("as={role}@{dbname}")),
        "the Pod did not connect as {role}: {log}"
    );
    assert!(log.contains(&format!("binding={role}")), "{log}");
    assert!(log.contains("url=postgresql"), "{log}");

    // Denials name what is wrong.
    for (name, annotation, account, expected) in [
        ("elsewhere", "db/orders", None, "namespace"),
        ("missing", "nothing", None, "nothing"),
        ("unlisted", "reports", None, "consumers"),
    ] {
        let denied = create_pod(&client, &pod(name, json!({INJECT: annotation}), account))
            .await
            .expect_err("the Pod is denied");
        eprintln!("denied ({name}): {}", denied.message);
        assert_eq!(denied.code, 403, "{denied:?}");
        assert!(
            denied.message.contains(expected),
            "{name}: {}",
            denied.message
        );
    }
    create_pod(
        &client,
        &pod("listed", json!({INJECT: "reports"}), Some("reporting")),
    )
    .await
    .expect("a Pod of a listed ServiceAccount gets the user's credentials");
    for name in ["elsewhere", "missing", "unlisted"] {
        assert!(
            Api::<Pod>::namespaced(client.clone(), APP_NS)
                .get_opt(name)
                .await
                .unwrap()
                .is_none(),
            "denied Pod {name} was stored"
        );
    }

    // The operator down: annotated Pods fail closed naming the webhook and
    // the operator's Service; other Pods are not held up.
    operator.kill();
    let refused = create_pod(&client, &pod("api-2", json!({INJECT: "orders"}), None))
        .await
        .expect_err("an annotated Pod is refused while the operator is down");
    assert!(
        refused.message.contains("failed calling webhook")
            && refused.message.contains("postgres-inject")
            && refused.message.contains("wasm-operator-webhook"),
        "{}",
        refused.message
    );
    create_pod(&client, &pod("plain-2", json!({}), None))
        .await
        .expect("an un-annotated Pod is created while the operator is down");
    drop(node);
}

/// A fresh directory for the node's Pods under the test target directory.
fn tempdir(name: &str) -> std::path::PathBuf {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
