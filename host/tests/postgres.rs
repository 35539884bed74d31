//! End to end on real PostgreSQL: the real operator binary with the real
//! Postgres plugins against the test API server, one throwaway server per
//! major version (14 and 16 from npm, 15 from Debian; see
//! scripts/install-postgres.sh).

mod support;

use std::collections::BTreeMap;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::time::{Duration, Instant};

use futures::FutureExt;

use k8s_openapi::api::core::v1::Secret;
use kube::Client;
use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use support::cluster::{Cluster, Operator, eventually, metric, try_scrape};
use support::{fixtures, pg_cluster};
use test_postgres::PgServer;
use tokio_postgres::NoTls;

/// Where the PostgresServer and its admin Secret live.
const SERVER_NS: &str = "db";
/// The seed's namespace.
const APP_NS: &str = "infra";
const WAIT: Duration = Duration::from_secs(60);
/// How the tests run the operator: one replica, a resync every 2 s.
const OPERATOR_ARGS: &[&str] = &["--leader-election=false", "--resync-seconds", "2"];

fn api(client: &Client, ns: &str, k: &str) -> Api<DynamicObject> {
    pg_cluster::api(client, ns, k)
}

/// Waits for `Ready=True` and returns the object.
async fn wait_ready(client: &Client, ns: &str, k: &str, name: &str) -> DynamicObject {
    pg_cluster::wait_ready(client, ns, k, name, WAIT).await
}

/// Waits for `Ready=False` with `reason` and returns the condition.
async fn wait_not_ready(client: &Client, ns: &str, k: &str, name: &str, reason: &str) -> Value {
    let api = api(client, ns, k);
    eventually(
        &format!("{k} {ns}/{name} to be Ready=False ({reason})"),
        WAIT,
        || async {
            let object = api.get(name).await.ok()?;
            let condition = pg_cluster::ready(&object)?.clone();
            (condition["status"] == "False" && condition["reason"] == reason).then_some(condition)
        },
    )
    .await
}

async fn create(client: &Client, ns: &str, object: Value) {
    pg_cluster::create(client, Some(ns), object).await;
}

/// Creates Database `ns/name` on the server `db/main` with more `spec`.
fn database_object(ns: &str, name: &str, spec: Value) -> Value {
    let mut object = fixtures::database(
        ns,
        name,
        json!({"serverRef": {"name": "main", "namespace": SERVER_NS}}),
    );
    for (key, value) in spec.as_object().unwrap() {
        object["spec"][key] = value.clone();
    }
    object
}

async fn create_database(client: &Client, ns: &str, name: &str, spec: Value) {
    create(client, ns, database_object(ns, name, spec)).await;
}

/// Creates a Database whose spec the plugin refuses, and returns what the
/// user is told: the webhook's denial once the operator has registered it,
/// or else (webhooks off) the `Ready=False` condition with `reason` of the
/// reconcile, which checks the same rules.
async fn refused_database(
    client: &Client,
    ns: &str,
    name: &str,
    spec: Value,
    reason: &str,
) -> String {
    let object: DynamicObject = serde_json::from_value(database_object(ns, name, spec)).unwrap();
    match api(client, ns, "Database")
        .create(&PostParams::default(), &object)
        .await
    {
        Err(kube::Error::Api(status)) if status.code == 403 => status.message,
        Err(error) => panic!("creating Database {ns}/{name}: {error}"),
        Ok(_) => wait_not_ready(client, ns, "Database", name, reason).await["message"]
            .as_str()
            .unwrap()
            .to_owned(),
    }
}

async fn secret(client: &Client, ns: &str, name: &str) -> BTreeMap<String, String> {
    let secret = Api::<Secret>::namespaced(client.clone(), ns)
        .get(name)
        .await
        .unwrap_or_else(|e| panic!("Secret {ns}/{name}: {e}"));
    assert_eq!(secret.type_.as_deref(), Some("kubernetes.io/basic-auth"));
    secret
        .data
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k, String::from_utf8(v.0).unwrap()))
        .collect()
}

