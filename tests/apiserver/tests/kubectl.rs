//! kubectl against the server as against a real cluster: server-side printing (`Table`)
//! for `kubectl get`, `kubectl explain` from the OpenAPI v3 documents, `kubectl wait`, and
//! the requests kubectl sends, checked with /usr/bin/kubectl itself.

use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::{ConfigMap, Event as CoreEvent, ObjectReference, Pod, Secret};
use kube::api::ListParams;
use kube::api::{
    Api, ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams, PostParams,
};
use kube::runtime::events::{Event, EventType, Recorder};
use serde_json::{Value, json};
use test_apiserver::TestApiServer;

const KUBECTL_TABLE: &str = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json";

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The project's CRDs, as `--crd crds/*.yaml` loads them.
fn project_crds() -> Vec<Value> {
    let mut crds = Vec::new();
    for entry in std::fs::read_dir(repo().join("crds")).expect("crds/") {
        let path = entry.expect("entry").path();
        let text = std::fs::read_to_string(&path).expect("readable CRD");
        let value: Value = serde_saphyr::from_str(&text).expect("YAML");
        if value["kind"] == "CustomResourceDefinition" {
            crds.push(value);
        }
    }
    crds
}

struct Kubectl {
    server: TestApiServer,
    kubeconfig: PathBuf,
    _dir: TempDir,
}

/// A directory removed on drop (no tempfile crate in the workspace).
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

impl Kubectl {
    async fn start() -> Self {
        let mut builder = TestApiServer::builder();
        for crd in project_crds() {
            builder = builder.crd(crd);
        }
        let server = builder.start().await.expect("server starts");
        let dir = std::env::temp_dir().join(format!(
            "test-apiserver-kubectl-{}-{}",
            std::process::id(),
            server.url().rsplit(':').next().unwrap_or("0")
        ));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let kubeconfig = dir.join("kubeconfig");
        server.write_kubeconfig(&kubeconfig).expect("kubeconfig");
        Self {
            server,
            kubeconfig,
            _dir: TempDir(dir),
        }
    }

    /// Runs kubectl off the runtime thread, so the server keeps answering, with a cache
    /// directory of this test's own (kubectl caches discovery and OpenAPI documents).
    async fn output(&self, args: &[&str]) -> std::process::Output {
        let kubeconfig = self.kubeconfig.clone();
        let cache = self._dir.0.join("cache");
        let args: Vec<String> = args.iter().map(|a| (*a).to_string()).collect();
        tokio::task::spawn_blocking(move || {
            std::process::Command::new("kubectl")
                .arg("--kubeconfig")
                .arg(&kubeconfig)
                .arg("--cache-dir")
                .arg(&cache)
                .args(&args)
                .current_dir(repo())
                .output()
                .expect("kubectl runs")
        })
        .await
        .expect("joined")
    }

    /// Runs kubectl; panics unless it succeeds, returning its stdout.
    async fn run(&self, args: &[&str]) -> String {
        let output = self.output(args).await;
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        assert!(
            output.status.success(),
            "kubectl {args:?} failed: {}\n{stdout}",
            String::from_utf8_lossy(&output.stderr)
        );
        stdout
    }

    /// Runs kubectl; panics if it succeeds, returning its stderr.
    async fn fail(&self, args: &[&str]) -> String {
        let output = self.output(args).await;
        assert!(
            !output.status.success(),
            "kubectl {args:?} succeeded: {}",
            String::from_utf8_lossy(&output.stdout)
        );
        String::from_utf8_lossy(&output.stderr).into_owned()
    }
}

fn words(line: &str) -> Vec<&str> {
    line.split_whitespace().collect()
}

