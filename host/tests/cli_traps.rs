//! The traps a plugin author fell into with the `wasm-operator` command line
//! (issue 19), each shown fixed with the real binary against the test API
//! server: `plugin push` into a namespace that does not exist yet, errors as
//! one readable line, `plugin reconcile` checking `--settings` against the
//! plugin's schema as `push` does, and Events whose note changed.

use std::path::{Path, PathBuf};
use std::process::Output;

use k8s_openapi::api::core::v1::{ConfigMap, Namespace, ObjectReference};
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding};
use kube::api::{Api, ListParams, PostParams};
use kube::runtime::events::EventType;
use serde_json::{Value, json};
use test_apiserver::TestApiServer;
use wasm_operator::events::EventRecorder;

/// The example plugin, built by `scripts/build-plugins.sh`.
fn example_plugin() -> PathBuf {
    let dir = std::env::var_os("WASM_OPERATOR_PLUGIN_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/plugins"));
    let path = dir.join("example-plugin.wasm");
    assert!(
        path.exists(),
        "{} is missing: build the plugins first with scripts/build-plugins.sh",
        path.display()
    );
    path
}

/// A directory of this test's own, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(test: &str) -> Self {
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("cli-traps-{test}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        Self(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A server with the operator's CRDs (push lists the ReconcilerPlugins).
async fn server(enforce_rbac: bool) -> TestApiServer {
    let mut builder = TestApiServer::builder().enforce_rbac(enforce_rbac);
    for (_, crd) in wasm_operator::crd::all() {
        builder = builder.crd(serde_json::to_value(crd).expect("CRD as JSON"));
    }
    builder.start().await.expect("server starts")
}

/// Runs `wasm-operator ARGS` off the runtime thread (the server keeps answering).
async fn cli(kubeconfig: Option<&Path>, args: &[&str]) -> Output {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_wasm-operator"));
    command.args(args).env("RUST_LOG", "warn");
    match kubeconfig {
        Some(path) => command.env("KUBECONFIG", path),
        None => command.env_remove("KUBECONFIG"),
    };
    tokio::task::spawn_blocking(move || command.output().expect("wasm-operator runs"))
        .await
        .expect("joined")
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// The error a failed command printed: one line, `error: …`, the last it wrote (after
/// any progress such as "created namespace"), with no Debug dump anywhere.
fn one_error_line(output: &Output) -> String {
    assert!(!output.status.success(), "succeeded: {}", stderr(output));
    let text = stderr(output);
    let errors: Vec<&str> = text.lines().filter(|l| l.contains("error")).collect();
    assert_eq!(errors.len(), 1, "not one error line:\n{text}");
    let last = text.lines().rfind(|l| !l.trim().is_empty()).unwrap_or("");
    assert_eq!(last, errors[0], "{text}");
    assert!(last.starts_with("error: "), "{text}");
    assert!(
        !text.contains("Status {") && !text.contains("ErrorResponse"),
        "a Debug dump: {text}"
    );
    last.to_owned()
}

#[tokio::test]
async fn push_creates_its_namespace_when_it_is_missing() {
    let server = server(false).await;
    let dir = TempDir::new("push-namespace");
    let kubeconfig = dir.0.join("kubeconfig");
    server.write_kubeconfig(&kubeconfig).expect("kubeconfig");
    let plugin = example_plugin();
    let plugin = plugin.to_str().expect("UTF-8 path");
    let namespaces = Api::<Namespace>::all(server.client());
    assert!(
        namespaces
            .get_opt("wasm-operator")
            .await
            .expect("get")
            .is_none()
    );

    let out = cli(
        Some(&kubeconfig),
        &["plugin", "push", plugin, "--name", "greeter"],
    )
    .await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("created namespace wasm-operator"),
        "{}",
        stderr(&out)
    );
    let report: Value = serde_json::from_slice(&out.stdout).expect("JSON report");
    assert_eq!(report["configMap"], "wasm-operator/greeter");
    assert_eq!(report["namespaceCreated"], true);
    assert!(
        namespaces
            .get_opt("wasm-operator")
            .await
            .expect("get")
            .is_some()
    );
    let config_map = Api::<ConfigMap>::namespaced(server.client(), "wasm-operator")
        .get("greeter")
        .await
        .expect("ConfigMap pushed");
    let pushed = &config_map.binary_data.expect("binaryData")["plugin.wasm"].0;
    assert_eq!(pushed, &std::fs::read(plugin).expect("plugin"));

    // A second push finds it.
    let out = cli(
        Some(&kubeconfig),
        &["plugin", "push", plugin, "--name", "greeter"],
    )
    .await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        !stderr(&out).contains("created namespace"),
        "{}",
        stderr(&out)
    );
    let report: Value = serde_json::from_slice(&out.stdout).expect("JSON report");
    assert_eq!(report["namespaceCreated"], false);
}

