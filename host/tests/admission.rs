//! End to end: admission decided by a plugin. The real `wasm-operator`
//! binary serves its webhooks over HTTPS with a certificate the test made;
//! the test API server calls them for Greetings, as a real API server
//! would, through webhook configurations the test registers (registration
//! by the host comes later). The component is the SDK's admission example
//! (`target/plugins/example-admission.wasm`, built by
//! `scripts/build-plugins.sh`): it refuses an empty `spec.greeting` and
//! defaults `spec.audienceFrom`.

mod support;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use kube::Client;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use support::cluster::{Cluster, Operator, eventually, free_port, metric, scrape};
use support::fixtures::{self, Binding};
use test_apiserver::Certificates;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use wasm_operator::crd::ReconcilerPlugin;

const OPERATOR_NAMESPACE: &str = "wasm-operator";
const BINDING: &str = "greeting-admission";
const CONFIG_MAP: &str = "greeting-admission";
const KEY: &str = "plugin.wasm";
/// Long enough for a compile on a busy machine.
const LIMIT: Duration = Duration::from_secs(60);

/// A cluster with the admission example bound as [`BINDING`] under
/// `limits`, the operator serving webhooks with a certificate the test
/// made, and the webhooks registered.
struct Bed {
    cluster: Cluster,
    operator: Operator,
    /// `https://127.0.0.1:<port>` of the operator's webhooks.
    base: String,
    /// `127.0.0.1:<port>`.
    addr: String,
    certificates: Certificates,
}

impl Bed {
    async fn start(name: &str, limits: Value) -> Self {
        let cluster = Cluster::with_greetings(name, &[OPERATOR_NAMESPACE]).await;
        let client = cluster.client();
        fixtures::put_component(
            &client,
            OPERATOR_NAMESPACE,
            CONFIG_MAP,
            KEY,
            &support::component("example-admission"),
        )
        .await;
        Binding::named(BINDING)
            .source_config_map(OPERATOR_NAMESPACE, CONFIG_MAP, KEY)
            .limits(limits)
            .create(&client)
            .await;
        let bed = Self::serve(cluster, name, BINDING).await;
        fixtures::register_greeting_webhooks(&client, BINDING, &bed.base, &bed.certificates.ca_pem)
            .await;
        bed
    }

    /// Starts the operator on `cluster` serving webhooks with a certificate
    /// the test made, once `binding` has a version in service.
    async fn serve(cluster: Cluster, name: &str, binding: &str) -> Self {
        let certificates = Certificates::generate().expect("generating certificates");
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("admission-certs-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("tls.crt"), &certificates.cert_pem).unwrap();
        std::fs::write(dir.join("tls.key"), &certificates.key_pem).unwrap();
        let addr = format!("127.0.0.1:{}", free_port());
        let operator = cluster.start_operator(&[
            "--leader-election=false",
            "--webhook-addr",
            &addr,
            "--webhook-cert-dir",
            dir.to_str().unwrap(),
        ]);
        let base = format!("https://{addr}");
        let bed = Self {
            cluster,
            operator,
            base,
            addr,
            certificates,
        };
        // Served once the binding's version is in service.
        let path = format!("/validate/{binding}");
        eventually("the binding's version in service", LIMIT, || async {
            let (status, body) = bed.post(&path, &review(None)).await?;
            (status == 200 && !body.contains("no plugin version in service")).then_some(())
        })
        .await;
        bed
    }

    fn client(&self) -> Client {
        self.cluster.client()
    }

    /// POSTs `body` to the webhook server over HTTPS, trusting the test's
    /// CA; the status and body, or `None` while it does not answer.
    async fn post(&self, path: &str, body: &[u8]) -> Option<(u16, String)> {
        let mut roots = rustls::RootCertStore::empty();
        for cert in test_apiserver_ca(&self.certificates.ca_pem) {
            roots.add(cert).unwrap();
        }
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
        let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
        let tcp = tokio::net::TcpStream::connect(&self.addr).await.ok()?;
        let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
        let mut tls = connector.connect(name, tcp).await.ok()?;
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            self.addr,
            body.len()
        );
        tls.write_all(head.as_bytes()).await.ok()?;
        // The server may answer (413) before it reads the whole body.
        let _ = tls.write_all(body).await;
        let mut reply = Vec::new();
        let _ = tls.read_to_end(&mut reply).await;
        let reply = String::from_utf8_lossy(&reply).into_owned();
        let status = reply.split(' ').nth(1)?.parse().ok()?;
        let body = reply.split_once("\r\n\r\n")?.1.to_owned();
        Some((status, body))
    }