async fn seed_database(k: &Kubectl) {
    k.run(&["apply", "-f", "plugins/postgres/examples/database.yaml"])
        .await;
    let ar = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("systems.mikemiller.tech", "v1alpha1", "Database"),
        "databases",
    );
    let status = json!({ "status": {
        "databaseName": "foo_db", "server": "db/main",
        "conditions": [
            { "type": "Synced", "status": "False", "reason": "Pending", "lastTransitionTime": "2025-01-01T00:00:00Z", "message": "" },
            { "type": "Ready", "status": "True", "reason": "Reconciled", "lastTransitionTime": "2025-01-01T00:00:00Z", "message": "" },
        ],
    } });
    Api::<DynamicObject>::namespaced_with(k.server.client(), "infra", &ar)
        .patch_status("foo-db", &PatchParams::default(), &Patch::Merge(status))
        .await
        .expect("status written");
}

#[tokio::test]
async fn kubectl_get_shows_the_crd_printer_columns() {
    let k = Kubectl::start().await;
    seed_database(&k).await;
    let out = k.run(&["get", "databases", "-n", "infra"]).await;
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        words(lines[0]),
        [
            "NAME",
            "DATABASE",
            "OWNER",
            "INSTANCES",
            "PRIMARY",
            "SIZE",
            "VERSION",
            "READY",
            "AGE"
        ],
        "{out}"
    );
    // Empty cells (no instance on a shared server) print as blanks.
    assert_eq!(
        &words(lines[1])[..5],
        ["foo-db", "foo_db", "foo", "120Gi", "True"],
        "{out}"
    );
    // Priority-1 columns only with -o wide.
    let wide = k
        .run(&["get", "databases", "-n", "infra", "-o", "wide"])
        .await;
    let wide_header = words(wide.lines().next().unwrap_or(""));
    assert_eq!(
        (wide_header[3], wide_header[9]),
        ("SERVER", "REASON"),
        "{wide}"
    );
    assert!(wide.contains("db/main"), "{wide}");
    assert!(wide.contains("Reconciled"), "{wide}");
    // Every project kind, across namespaces, as the demo shows them.
    let all = k
        .run(&[
            "get",
            "databases,databaseusers,postgresservers,reconcilerplugins",
            "-A",
        ])
        .await;
    assert!(
        all.contains("database.systems.mikemiller.tech/foo-db"),
        "{all}"
    );
}

#[tokio::test]
async fn kubectl_get_shows_the_default_columns_of_built_in_kinds() {
    let k = Kubectl::start().await;
    let client = k.server.client();
    let pp = PostParams::default();
    let cm: ConfigMap = serde_json::from_value(
        json!({ "metadata": { "name": "cm" }, "data": { "a": "1", "b": "2" } }),
    )
    .expect("cm");
    Api::<ConfigMap>::default_namespaced(client.clone())
        .create(&pp, &cm)
        .await
        .expect("cm");
    let secret: Secret = serde_json::from_value(
        json!({ "metadata": { "name": "s" }, "type": "Opaque", "stringData": { "p": "x" } }),
    )
    .expect("secret");
    Api::<Secret>::default_namespaced(client.clone())
        .create(&pp, &secret)
        .await
        .expect("secret");
    let pod: Pod = serde_json::from_value(json!({ "metadata": { "name": "p" }, "spec": { "containers": [{ "name": "c", "image": "i" }] } })).expect("pod");
    let pods = Api::<Pod>::default_namespaced(client);
    pods.create(&pp, &pod).await.expect("pod");
    let status = json!({ "status": { "phase": "Running", "containerStatuses": [{ "name": "c", "ready": true, "restartCount": 3, "image": "i", "imageID": "", "started": true }] } });
    pods.patch_status("p", &PatchParams::default(), &Patch::Merge(status))
        .await
        .expect("pod status");

    let out = k.run(&["get", "configmaps"]).await;
    assert_eq!(
        words(out.lines().next().unwrap_or("")),
        ["NAME", "DATA", "AGE"],
        "{out}"
    );
    assert!(out.lines().any(|l| words(l)[..2] == ["cm", "2"]), "{out}");
    let out = k.run(&["get", "secrets"]).await;
    assert_eq!(
        words(out.lines().next().unwrap_or("")),
        ["NAME", "TYPE", "DATA", "AGE"],
        "{out}"
    );
    assert_eq!(
        &words(out.lines().nth(1).unwrap_or(""))[..3],
        ["s", "Opaque", "1"],
        "{out}"
    );
    let out = k.run(&["get", "pods"]).await;
    assert_eq!(
        words(out.lines().next().unwrap_or("")),
        ["NAME", "READY", "STATUS", "RESTARTS", "AGE"],
        "{out}"
    );
    assert_eq!(
        &words(out.lines().nth(1).unwrap_or(""))[..4],
        ["p", "1/1", "Running", "3"],
        "{out}"
    );
    let out = k.run(&["get", "namespaces"]).await;
    assert_eq!(
        words(out.lines().next().unwrap_or("")),
        ["NAME", "AGE"],
        "{out}"
    );
}