/// Connects with a connection URI; the connection runs in the background.
async fn connect(uri: &str) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
    let (client, connection) = tokio_postgres::connect(uri, NoTls).await?;
    tokio::spawn(connection);
    Ok(client)
}

fn admin_uri(pg: &PgServer, database: &str) -> String {
    format!(
        "postgresql://postgres:{}@127.0.0.1:{}/{}",
        test_postgres::ADMIN_PASSWORD,
        pg.port(),
        urlencode(database)
    )
}

fn urlencode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

async fn admin(pg: &PgServer, database: &str) -> tokio_postgres::Client {
    connect(&admin_uri(pg, database)).await.unwrap()
}

/// A cluster with the PostgresServer `db/main` (which lets `infra` use it)
/// and the three Postgres plugins bound; the operator resyncs every 2 s.
async fn start(pg: &PgServer, name: &str) -> (Cluster, Operator) {
    let cluster = Cluster::with_operator_crds(name, &[SERVER_NS, APP_NS, "elsewhere"]).await;
    let client = cluster.client();
    pg_cluster::register_server(&client, SERVER_NS, pg.port(), &[APP_NS]).await;
    pg_cluster::bind_plugins(
        &client,
        &["postgres-server", "postgres-database", "postgres-user"],
        None,
    )
    .await;
    let operator = cluster.start_operator(OPERATOR_ARGS);
    // Every step runs with the plugins' webhooks in place, as on a cluster
    // once the operator is up: registration is asynchronous, and a step
    // racing it would see a denial one run and a condition the next.
    for binding in ["postgres-database", "postgres-user"] {
        pg_cluster::webhooks_registered(&client, binding, WAIT).await;
    }
    (cluster, operator)
}

/// The seed document of the project, verbatim.
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
"#;

fn installed(major: u32) -> PgServer {
    let install = test_postgres::install_of_major(major)
        .unwrap_or_else(|e| panic!("PostgreSQL {major}: {e}; run scripts/install-postgres.sh"));
    PgServer::start_in(&install, std::path::Path::new(env!("CARGO_TARGET_TMPDIR")))
        .unwrap_or_else(|e| panic!("starting PostgreSQL {major}: {e}"))
}

/// The whole story on one major version, step by step: a failure names
/// the version and the step.
async fn suite(major: u32) {
    let pg = installed(major);
    let (cluster, mut operator) = start(&pg, &format!("pg{major}")).await;
    let client = cluster.client();
    let (owner, as_owner) = step(major, "seed", seed(&pg, &client, major)).await;
    step(major, "users", users(&client, &as_owner)).await;
    step(major, "drift", drift(&pg, &client, &owner)).await;
    step(major, "rotation", rotation(&cluster)).await;
    step(major, "restart", restart(&cluster, &mut operator)).await;
    step(major, "hostile_names", hostile_names(&pg, &client)).await;
    step(major, "ownership", ownership(&pg, &client)).await;
    step(major, "reclaim", reclaim(&pg, &client)).await;
    step(major, "namespace_consent", namespace_consent(&client)).await;
}

/// Runs one step of the story; its failure is reported as
/// `PostgreSQL <major>, step <name>: <what failed>`.
async fn step<T>(major: u32, name: &str, step: impl Future<Output = T>) -> T {
    let started = Instant::now();
    match AssertUnwindSafe(step).catch_unwind().await {
        Ok(value) => {
            eprintln!(
                "PostgreSQL {major}, step {name}: passed in {:.1} s",
                started.elapsed().as_secs_f64()
            );
            value
        }
        Err(panic) => {
            let message = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                .unwrap_or_default();
            panic!("PostgreSQL {major}, step {name}: {message}");
        }
    }
}

