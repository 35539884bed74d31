//! `wasm-operator-demo`: the README's run command for a machine without a
//! cluster. Starts a throwaway PostgreSQL server, the project's *test* API
//! server (not a real Kubernetes) and the operator with the Postgres plugins,
//! applies a PostgresServer and the seed's Database (with a serverRef), waits
//! for it to be Ready and prints how to connect. Runs until Ctrl-C.

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::Client;
use kube::api::{Api, DynamicObject, ObjectMeta, PostParams};
use kube::core::{ApiResource, GroupVersionKind};
use serde_json::{Value, json};
use test_apiserver::TestApiServer;
use test_postgres::PgServer;

/// The seed's Database, verbatim, plus the serverRef that places it on the
/// demo's server.
const DATABASE: &str = r#"
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
    namespace: infra
"#;

/// Kills the operator when the demo ends.
struct Operator(Child);

impl Drop for Operator {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()?;
    let work = repo.join("target/demo");
    std::fs::create_dir_all(&work)?;
    let operator_bin = repo.join("target/release/wasm-operator");
    let plugins = repo.join("target/plugins");
    for needed in [
        operator_bin.clone(),
        plugins.join("postgres-database-plugin.wasm"),
    ] {
        if !needed.exists() {
            bail!(
                "{} is missing: run scripts/demo.sh, which builds it",
                needed.display()
            );
        }
    }

    step("starting a throwaway PostgreSQL server");
    let pg = PgServer::start_default_in(&work).context("starting PostgreSQL")?;
    println!("    PostgreSQL {} on 127.0.0.1:{}", pg.major(), pg.port());

    step("starting the test API server (a stand-in for Kubernetes; see the README)");
    let mut builder = TestApiServer::builder();
    for entry in std::fs::read_dir(repo.join("crds"))? {
        let path = entry?.path();
        // crds/ also holds the kustomization that deploy/ builds on.
        if path
            .file_name()
            .is_some_and(|name| name == "kustomization.yaml")
        {
            continue;
        }
        let crd: Value = serde_saphyr::from_str(&std::fs::read_to_string(&path)?)
            .with_context(|| format!("parsing {}", path.display()))?;
        builder = builder.crd(crd);
    }
    let server = builder
        .start()
        .await
        .context("starting the test API server")?;
    let kubeconfig = work.join("kubeconfig");
    server.write_kubeconfig(&kubeconfig)?;
    let client = server.client();
    println!(
        "    {} (kubeconfig: {})",
        server.url(),
        kubeconfig.display()
    );

    step("applying a PostgresServer, the plugin bindings and the seed's Database");
    apply_setup(&client, &pg, &plugins).await?;

    // The webhooks the operator registers name its Service; here the API
    // server reaches it where cluster DNS would send it.
    let webhook_addr = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0")?;
        probe.local_addr()?
    };
    server.set_service_address("wasm-operator", "wasm-operator-webhook", 443, webhook_addr);

    step("starting wasm-operator");
    let log = std::fs::File::create(work.join("operator.log"))?;
    let _operator = Operator(
        Command::new(&operator_bin)
            .env("KUBECONFIG", &kubeconfig)
            .env("RUST_LOG", "info")
            .args(["--plugin-cache-dir"])
            .arg(repo.join("target/plugin-cache"))
            .args([
                "run",
                "--leader-election=false",
                "--http-addr",
                "127.0.0.1:0",
                "--webhook-addr",
                &webhook_addr.to_string(),
            ])
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("starting wasm-operator")?,
    );
    println!("    logs: {}", work.join("operator.log").display());

    step("waiting for Database infra/foo-db to be Ready");
    let database = wait_ready(&client, Duration::from_secs(120)).await?;
    let secret_name = database.data["status"]["binding"]["name"]
        .as_str()
        .context("status.binding.name is missing")?
        .to_owned();
    let secret = Api::<Secret>::namespaced(client.clone(), "infra")
        .get(&secret_name)
        .await?;
    let uri = secret
        .data
        .as_ref()
        .and_then(|d| d.get("uri"))
        .map(|v| String::from_utf8_lossy(&v.0).into_owned())
        .context("the credentials Secret has no uri")?;

    println!();
    println!("Database infra/foo-db is Ready; its credentials are in Secret infra/{secret_name}.");
    println!("  connection URI: {uri}");
    println!("  try:            psql '{uri}' -c 'select current_user, current_database()'");
    println!();
    println!("Point kubectl at the demo's API server:");
    println!("  export KUBECONFIG={}", kubeconfig.display());
    println!("  kubectl get postgresservers,databases,databaseusers -A");
    println!();
    println!("Running until Ctrl-C (everything is thrown away then).");
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        result = tokio::signal::ctrl_c() => result?,
        _ = terminate.recv() => {}
    }
    println!("stopping: the operator, the API server and PostgreSQL are removed");
    Ok(())
}