#[tokio::test]
async fn table_rows_carry_partial_object_metadata_unless_told_otherwise() {
    let k = Kubectl::start().await;
    seed_database(&k).await;
    let client = k.server.client();
    let get = |query: &str| {
        http::Request::get(format!(
            "/apis/systems.mikemiller.tech/v1alpha1/namespaces/infra/databases{query}"
        ))
        .header("Accept", KUBECTL_TABLE)
        .body(Vec::new())
        .expect("request")
    };
    let table: Value = client.request(get("")).await.expect("table");
    assert_eq!(
        (table["kind"].as_str(), table["apiVersion"].as_str()),
        (Some("Table"), Some("meta.k8s.io/v1"))
    );
    let names: Vec<&str> = table["columnDefinitions"]
        .as_array()
        .expect("columns")
        .iter()
        .filter_map(|c| c["name"].as_str())
        .collect();
    assert_eq!(
        names,
        [
            "Name",
            "Database",
            "Owner",
            "Server",
            "Instances",
            "Primary",
            "Size",
            "Version",
            "Ready",
            "Reason",
            "Age"
        ]
    );
    assert_eq!(table["columnDefinitions"][0]["format"], "name");
    assert_eq!(table["columnDefinitions"][3]["priority"], 1);
    assert_eq!(table["columnDefinitions"][9]["priority"], 1);
    assert_eq!(table["columnDefinitions"][10]["type"], "date");
    let row = &table["rows"][0];
    let cells = row["cells"].as_array().expect("cells");
    assert_eq!(
        cells[..4],
        [
            json!("foo-db"),
            json!("foo_db"),
            json!("foo"),
            json!("db/main")
        ]
    );
    assert_eq!(
        cells[6..10],
        [
            json!("120Gi"),
            cells[7].clone(),
            json!("True"),
            json!("Reconciled")
        ]
    );
    assert_eq!(row["object"]["kind"], "PartialObjectMetadata");
    assert_eq!(row["object"]["metadata"]["name"], "foo-db");
    assert!(table["metadata"]["resourceVersion"].is_string());

    let table: Value = client
        .request(get("?includeObject=Object"))
        .await
        .expect("table");
    assert_eq!(
        table["rows"][0]["object"]["spec"]["credentials"]["username"],
        "foo"
    );
    let table: Value = client
        .request(get("?includeObject=None"))
        .await
        .expect("table");
    assert!(table["rows"][0].get("object").is_none());
    let one: Value = client
        .request(
            http::Request::get(
                "/apis/systems.mikemiller.tech/v1alpha1/namespaces/infra/databases/foo-db",
            )
            .header("Accept", KUBECTL_TABLE)
            .body(Vec::new())
            .expect("request"),
        )
        .await
        .expect("table of one");
    assert_eq!(one["rows"].as_array().map(Vec::len), Some(1));
}