/// The server is Ready; the seed applies verbatim, its instance is refused
/// where the binding grants no Pods, and with a serverRef it gets its database, owner role and a
/// Secret that logs in.
async fn seed(
    pg: &PgServer,
    client: &Client,
    major: u32,
) -> (BTreeMap<String, String>, tokio_postgres::Client) {
    let server = wait_ready(client, SERVER_NS, "PostgresServer", "main").await;
    assert_eq!(server.data["status"]["reachable"], true);
    assert_eq!(
        server.data["status"]["serverVersionNum"].as_i64().unwrap() / 10000,
        i64::from(major)
    );

    // The seed applies verbatim. Without a serverRef it asks for an instance
    // of its own, whose Pods and volumes this binding does not grant: the
    // host refuses that decision and applies none of it.
    let seed: DynamicObject = serde_saphyr::from_str(SEED).unwrap();
    api(client, APP_NS, "Database")
        .create(&PostParams::default(), &seed)
        .await
        .unwrap();
    let condition = wait_not_ready(client, APP_NS, "Database", "foo-db", "OutputRefused").await;
    let message = condition["message"].as_str().unwrap();
    assert!(message.contains("not granted"), "{message}");
    assert!(
        api(client, APP_NS, "Database")
            .get("foo-db")
            .await
            .unwrap()
            .data["status"]["instances"]
            .is_null(),
        "nothing of the instance was applied"
    );

    // With a serverRef: database foo-db owned by role foo, Secret that works.
    api(client, APP_NS, "Database")
        .patch(
            "foo-db",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"serverRef": {"name": "main", "namespace": SERVER_NS}}})),
        )
        .await
        .unwrap();
    let database = wait_ready(client, APP_NS, "Database", "foo-db").await;
    let ignored = database.data["status"]["conditions"]
        .as_array()
        .and_then(|all| all.iter().find(|c| c["type"] == "SpecIgnored"))
        .expect("the seed's size and replication are said not to apply on a server");
    let expected = if major == 14 {
        "DedicatedOnly"
    } else {
        "VersionMismatch"
    };
    assert_eq!(ignored["reason"], expected, "{ignored}");
    let secret_name = database.data["status"]["binding"]["name"]
        .as_str()
        .expect("status.binding.name")
        .to_owned();
    let owner = secret(client, APP_NS, &secret_name).await;
    for key in [
        "username", "password", "dbname", "host", "port", "uri", "jdbc-uri", "pgpass", "type",
        "provider",
    ] {
        assert!(owner.contains_key(key), "the Secret has no key {key}");
    }
    assert_eq!(owner["username"], "foo");
    assert_eq!(owner["dbname"], "foo-db");
    assert_eq!(owner["type"], "postgresql");
    let row = admin(pg, "postgres")
        .await
        .query_one(
            "select r.rolname::text from pg_database d join pg_roles r on r.oid = d.datdba where d.datname = 'foo-db'",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "foo");
    let as_owner = connect(&owner["uri"]).await.expect("connecting with uri");
    let who = as_owner
        .query_one("select current_user::text, current_database()::text", &[])
        .await
        .unwrap();
    assert_eq!(
        (who.get::<_, String>(0), who.get::<_, String>(1)),
        ("foo".into(), "foo-db".into())
    );
    let verifier = admin(pg, "postgres")
        .await
        .query_one(
            "select rolpassword from pg_authid where rolname = 'foo'",
            &[],
        )
        .await
        .unwrap()
        .get::<_, String>(0);
    assert!(verifier.starts_with("SCRAM-SHA-256$"), "a SCRAM verifier");
    (owner, as_owner)
}