    /// The response of the review sent straight to `path`.
    async fn answer(&self, path: &str, object: Option<&Value>) -> Value {
        let (status, body) = self
            .post(path, &review(object))
            .await
            .expect("the webhook server answers");
        assert_eq!(status, 200, "{body}");
        let review: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(review["response"]["uid"], "test-uid", "{review}");
        review["response"].clone()
    }
}

fn test_apiserver_ca(pem: &str) -> Vec<rustls::pki_types::CertificateDer<'static>> {
    use rustls::pki_types::pem::PemObject;
    rustls::pki_types::CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<_, _>>()
        .unwrap()
}

/// A CREATE AdmissionReview of `object`.
fn review(object: Option<&Value>) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "test-uid",
            "operation": "CREATE",
            "object": object,
            "oldObject": null,
            "dryRun": false,
            "userInfo": {"username": "alice"},
        },
    }))
    .unwrap()
}

fn greeting(name: &str, text: &str) -> Value {
    fixtures::greeting("default", name, json!({"greeting": text}))
}

/// Creates a Greeting as `kubectl create` would; the API server's error
/// message when refused.
async fn create(client: &Client, object: &Value) -> Result<Value, String> {
    let object = serde_json::from_value(object.clone()).unwrap();
    fixtures::greetings(client, "default")
        .create(&PostParams::default(), &object)
        .await
        .map(|created| serde_json::to_value(created).unwrap())
        .map_err(|error| match error {
            kube::Error::Api(status) => status.message,
            other => other.to_string(),
        })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn greetings_are_denied_allowed_and_defaulted_by_the_plugin_through_the_api_server() {
    let bed = Bed::start("admit", json!({})).await;
    let client = bed.client();

    let denied = create(&client, &greeting("empty", " ")).await.unwrap_err();
    assert!(
        denied.contains("spec.greeting is required and must not be empty"),
        "{denied}"
    );
    assert!(
        fixtures::greetings(&client, "default")
            .get_opt("empty")
            .await
            .unwrap()
            .is_none(),
        "a denied Greeting is not stored"
    );

    create(&client, &greeting("hello", "hello")).await.unwrap();
    let stored = fixtures::greetings(&client, "default")
        .get("hello")
        .await
        .unwrap();
    let stored = serde_json::to_value(stored).unwrap();
    assert_eq!(stored["spec"]["greeting"], "hello");
    // The mutation, sent as a base64 JSONPatch, is what was stored.
    assert_eq!(
        stored["spec"]["audienceFrom"],
        json!({"configMap": "audience", "key": "who"})
    );

    let text = scrape(&bed.operator.http).await;
    let series = |allowed: &str| {
        format!(
            r#"wasm_operator_admission_requests_total{{binding="{BINDING}",plugin="example-greeting-admission",operation="CREATE",allowed="{allowed}"}}"#
        )
    };
    assert!(metric(&text, &series("false")) >= 1.0, "{text}");
    assert!(metric(&text, &series("true")) >= 2.0, "{text}");
    assert!(
        metric(
            &text,
            &format!(r#"wasm_operator_admission_duration_seconds_count{{binding="{BINDING}""#)
        ) >= 3.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reviews_no_plugin_can_decide_are_denied_naming_the_binding_or_refused() {
    let bed = Bed::start("undecided", json!({})).await;

    let unknown = bed
        .answer("/validate/no-such-binding", Some(&greeting("g", "hi")))
        .await;
    assert_eq!(unknown["allowed"], false);
    assert_eq!(unknown["status"]["code"], 403);
    let message = unknown["status"]["message"].as_str().unwrap();
    assert!(message.contains("binding no-such-binding"), "{message}");

    let elsewhere = bed.answer("/elsewhere", Some(&greeting("g", "hi"))).await;
    assert_eq!(elsewhere["allowed"], false);
    assert!(
        elsewhere["status"]["message"]
            .as_str()
            .unwrap()
            .contains("/validate/<binding>"),
        "{elsewhere}"
    );

    // A plugin without the `admission` export, bound and in service.
    Binding::named("plain")
        .source_file(&support::plugin_dir().join("example-plugin.wasm"))
        .create(&bed.client())
        .await;
    let message = eventually("the plain binding in service", LIMIT, || async {
        let response = bed
            .answer("/mutate/plain", Some(&greeting("g", "hi")))
            .await;
        let message = response["status"]["message"].as_str()?.to_owned();
        (!message.contains("no plugin version in service")).then_some(message)
    })
    .await;
    assert!(
        message.contains("binding plain") && message.contains("does not export `admission`"),
        "{message}"
    );

    // Over the API server's own 3 MiB request limit.
    let huge = greeting("huge", &"x".repeat(4 << 20));
    let (status, body) = bed
        .post("/validate/greeting-admission", &review(Some(&huge)))
        .await
        .expect("the webhook server answers");
    assert_eq!(status, 413, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_stopped_by_its_limits_denies_naming_the_binding_until_a_swap_fixes_it() {
    // 1 MiB is less than the guest's initial memory: every call is stopped
    // by the sandbox.
    let bed = Bed::start("swap", json!({"memoryMib": 1})).await;
    let client = bed.client();

    let denied = create(&client, &greeting("first", "hello"))
        .await
        .unwrap_err();
    assert!(denied.contains("binding greeting-admission"), "{denied}");
    assert!(denied.contains("memory limit"), "{denied}");
    let text = scrape(&bed.operator.http).await;
    assert!(
        metric(
            &text,
            &format!(
                r#"wasm_operator_admission_failures_total{{binding="{BINDING}",plugin="example-greeting-admission",reason="MemoryLimit"}}"#
            )
        ) >= 1.0,
        "{text}"
    );

    // The swap: the binding's new limits put a new version in service.
    Api::<ReconcilerPlugin>::all(client.clone())
        .patch(
            BINDING,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"limits": {"memoryMib": 64}}})),
        )
        .await
        .unwrap();
    eventually("the swapped version answering", LIMIT, || async {
        let response = bed
            .answer("/validate/greeting-admission", Some(&greeting("g", "hi")))
            .await;
        (response["allowed"] == true).then_some(())
    })
    .await;
    create(&client, &greeting("second", "hello")).await.unwrap();
}

/// Creates or replaces a Database in `namespace`; the API server's error
/// message when refused.
async fn apply_database(client: &Client, namespace: &str, object: Value) -> Result<Value, String> {
    let api: Api<kube::api::DynamicObject> = Api::namespaced_with(
        client.clone(),
        namespace,
        &support::pg_cluster::resource("Database"),
    );
    let object: kube::api::DynamicObject = serde_json::from_value(object).unwrap();
    let name = object.metadata.name.clone().unwrap();
    // The operator writes the object too (finalizer, status): a replace
    // that lost the race is retried on the newer version, as kubectl does.
    let result = loop {
        let result = match api.get_opt(&name).await.unwrap() {
            Some(stored) => {
                let mut object = object.clone();
                object.metadata.resource_version = stored.metadata.resource_version;
                api.replace(&name, &PostParams::default(), &object).await
            }
            None => api.create(&PostParams::default(), &object).await,
        };
        match result {
            Err(kube::Error::Api(status)) if status.code == 409 && status.reason == "Conflict" => {}
            other => break other,
        }
    };
    result
        .map(|stored| serde_json::to_value(stored).unwrap())
        .map_err(|error| match error {
            kube::Error::Api(status) => status.message,
            other => other.to_string(),
        })
}

/// The Postgres Database plugin at admission, through the API server: the
/// reconcile-time checks deny (field named, nothing stored), immutable
/// fields stay, a server that does not consent to the namespace is refused
/// (read through the plugin's `kube` import), and the defaults are stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn databases_are_validated_and_defaulted_at_admission() {
    let cluster = Cluster::with_operator_crds("pg-admit", &["db", "infra", "elsewhere"]).await;
    let client = cluster.client();
    // No PostgreSQL is needed: admission reads only objects.
    support::pg_cluster::register_server(&client, "db", free_port(), &["infra"]).await;
    support::pg_cluster::bind_plugins(&client, &["postgres-database"], None).await;
    let bed = Bed::serve(cluster, "pg-admit", "postgres-database").await;
    fixtures::register_webhooks(
        &client,
        "postgres-database",
        &bed.base,
        &bed.certificates.ca_pem,
        ("systems.mikemiller.tech", "v1alpha1", "databases"),
    )
    .await;
    let database = |namespace: &str, name: &str, spec: Value| {
        let mut object = fixtures::database(
            namespace,
            name,
            json!({"serverRef": {"name": "main", "namespace": "db"}}),
        );
        for (key, value) in spec.as_object().unwrap() {
            object["spec"][key] = value.clone();
        }
        object
    };

    for (name, spec, field) in [
        (
            "reserved",
            json!({"credentials": {"username": "postgres"}}),
            "spec.credentials.username",
        ),
        (
            "long",
            json!({"credentials": {"username": "u".repeat(64)}}),
            "spec.credentials.username",
        ),
        (
            "shrunk",
            json!({"credentials": {"username": "a"}, "size": "-1Gi"}),
            "spec.size",
        ),
    ] {
        let denied = apply_database(&client, "infra", database("infra", name, spec))
            .await
            .unwrap_err();
        assert!(denied.contains(field), "{name}: {denied}");
        let api: Api<kube::api::DynamicObject> = Api::namespaced_with(
            client.clone(),
            "infra",
            &support::pg_cluster::resource("Database"),
        );
        assert!(
            api.get_opt(name).await.unwrap().is_none(),
            "{name} is not stored"
        );
    }

    let stored = apply_database(
        &client,
        "infra",
        database(
            "infra",
            "app",
            json!({"credentials": {"username": "app"}, "size": "10Gi"}),
        ),
    )
    .await
    .unwrap();
    assert_eq!(stored["spec"]["reclaimPolicy"], "Retain", "{stored}");
    assert_eq!(stored["spec"]["databaseName"], "app", "{stored}");

    for (spec, field) in [
        (
            json!({"credentials": {"username": "other"}, "size": "10Gi"}),
            "spec.credentials.username",
        ),
        (
            json!({"credentials": {"username": "app"}, "size": "5Gi"}),
            "spec.size",
        ),
    ] {
        let denied = apply_database(&client, "infra", database("infra", "app", spec))
            .await
            .unwrap_err();
        assert!(denied.contains(field), "{denied}");
    }
    let unchanged = apply_database(
        &client,
        "infra",
        database(
            "infra",
            "app",
            json!({"credentials": {"username": "app"}, "size": "10Gi"}),
        ),
    )
    .await
    .unwrap();
    assert_eq!(unchanged["spec"]["credentials"]["username"], "app");

    let denied = apply_database(
        &client,
        "elsewhere",
        database(
            "elsewhere",
            "intruder",
            json!({"credentials": {"username": "intruder"}}),
        ),
    )
    .await
    .unwrap_err();
    assert!(
        denied.contains(
            "spec.serverRef: PostgresServer db/main does not allow Databases of namespace"
        ),
        "the server's consent is read through the plugin's kube import: {denied}"
    );
}