#[tokio::test]
async fn kubectl_describe_lists_events_written_as_events_k8s_io() {
    let k = Kubectl::start().await;
    seed_database(&k).await;
    let ar = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("systems.mikemiller.tech", "v1alpha1", "Database"),
        "databases",
    );
    let db = Api::<DynamicObject>::namespaced_with(k.server.client(), "infra", &ar)
        .get("foo-db")
        .await
        .expect("database");
    let reference = ObjectReference {
        api_version: Some("systems.mikemiller.tech/v1alpha1".into()),
        kind: Some("Database".into()),
        name: Some("foo-db".into()),
        namespace: Some("infra".into()),
        uid: db.metadata.uid.clone(),
        ..Default::default()
    };
    let recorder = Recorder::new(k.server.client(), "wasm-operator".into());
    let event = Event {
        type_: EventType::Normal,
        reason: "Provisioned".into(),
        note: Some("database foo_db is ready".into()),
        action: "Reconcile".into(),
        secondary: None,
    };
    recorder.publish(&event, &reference).await.expect("publish");
    recorder
        .publish(&event, &reference)
        .await
        .expect("series patch");

    // The core/v1 view of the same object, found with the selector kubectl describe sends.
    let selector = format!(
        "involvedObject.name=foo-db,involvedObject.namespace=infra,involvedObject.kind=Database,involvedObject.uid={}",
        db.metadata.uid.as_deref().unwrap_or("")
    );
    let core = Api::<CoreEvent>::namespaced(k.server.client(), "infra")
        .list(&ListParams::default().fields(&selector).limit(500))
        .await
        .expect("core events");
    assert_eq!(core.items.len(), 1);
    let e = &core.items[0];
    assert_eq!(e.message.as_deref(), Some("database foo_db is ready"));
    assert_eq!(e.reporting_component.as_deref(), Some("wasm-operator"));
    assert_eq!(e.involved_object.uid, db.metadata.uid);
    assert_eq!(e.series.as_ref().and_then(|s| s.count), Some(2));
    // … and the events.k8s.io view selects by its own field names.
    let view = Api::<k8s_openapi::api::events::v1::Event>::namespaced(k.server.client(), "infra")
        .list(
            &ListParams::default()
                .fields("regarding.name=foo-db,reportingController=wasm-operator"),
        )
        .await
        .expect("events.k8s.io events");
    assert_eq!(view.items.len(), 1);
    assert_eq!(view.items[0].metadata.uid, e.metadata.uid);

    let out = k
        .run(&["describe", "database", "foo-db", "-n", "infra"])
        .await;
    let events = out.split("Events:").nth(1).unwrap_or("");
    let row = events
        .lines()
        .find(|l| l.contains("Provisioned"))
        .unwrap_or_else(|| panic!("no event row in\n{out}"));
    assert_eq!(&words(row)[..1], ["Normal"], "{out}");
    assert!(
        row.contains("wasm-operator") && row.contains("database foo_db is ready"),
        "{out}"
    );
    for resource in ["events", "events.events.k8s.io"] {
        let out = k.run(&["get", resource, "-n", "infra"]).await;
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(
            words(lines[0]),
            ["LAST", "SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"],
            "{out}"
        );
        assert_eq!(
            &words(lines[1])[1..4],
            ["Normal", "Provisioned", "database/foo-db"],
            "{out}"
        );
    }
}