/// readOnly reads what the owner creates later and cannot write; readWrite writes.
async fn users(client: &Client, as_owner: &tokio_postgres::Client) {
    for (name, access) in [("reader", "readOnly"), ("writer", "readWrite")] {
        create(
            client,
            APP_NS,
            json!({
                "apiVersion": "systems.mikemiller.tech/v1alpha1",
                "kind": "DatabaseUser",
                "metadata": {"name": name, "namespace": APP_NS},
                "spec": {"databaseRef": {"name": "foo-db"}, "username": name, "access": access},
            }),
        )
        .await;
    }
    let reader = wait_ready(client, APP_NS, "DatabaseUser", "reader").await;
    wait_ready(client, APP_NS, "DatabaseUser", "writer").await;
    // Created after both users exist.
    as_owner
        .batch_execute("create table items (id int); insert into items values (1)")
        .await
        .unwrap();
    let reader_secret = secret(
        client,
        APP_NS,
        reader.data["status"]["binding"]["name"].as_str().unwrap(),
    )
    .await;
    assert_eq!(reader_secret["dbname"], "foo-db");
    let as_reader = connect(&reader_secret["uri"]).await.unwrap();
    let count: i64 = as_reader
        .query_one("select count(*) from items", &[])
        .await
        .expect("readOnly reads a table the owner created later")
        .get(0);
    assert_eq!(count, 1);
    let denied = as_reader
        .execute("insert into items values (2)", &[])
        .await
        .expect_err("readOnly cannot write");
    assert_eq!(denied.code().unwrap().code(), "42501");
    let writer = secret(client, APP_NS, "writer-user-credentials").await;
    let as_writer = connect(&writer["uri"]).await.unwrap();
    as_writer
        .execute("insert into items values (2)", &[])
        .await
        .expect("readWrite writes");
}

/// A dropped role and a changed password come back within a resync.
async fn drift(pg: &PgServer, client: &Client, owner: &BTreeMap<String, String>) {
    let in_db = admin(pg, "foo-db").await;
    in_db
        .batch_execute("drop owned by reader; drop role reader")
        .await
        .unwrap();
    let reader = secret(client, APP_NS, "reader-user-credentials").await;
    eventually("the dropped role to be recreated", WAIT, || async {
        let c = connect(&reader["uri"]).await.ok()?;
        c.query_one("select count(*) from items", &[]).await.ok()
    })
    .await;

    admin(pg, "postgres")
        .await
        .batch_execute("alter role foo password 'changed-by-hand'")
        .await
        .unwrap();
    eventually("the owner's password to be reset", WAIT, || async {
        connect(&owner["uri"]).await.ok()
    })
    .await;
}