fn step(text: &str) {
    println!("==> {text}");
}

fn resource(kind: &str) -> ApiResource {
    ApiResource::from_gvk(&GroupVersionKind::gvk(
        "systems.mikemiller.tech",
        "v1alpha1",
        kind,
    ))
}

async fn apply_setup(client: &Client, pg: &PgServer, plugins: &Path) -> anyhow::Result<()> {
    // `wasm-operator`: the operator's own namespace, where it keeps the
    // webhooks' certificate Secret (deploy/base/namespace.yaml on a cluster).
    for namespace in ["wasm-operator", "infra"] {
        Api::<Namespace>::all(client.clone())
            .create(
                &PostParams::default(),
                &serde_json::from_value(json!({"metadata": {"name": namespace}}))?,
            )
            .await?;
    }
    let value = |text: &str| ByteString(text.as_bytes().to_vec());
    let admin = Secret {
        metadata: ObjectMeta {
            name: Some("main-admin".into()),
            namespace: Some("infra".into()),
            ..Default::default()
        },
        data: Some(
            [
                ("username".to_owned(), value("postgres")),
                ("password".to_owned(), value(test_postgres::ADMIN_PASSWORD)),
            ]
            .into(),
        ),
        ..Default::default()
    };
    Api::<Secret>::namespaced(client.clone(), "infra")
        .create(&PostParams::default(), &admin)
        .await?;
    let server = json!({
        "apiVersion": "systems.mikemiller.tech/v1alpha1",
        "kind": "PostgresServer",
        "metadata": {"name": "main", "namespace": "infra"},
        "spec": {
            "host": "127.0.0.1",
            "port": pg.port(),
            "sslMode": "disable",
            "adminCredentials": {"secretName": "main-admin"},
        },
    });
    create(client, Some("infra"), server).await?;
    let pg_kind =
        |k: &str| json!({"group": "systems.mikemiller.tech", "version": "v1alpha1", "kind": k});
    let reconciler = |reads: Vec<Value>| {
        json!({
            "read": reads,
            "children": [{"version": "v1", "kind": "Secret"}],
            "servers": ["*"],
        })
    };
    for (name, grants) in [
        ("postgres-server", reconciler(vec![])),
        (
            "postgres-database",
            reconciler(vec![pg_kind("PostgresServer")]),
        ),
        (
            "postgres-user",
            reconciler(vec![pg_kind("PostgresServer"), pg_kind("Database")]),
        ),
        // Admission only: credentials injected into annotated Pods.
        (
            "postgres-inject",
            json!({"read": [pg_kind("Database"), pg_kind("DatabaseUser")]}),
        ),
    ] {
        let file = plugins.join(format!("{name}-plugin.wasm"));
        let binding = json!({
            "apiVersion": "systems.mikemiller.tech/v1alpha1",
            "kind": "ReconcilerPlugin",
            "metadata": {"name": name},
            "spec": {"source": {"file": file}, "grants": grants},
        });
        create(client, None, binding).await?;
    }
    let database: Value = serde_saphyr::from_str(DATABASE)?;
    create(client, Some("infra"), database).await
}

async fn create(client: &Client, namespace: Option<&str>, object: Value) -> anyhow::Result<()> {
    let kind = object["kind"].as_str().unwrap_or_default().to_owned();
    let resource = resource(&kind);
    let api: Api<DynamicObject> = match namespace {
        Some(ns) => Api::namespaced_with(client.clone(), ns, &resource),
        None => Api::all_with(client.clone(), &resource),
    };
    api.create(&PostParams::default(), &serde_json::from_value(object)?)
        .await
        .with_context(|| format!("creating a {kind}"))?;
    Ok(())
}

async fn wait_ready(client: &Client, limit: Duration) -> anyhow::Result<DynamicObject> {
    let api: Api<DynamicObject> =
        Api::namespaced_with(client.clone(), "infra", &resource("Database"));
    let started = Instant::now();
    let mut last = String::new();
    loop {
        let database = api.get("foo-db").await?;
        let ready = database.data["status"]["conditions"]
            .as_array()
            .and_then(|c| c.iter().find(|c| c["type"] == "Ready"))
            .cloned();
        if let Some(ready) = ready {
            if ready["status"] == "True" {
                return Ok(database);
            }
            let now = format!("{}: {}", ready["reason"], ready["message"]);
            if now != last {
                println!("    not ready yet: {now}");
                last = now;
            }
        }
        if started.elapsed() > limit {
            bail!(
                "foo-db was not Ready after {limit:?} (last: {last}); see target/demo/operator.log"
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