#[tokio::test]
async fn kubectl_explain_describes_the_crd_fields_from_openapi_v3() {
    let k = Kubectl::start().await;
    let out = k.run(&["explain", "database.spec"]).await;
    assert!(
        out.starts_with(
            "GROUP:      systems.mikemiller.tech\nKIND:       Database\nVERSION:    v1alpha1\n"
        ),
        "{out}"
    );
    assert!(out.contains("FIELD: spec <Object>"), "{out}");
    assert!(out.contains("credentials\t<Object> -required-"), "{out}");
    assert!(
        out.contains("reclaimPolicy\t<string>\n  enum: Retain, Delete"),
        "{out}"
    );

    let out = k
        .run(&[
            "explain",
            "databases.systems.mikemiller.tech.spec.credentials",
        ])
        .await;
    assert!(out.contains("FIELD: credentials <Object>"), "{out}");
    assert!(out.contains("username\t<string> -required-"), "{out}");
    assert!(out.contains("Name of the owner role."), "{out}");

    let out = k.run(&["explain", "database", "--recursive"]).await;
    assert!(
        out.contains("  metadata\t<ObjectMeta>\n    annotations\t<map[string]string>"),
        "{out}"
    );
    assert!(
        out.contains("    credentials\t<Object> -required-\n      passwordRotation\t<Object>"),
        "{out}"
    );

    let out = k.run(&["explain", "database.metadata.name"]).await;
    assert!(out.contains("FIELD: name <string>"), "{out}");

    // Built-in kinds have minimal schemas, enough for explain to answer.
    for (resource, kind) in [
        ("pod", "Pod"),
        ("secret", "Secret"),
        ("configmap", "ConfigMap"),
        ("service", "Service"),
    ] {
        let out = k.run(&["explain", resource]).await;
        assert!(
            out.starts_with(&format!("KIND:       {kind}\nVERSION:    v1\n")),
            "{out}"
        );
    }
    let out = k.run(&["explain", "secret.data"]).await;
    assert!(out.contains("FIELD: data <map[string]string>"), "{out}");

    let err = k.fail(&["explain", "database.spec.nope"]).await;
    assert!(err.contains("field \"nope\" does not exist"), "{err}");
}

#[tokio::test]
async fn kubectl_explain_follows_a_crd_created_and_changed_while_serving() {
    let k = Kubectl::start().await;
    let crds: Api<k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition> =
        Api::all(k.server.client());
    let widget = |properties: Value| -> k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition {
        serde_json::from_value(json!({
            "metadata": { "name": "widgets.example.com" },
            "spec": {
                "group": "example.com", "scope": "Namespaced",
                "names": { "plural": "widgets", "singular": "widget", "kind": "Widget" },
                "versions": [{ "name": "v1", "served": true, "storage": true, "schema": { "openAPIV3Schema": {
                    "type": "object",
                    "properties": { "spec": { "type": "object", "properties": properties } },
                } } }],
            },
        }))
        .expect("CRD")
    };
    crds.create(
        &PostParams::default(),
        &widget(json!({ "colour": { "type": "string", "description": "The colour." } })),
    )
    .await
    .expect("CRD created");
    let out = k.run(&["explain", "widget.spec"]).await;
    assert!(out.contains("colour\t<string>\n    The colour."), "{out}");
    assert!(!out.contains("size"), "{out}");

    let mut changed = widget(json!({
        "colour": { "type": "string", "description": "The colour." },
        "size": { "type": "integer", "description": "How big." },
    }));
    changed.metadata.resource_version = crds
        .get("widgets.example.com")
        .await
        .expect("CRD")
        .metadata
        .resource_version;
    crds.replace("widgets.example.com", &PostParams::default(), &changed)
        .await
        .expect("CRD replaced");
    // Same cache directory: the new hash in /openapi/v3 makes kubectl fetch the new document.
    let out = k.run(&["explain", "widget.spec"]).await;
    assert!(out.contains("size\t<integer>\n    How big."), "{out}");
}

fn databases(k: &Kubectl) -> Api<DynamicObject> {
    let ar = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("systems.mikemiller.tech", "v1alpha1", "Database"),
        "databases",
    );
    Api::namespaced_with(k.server.client(), "infra", &ar)
}