#[tokio::test]
async fn push_into_a_namespace_it_may_not_create_says_what_to_do_on_one_line() {
    let server = server(true).await;
    let admin = server.client();
    let role: ClusterRole = serde_json::from_value(json!({
        "metadata": { "name": "pusher" },
        "rules": [
            { "apiGroups": [""], "resources": ["namespaces"], "verbs": ["get"] },
            { "apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "create", "patch"] },
            { "apiGroups": ["systems.mikemiller.tech"], "resources": ["reconcilerplugins"], "verbs": ["list"] },
        ],
    }))
    .expect("role");
    Api::<ClusterRole>::all(admin.clone())
        .create(&PostParams::default(), &role)
        .await
        .expect("ClusterRole");
    let binding: ClusterRoleBinding = serde_json::from_value(json!({
        "metadata": { "name": "pusher" },
        "roleRef": { "apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "pusher" },
        "subjects": [{ "kind": "ServiceAccount", "namespace": "ci", "name": "pusher" }],
    }))
    .expect("binding");
    Api::<ClusterRoleBinding>::all(admin.clone())
        .create(&PostParams::default(), &binding)
        .await
        .expect("ClusterRoleBinding");
    let dir = TempDir::new("push-forbidden");
    let kubeconfig = dir.0.join("kubeconfig");
    server
        .write_service_account_kubeconfig("ci", "pusher", &kubeconfig)
        .expect("kubeconfig");
    let plugin = example_plugin();

    let out = cli(
        Some(&kubeconfig),
        &[
            "plugin",
            "push",
            plugin.to_str().expect("UTF-8"),
            "--name",
            "greeter",
            "--namespace",
            "plugins",
        ],
    )
    .await;
    let line = one_error_line(&out);
    assert!(
        line.contains("namespace plugins does not exist and you may not create it")
            && line.contains("kubectl create namespace plugins")
            && line.contains("--namespace"),
        "{line}"
    );
    // The API server's refusal, as its message and code.
    assert!(line.contains("Forbidden, HTTP 403"), "{line}");
    assert!(
        Api::<Namespace>::all(admin)
            .get_opt("plugins")
            .await
            .expect("get")
            .is_none()
    );
}

#[tokio::test]
async fn an_api_error_prints_as_one_line_with_its_cause_chain() {
    // No CRDs: listing the ReconcilerPlugins is answered 404.
    let server = TestApiServer::start().await.expect("server starts");
    let dir = TempDir::new("push-no-crd");
    let kubeconfig = dir.0.join("kubeconfig");
    server.write_kubeconfig(&kubeconfig).expect("kubeconfig");
    let plugin = example_plugin();
    let out = cli(
        Some(&kubeconfig),
        &[
            "plugin",
            "push",
            plugin.to_str().expect("UTF-8"),
            "--name",
            "greeter",
        ],
    )
    .await;
    let line = one_error_line(&out);
    assert!(line.starts_with("error: pushing "), "{line}");
    assert!(line.contains("cannot list ReconcilerPlugins"), "{line}");
    assert!(line.contains("HTTP 404"), "{line}");
}

#[tokio::test]
async fn reconcile_checks_settings_against_the_schema_as_push_does() {
    let dir = TempDir::new("reconcile-settings");
    let object = dir.0.join("greeting.json");
    let greeting = json!({
        "apiVersion": "examples.systems.mikemiller.tech/v1alpha1",
        "kind": "Greeting",
        "metadata": { "name": "hello", "namespace": "default", "uid": "uid-hello", "generation": 1 },
        "spec": { "greeting": "hello" },
    });
    std::fs::write(&object, greeting.to_string()).expect("object file");
    let plugin = example_plugin();
    let (plugin, object) = (
        plugin.to_str().expect("UTF-8"),
        object.to_str().expect("UTF-8"),
    );

    // The example's schema allows `defaultAudience` (a string) and nothing else.
    let bad = r#"{"defaultAudience": 7, "colour": "red"}"#;
    let out = cli(
        None,
        &[
            "plugin",
            "reconcile",
            plugin,
            "--object",
            object,
            "--settings",
            bad,
        ],
    )
    .await;
    let reconcile_error = one_error_line(&out);
    assert!(
        reconcile_error.contains("refusing to reconcile with"),
        "{reconcile_error}"
    );
    assert!(reconcile_error.contains("settings"), "{reconcile_error}");

    // push refuses the same settings for the same reason, before reaching any cluster.
    let out = cli(
        None,
        &["plugin", "push", plugin, "--name", "g", "--settings", bad],
    )
    .await;
    let push_error = one_error_line(&out);
    let reason = |line: &str| line.split_once("would refuse").map(|(_, r)| r.to_owned());
    assert!(reason(&push_error).is_some(), "{push_error}");
    assert_eq!(reason(&reconcile_error), reason(&push_error));

    let good = r#"{"defaultAudience": "team"}"#;
    let out = cli(
        None,
        &[
            "plugin",
            "reconcile",
            plugin,
            "--object",
            object,
            "--settings",
            good,
        ],
    )
    .await;
    assert!(out.status.success(), "{}", stderr(&out));
    let decision: Value = serde_json::from_slice(&out.stdout).expect("decision JSON");
    assert!(decision["children"].is_array(), "{decision}");
}

fn reference(namespace: &str, name: &str) -> ObjectReference {
    ObjectReference {
        api_version: Some("v1".into()),
        kind: Some("ConfigMap".into()),
        namespace: Some(namespace.into()),
        name: Some(name.into()),
        uid: Some(format!("uid-{name}")),
        ..ObjectReference::default()
    }
}

#[tokio::test]
async fn an_event_with_a_new_note_is_a_new_event_and_a_repeat_is_a_series() {
    let server = TestApiServer::start().await.expect("server starts");
    let recorder = EventRecorder::new(server.client(), "wasm-operator");
    let object = reference("default", "target");
    let publish = |note: &'static str| {
        let (recorder, object) = (recorder.clone(), object.clone());
        async move {
            recorder
                .publish(
                    &object,
                    EventType::Warning,
                    "ReconcileFailed",
                    note,
                    "Reconcile",
                )
                .await
                .expect("event recorded");
        }
    };
    publish("database foo is unreachable").await;
    publish("database foo is unreachable").await;
    publish("role bar lacks CREATEDB").await;

    let events = Api::<Event>::namespaced(server.client(), "default")
        .list(&ListParams::default())
        .await
        .expect("events");
    let mut seen: Vec<(String, i32)> = events
        .items
        .iter()
        .map(|e| {
            (
                e.note.clone().unwrap_or_default(),
                e.series.as_ref().map_or(1, |s| s.count),
            )
        })
        .collect();
    seen.sort();
    assert_eq!(
        seen,
        [
            ("database foo is unreachable".to_owned(), 2),
            ("role bar lacks CREATEDB".to_owned(), 1),
        ]
    );
    // The newest note is what a user reads last, never folded into the old one.
    let newest = events
        .items
        .iter()
        .max_by_key(|e| e.event_time.as_ref().map(|t| t.0))
        .expect("an event");
    assert_eq!(newest.note.as_deref(), Some("role bar lacks CREATEDB"));
}