/// Asking for a rotation changes the password: the old one stops working.
/// The operator's watches lag (as on a loaded API server): its cache trails
/// its own writes, the new Secret by longer than a resync. One request still
/// rotates once, and the resyncs keep the new password.
async fn rotation(cluster: &Cluster) {
    let client = &cluster.client();
    let faults = cluster.server.faults();
    faults.set_watch_lag("databaseusers", Duration::from_millis(800));
    faults.set_watch_lag("secrets", Duration::from_secs(3));
    let before = secret(client, APP_NS, "reader-user-credentials").await;
    api(client, APP_NS, "DatabaseUser")
        .patch(
            "reader",
            &PatchParams::default(),
            &Patch::Merge(
                json!({"metadata": {"annotations": {postgres_api::ROTATE_PASSWORD_ANNOTATION: "1"}}}),
            ),
        )
        .await
        .unwrap();
    let after = eventually("a new password in the Secret", WAIT, || async {
        let s = secret(client, APP_NS, "reader-user-credentials").await;
        (s["password"] != before["password"]).then_some(s)
    })
    .await;
    eventually("the new password to work", WAIT, || async {
        connect(&after["uri"]).await.ok()
    })
    .await;
    let old = connect(&before["uri"])
        .await
        .expect_err("the old password stops working");
    assert_eq!(old.code().map(|c| c.code()), Some("28P01"));

    // One request, one rotation: resyncs (every 2 s) and the reconciles the
    // new Secret triggers keep the new password, at every moment.
    let watching = std::time::Instant::now();
    while watching.elapsed() < Duration::from_secs(5) {
        let attempt = connect(&after["uri"]).await;
        assert!(
            attempt.is_ok(),
            "the new password stopped working {:?} after the rotation: {:?}",
            watching.elapsed(),
            attempt.err()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let later = secret(client, APP_NS, "reader-user-credentials").await;
    assert_eq!(
        later["password"], after["password"],
        "the password was rotated again without a new request"
    );
    connect(&later["uri"])
        .await
        .expect("the new password still works");
    let rotations: Vec<Value> = support::cluster::events(client, APP_NS)
        .list(&Default::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|e| {
            e.data["reason"] == "PasswordRotated" && e.data["regarding"]["name"] == "reader"
        })
        .map(|e| e.data)
        .collect();
    assert_eq!(
        rotations.len(),
        1,
        "one PasswordRotated event: {rotations:?}"
    );
    assert!(
        rotations[0].get("series").is_none_or(Value::is_null),
        "the rotation event did not repeat: {rotations:?}"
    );
    faults.set_watch_lag("databaseusers", Duration::ZERO);
    faults.set_watch_lag("secrets", Duration::ZERO);
}

/// A restarted operator keeps every password: it reads the Secrets back from
/// its caches before any reconcile decides.
async fn restart(cluster: &Cluster, operator: &mut Operator) {
    let client = &cluster.client();
    let names = [
        "foo-db-credentials",
        "reader-user-credentials",
        "writer-user-credentials",
    ];
    let mut before = Vec::new();
    for name in names {
        before.push(secret(client, APP_NS, name).await);
    }
    operator.kill();
    *operator = cluster.start_operator(OPERATOR_ARGS);
    let http = operator.http.clone();
    eventually(
        "the restarted operator to reconcile each DatabaseUser twice",
        WAIT,
        || async {
            let text = try_scrape(&http).await?;
            let reconciles = metric(
                &text,
                r#"wasm_operator_reconciles_total{binding="postgres-user",plugin="postgres-user""#,
            );
            (reconciles >= 4.0).then_some(())
        },
    )
    .await;
    for (name, before) in names.into_iter().zip(before) {
        let after = secret(client, APP_NS, name).await;
        assert_eq!(
            after["password"], before["password"],
            "{name}: the password changed across a restart"
        );
        connect(&after["uri"])
            .await
            .unwrap_or_else(|e| panic!("{name}: the password stopped working: {e}"));
    }
}

/// Hostile identifiers are quoted (exactly the intended statements run) or
/// refused naming the field.
async fn hostile_names(pg: &PgServer, client: &Client) {
    admin(pg, "postgres")
        .await
        .batch_execute("create table canary (id int)")
        .await
        .unwrap();
    let database_name = "we\"ird; $$ db ünï';--";
    let username = "a\";drop table canary;--";
    create_database(
        client,
        APP_NS,
        "hostile",
        json!({"databaseName": database_name,
                "credentials": {"username": username}}),
    )
    .await;
    wait_ready(client, APP_NS, "Database", "hostile").await;
    let admin_client = admin(pg, "postgres").await;
    let owner = admin_client
        .query_one(
            "select r.rolname::text from pg_database d join pg_roles r on r.oid = d.datdba where d.datname = $1",
            &[&database_name],
        )
        .await
        .expect("the database exists under its exact name");
    assert_eq!(owner.get::<_, String>(0), username);
    admin_client
        .query_one("select count(*) from canary", &[])
        .await
        .expect("the canary table survived");
    // The server logs every statement (log_statement=all): the hostile
    // names reached it only as quoted identifiers, never as statements.
    let log = pg.log();
    assert!(
        log.contains(r#"CREATE ROLE "a"";drop table canary;--" LOGIN"#),
        "the role name was sent quoted"
    );
    assert!(
        log.contains(
            r#"CREATE DATABASE "we""ird; $$ db ünï';--" OWNER "a"";drop table canary;--""#
        ),
        "the database name was sent quoted"
    );
    assert!(
        !log.to_lowercase()
            .lines()
            .any(|l| l.contains(": drop table canary")),
        "no statement other than the intended ones ran"
    );

    let long = "x".repeat(64);
    let refused = refused_database(
        client,
        APP_NS,
        "too-long",
        json!({"credentials": {"username": long}}),
        "InvalidSpec",
    )
    .await;
    assert!(
        refused.contains("spec.credentials.username"),
        "the denial or condition names the field: {refused}"
    );
    for reserved in ["postgres", "pg_monitor"] {
        let name = format!("reserved-{}", reserved.replace('_', "-"));
        let refused = refused_database(
            client,
            APP_NS,
            &name,
            json!({"credentials": {"username": reserved}}),
            "InvalidSpec",
        )
        .await;
        assert!(refused.contains("spec.credentials.username"), "{refused}");
    }
    let truncated = &long[..63];
    let rows = admin_client
        .query("select 1 from pg_roles where rolname = $1", &[&truncated])
        .await
        .unwrap();
    assert!(rows.is_empty(), "no role was created for the refused name");
}

/// `Delete` drops the database despite an open session; `Retain` keeps it.
async fn reclaim(pg: &PgServer, client: &Client) {
    for (name, policy) in [("gone", "Delete"), ("kept", "Retain")] {
        create_database(
            client,
            APP_NS,
            name,
            json!({"credentials": {"username": format!("{name}-owner")},
                    "reclaimPolicy": policy}),
        )
        .await;
    }
    wait_ready(client, APP_NS, "Database", "gone").await;
    wait_ready(client, APP_NS, "Database", "kept").await;
    let gone = secret(client, APP_NS, "gone-credentials").await;
    let session = connect(&gone["uri"]).await.unwrap();
    session.query_one("select 1", &[]).await.unwrap();
    let databases = api(client, APP_NS, "Database");
    for name in ["gone", "kept"] {
        databases
            .delete(name, &DeleteParams::default())
            .await
            .unwrap();
    }
    for name in ["gone", "kept"] {
        eventually(
            &format!("Database {name} to be finalized"),
            WAIT,
            || async { databases.get_opt(name).await.ok()?.is_none().then_some(()) },
        )
        .await;
    }
    let admin_client = admin(pg, "postgres").await;
    let exists = |name: &'static str| {
        let admin_client = &admin_client;
        async move {
            !admin_client
                .query("select 1 from pg_database where datname = $1", &[&name])
                .await
                .unwrap()
                .is_empty()
        }
    };
    assert!(
        !exists("gone").await,
        "reclaimPolicy Delete drops the database"
    );
    assert!(
        exists("kept").await,
        "reclaimPolicy Retain keeps the database"
    );
    let role = admin_client
        .query("select 1 from pg_roles where rolname = 'gone-owner'", &[])
        .await
        .unwrap();
    assert!(role.is_empty(), "reclaimPolicy Delete drops the owner role");
    let secrets = Api::<Secret>::namespaced(client.clone(), APP_NS);
    eventually(
        "the deleted Database's Secret to be collected",
        WAIT,
        || async {
            secrets
                .get_opt("gone-credentials")
                .await
                .ok()?
                .is_none()
                .then_some(())
        },
    )
    .await;
    let kept = secrets.get("kept-credentials").await.unwrap();
    assert!(
        kept.metadata
            .owner_references
            .unwrap_or_default()
            .is_empty(),
        "the retained Secret is released from its Database"
    );
    assert!(
        kept.metadata.annotations.unwrap_or_default()["systems.mikemiller.tech/retained-from"]
            .starts_with("Database infra/kept (uid "),
    );
    let uri = secret(client, APP_NS, "kept-credentials").await["uri"].clone();
    connect(&uri)
        .await
        .expect("the retained role's password is kept, and still logs in");
}

/// A role belongs to the resource that created it: an existing superuser is
/// not taken over (nor dropped), a second Database naming a role the first
/// owns is refused while the first's password keeps working, and the
/// dedicated-instance fields are checked before any SQL.
async fn ownership(pg: &PgServer, client: &Client) {
    let admin_client = admin(pg, "postgres").await;
    admin_client
        .batch_execute("create role dba superuser login password 'dba-by-hand'")
        .await
        .unwrap();
    let dba_uri = format!(
        "postgresql://dba:dba-by-hand@127.0.0.1:{}/postgres",
        pg.port()
    );
    create_database(
        client,
        APP_NS,
        "takeover",
        json!({"credentials": {"username": "dba"}, "reclaimPolicy": "Delete"}),
    )
    .await;
    let refused = wait_not_ready(client, APP_NS, "Database", "takeover", "PrivilegedRole").await;
    assert!(
        refused["message"].as_str().unwrap().contains("SUPERUSER"),
        "{refused}"
    );
    assert!(
        Api::<Secret>::namespaced(client.clone(), APP_NS)
            .get_opt("takeover-credentials")
            .await
            .unwrap()
            .is_none(),
        "no credentials for a role the Database may not have"
    );
    connect(&dba_uri)
        .await
        .expect("the superuser's own password still logs in");

    create_database(
        client,
        APP_NS,
        "first",
        json!({"credentials": {"username": "shared"}}),
    )
    .await;
    wait_ready(client, APP_NS, "Database", "first").await;
    create_database(
        client,
        APP_NS,
        "second",
        json!({"credentials": {"username": "shared"}}),
    )
    .await;
    let refused = wait_not_ready(client, APP_NS, "Database", "second", "OwnedByAnother").await;
    assert!(
        refused["message"]
            .as_str()
            .unwrap()
            .contains("belongs to Database infra/first"),
        "{refused}"
    );
    let invalid = [
        ("minus", json!({"size": "-1Gi"}), "spec.size"),
        ("lots", json!({"size": "lots"}), "spec.size"),
        ("future", json!({"version": 99}), "spec.version"),
    ];
    for (name, fields, field) in &invalid {
        let mut spec = fields.clone();
        spec["credentials"] = json!({"username": format!("{name}-owner")});
        let refused = refused_database(client, APP_NS, name, spec, "InvalidSpec").await;
        assert!(refused.contains(&format!("{field}: ")), "{name}: {refused}");
        let role = admin_client
            .query(
                "select 1 from pg_roles where rolname = $1",
                &[&format!("{name}-owner")],
            )
            .await
            .unwrap();
        assert!(role.is_empty(), "{name}: no SQL ran");
    }

    // Ten resyncs (2 s each): the first's password keeps working throughout.
    let first = secret(client, APP_NS, "first-credentials").await;
    for _ in 0..11 {
        connect(&first["uri"])
            .await
            .expect("the first Database's password keeps working");
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    assert_eq!(
        secret(client, APP_NS, "first-credentials").await["password"],
        first["password"]
    );
    let mark: Option<String> = admin_client
        .query_one(
            "select shobj_description(oid, 'pg_authid') from pg_roles where rolname = 'shared'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(
        mark.unwrap_or_default()
            .starts_with("wasm-operator: created for Database infra/first (uid "),
        "the role records its owner on the server"
    );

    // Deleting the refused Database with Delete leaves the superuser alone.
    let databases = api(client, APP_NS, "Database");
    for name in ["takeover", "second", "minus", "lots", "future"] {
        match databases.delete(name, &DeleteParams::default()).await {
            Ok(_) => {}
            // Denied at admission, so never stored.
            Err(kube::Error::Api(status)) if status.code == 404 => {}
            Err(error) => panic!("deleting Database {name}: {error}"),
        }
    }
    eventually("the refused Databases to be finalized", WAIT, || async {
        databases
            .get_opt("takeover")
            .await
            .ok()?
            .is_none()
            .then_some(())
    })
    .await;
    connect(&dba_uri)
        .await
        .expect("the superuser survives the Database's deletion");
    connect(&first["uri"])
        .await
        .expect("and so does the first Database's role");
}

/// A namespace the server does not list cannot use it.
async fn namespace_consent(client: &Client) {
    let refused = refused_database(
        client,
        "elsewhere",
        "intruder",
        json!({"credentials": {"username": "intruder"}}),
        "ServerNotAllowed",
    )
    .await;
    assert!(refused.contains("db/main"), "{refused}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_plugins_on_postgresql_14() {
    suite(14).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_plugins_on_postgresql_15() {
    suite(15).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_plugins_on_postgresql_16() {
    suite(16).await;
}