#[tokio::test]
async fn kubectl_wait_returns_once_a_condition_or_a_jsonpath_holds() {
    let k = Kubectl::start().await;
    k.run(&["apply", "-f", "plugins/postgres/examples/database.yaml"])
        .await;
    let dbs = databases(&k);
    let ready = json!({ "status": { "conditions": [
        { "type": "Ready", "status": "True", "reason": "Reconciled", "lastTransitionTime": "2025-01-01T00:00:00Z", "message": "" },
    ], "databaseName": "foo_db" } });
    let writer = async {
        tokio::time::sleep(std::time::Duration::from_millis(700)).await;
        dbs.patch_status("foo-db", &PatchParams::default(), &Patch::Merge(ready))
            .await
            .expect("status written");
    };
    let (out, ()) = tokio::join!(
        k.run(&[
            "wait",
            "--for=condition=Ready",
            "database/foo-db",
            "-n",
            "infra",
            "--timeout=30s"
        ]),
        writer
    );
    assert_eq!(
        out.trim(),
        "database.systems.mikemiller.tech/foo-db condition met"
    );

    let out = k
        .run(&[
            "wait",
            "--for=jsonpath={.status.databaseName}=foo_db",
            "databases",
            "--all",
            "-n",
            "infra",
            "--timeout=10s",
        ])
        .await;
    assert_eq!(
        out.trim(),
        "database.systems.mikemiller.tech/foo-db condition met"
    );

    let err = k
        .fail(&[
            "wait",
            "--for=condition=Synced",
            "database/foo-db",
            "-n",
            "infra",
            "--timeout=1s",
        ])
        .await;
    assert!(
        err.contains("timed out waiting for the condition on databases/foo-db"),
        "{err}"
    );
}

#[tokio::test]
async fn kubectl_wait_for_delete_returns_once_the_last_finalizer_is_gone() {
    let k = Kubectl::start().await;
    k.run(&["apply", "-f", "plugins/postgres/examples/database.yaml"])
        .await;
    let dbs = databases(&k);
    let finalizer = json!({ "metadata": { "finalizers": ["systems.mikemiller.tech/cleanup"] } });
    dbs.patch("foo-db", &PatchParams::default(), &Patch::Merge(finalizer))
        .await
        .expect("finalizer added");
    dbs.delete("foo-db", &Default::default())
        .await
        .expect("deletion requested");
    let finalizer_removed = async {
        tokio::time::sleep(std::time::Duration::from_millis(700)).await;
        let still_there = dbs.get("foo-db").await.expect("terminating, still there");
        assert!(still_there.metadata.deletion_timestamp.is_some());
        let none = json!({ "metadata": { "finalizers": null } });
        dbs.patch("foo-db", &PatchParams::default(), &Patch::Merge(none))
            .await
            .expect("finalizer removed");
    };
    let (out, ()) = tokio::join!(
        k.run(&[
            "wait",
            "--for=delete",
            "database/foo-db",
            "-n",
            "infra",
            "--timeout=30s"
        ]),
        finalizer_removed
    );
    assert_eq!(
        out.trim(),
        "database.systems.mikemiller.tech/foo-db condition met"
    );
    assert!(dbs.get_opt("foo-db").await.expect("get").is_none());
}

#[tokio::test]
async fn kubectl_create_sends_built_in_kinds_as_protobuf_and_they_are_stored() {
    let k = Kubectl::start().await;
    let out = k.output(&["create", "namespace", "x", "-v=8"]).await;
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{log}");
    // kubectl's typed clients send protobuf, and do not retry as JSON after a 415.
    assert!(
        log.contains("Content-Type: application/vnd.kubernetes.protobuf"),
        "{log}"
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "namespace/x created"
    );
    k.run(&[
        "create",
        "secret",
        "generic",
        "s",
        "--from-literal=a=b",
        "-n",
        "x",
    ])
    .await;
    k.run(&[
        "create",
        "configmap",
        "c",
        "--from-literal=a=b",
        "--from-literal=greeting=héllo wörld",
        "-n",
        "x",
    ])
    .await;

    let client = k.server.client();
    let namespace = Api::<k8s_openapi::api::core::v1::Namespace>::all(client.clone())
        .get("x")
        .await
        .expect("namespace stored");
    assert!(namespace.metadata.uid.is_some());
    let secret = Api::<Secret>::namespaced(client.clone(), "x")
        .get("s")
        .await
        .expect("secret stored");
    assert_eq!(secret.type_.as_deref(), Some("Opaque"));
    let data = secret.data.expect("secret data");
    assert_eq!(data.len(), 1);
    assert_eq!(data["a"].0, b"b");
    let config_map = Api::<ConfigMap>::namespaced(client, "x")
        .get("c")
        .await
        .expect("configmap stored");
    let data = config_map.data.expect("configmap data");
    assert_eq!(data.len(), 2);
    assert_eq!(
        (data["a"].as_str(), data["greeting"].as_str()),
        ("b", "héllo wörld")
    );
    let out = k.run(&["get", "secret,configmap", "-n", "x"]).await;
    assert!(
        out.contains("secret/s") && out.contains("configmap/c"),
        "{out}"
    );
    // A second create is refused as by a real server.
    let err = k.fail(&["create", "namespace", "x"]).await;
    assert!(err.contains("namespaces \"x\" already exists"), "{err}");
}

#[tokio::test]
async fn kubectl_apply_validates_without_a_flag() {
    let k = Kubectl::start().await;
    let out = k
        .run(&["apply", "-f", "plugins/postgres/examples/database.yaml"])
        .await;
    assert!(
        out.contains("namespace/infra created")
            && out.contains("database.systems.mikemiller.tech/foo-db created"),
        "{out}"
    );
    let db = databases(&k).get("foo-db").await.expect("database stored");
    assert_eq!(db.data["spec"]["credentials"]["username"], "foo");
    // Applied again: unchanged.
    let out = k
        .run(&["apply", "-f", "plugins/postgres/examples/database.yaml"])
        .await;
    assert!(
        out.contains("database.systems.mikemiller.tech/foo-db unchanged"),
        "{out}"
    );
    // Validated on the server (fieldValidation=Strict): an undeclared field is refused.
    let manifest = k._dir.0.join("typo.yaml");
    std::fs::write(
        &manifest,
        "apiVersion: systems.mikemiller.tech/v1alpha1\nkind: Database\nmetadata:\n  name: typo\n  namespace: infra\nspec:\n  credentials:\n    username: t\n  colour: red\n",
    )
    .expect("manifest");
    let err = k
        .fail(&["apply", "-f", manifest.to_str().expect("UTF-8")])
        .await;
    assert!(
        err.contains("strict decoding error: unknown field \"spec.colour\""),
        "{err}"
    );
    assert!(databases(&k).get_opt("typo").await.expect("get").is_none());
}

#[tokio::test]
async fn openapi_documents_are_cached_by_hash_and_an_old_hash_is_redirected() {
    let server = TestApiServer::start().await.expect("server starts");
    let client = server.client();
    let get = |uri: &str, etag: Option<&str>| {
        let mut request = http::Request::get(uri);
        if let Some(etag) = etag {
            request = request.header(http::header::IF_NONE_MATCH, etag);
        }
        client.send(
            request
                .body(kube::client::Body::from(Vec::new()))
                .expect("request"),
        )
    };
    let root: Value = client
        .request(
            http::Request::get("/openapi/v3")
                .body(Vec::new())
                .expect("request"),
        )
        .await
        .expect("discovery document");
    let url = root["paths"]["api/v1"]["serverRelativeURL"]
        .as_str()
        .expect("core v1 listed")
        .to_string();
    let hash = url.split_once("?hash=").expect("a hash").1.to_string();

    let response = get(&url, None).await.expect("document");
    assert_eq!(response.status(), 200);
    let header = |name: http::header::HeaderName| {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string()
    };
    assert_eq!(header(http::header::ETAG), format!("\"{hash}\""));
    assert_eq!(header(http::header::CACHE_CONTROL), "public, immutable");

    let moved = get("/openapi/v3/api/v1?hash=0123", None)
        .await
        .expect("redirect");
    assert_eq!(moved.status(), 301);
    assert_eq!(moved.headers()[http::header::LOCATION], url.as_str());
    let unchanged = get(&url, Some(&format!("\"{hash}\"")))
        .await
        .expect("revalidation");
    assert_eq!(unchanged.status(), 304);
    let v2 = get("/openapi/v2", None).await.expect("answer");
    assert_eq!(
        v2.status(),
        404,
        "kubectl only falls back to v2 when v3 fails"
    );
}
