//! End to end: admission decided by a plugin. The real `wasm-operator`
//! binary registers its own webhook configurations (pointing at its
//! Service, trusting the CA it keeps in a Secret) and serves them over
//! HTTPS; the test API server resolves the Service to the operator's
//! address and calls the webhooks for Greetings, as a real API server
//! would. The component is the SDK's admission example
//! (`target/plugins/example-admission.wasm`, built by
//! `scripts/build-plugins.sh`): it refuses an empty `spec.greeting` and
//! defaults `spec.audienceFrom`.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use k8s_openapi::api::admissionregistration::v1::{
    MutatingWebhookConfiguration, ValidatingWebhookConfiguration,
};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Secret;
use kube::Client;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use support::cluster::{Cluster, Operator, eventually, free_port, metric, scrape};
use support::fixtures::{self, Binding};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use wasm_operator::crd::ReconcilerPlugin;

const OPERATOR_NAMESPACE: &str = "wasm-operator";
const SERVICE: &str = "wasm-operator-webhook";
const SECRET: &str = "wasm-operator-webhook-tls";
const BINDING: &str = "greeting-admission";
const CONFIG_MAP: &str = "greeting-admission";
const KEY: &str = "plugin.wasm";
/// Long enough for a compile on a busy machine.
const LIMIT: Duration = Duration::from_secs(60);

/// A cluster with the admission example bound as [`BINDING`], the
/// operator serving and registering its webhooks.
struct Bed {
    cluster: Cluster,
    operator: Operator,
    /// `127.0.0.1:<port>` of the operator's webhooks.
    addr: String,
    /// The CA of the Secret the operator keeps, PEM.
    ca_pem: String,
}

impl Bed {
    /// The admission example bound with `spec` fields (limits, admission)
    /// merged into its spec.
    async fn start(name: &str, spec: Value) -> Self {
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
        let mut binding =
            Binding::named(BINDING).source_config_map(OPERATOR_NAMESPACE, CONFIG_MAP, KEY);
        if let Some(limits) = spec.get("limits") {
            binding = binding.limits(limits.clone());
        }
        if let Some(admission) = spec.get("admission") {
            binding = binding.admission(admission.clone());
        }
        binding.create(&client).await;
        Self::serve(cluster, BINDING, &["--leader-election=false"]).await
    }

    /// Starts the operator on `cluster` with `extra` arguments, its
    /// webhook Service resolved to it, and waits until `binding`'s
    /// webhooks are registered and answer.
    async fn serve(cluster: Cluster, binding: &str, extra: &[&str]) -> Self {
        let (operator, addr) = start_operator(&cluster, extra);
        route_service_to(&cluster, &addr);
        let ca_pem = shared_ca(&cluster.client()).await;
        let bed = Self {
            cluster,
            operator,
            addr,
            ca_pem,
        };
        let path = format!("/validate/{binding}");
        eventually("the binding's version in service", LIMIT, || async {
            let (status, body) = bed.post(&path, &review(None)).await?;
            (status == 200 && !body.contains("no plugin version in service")).then_some(())
        })
        .await;
        eventually("the binding's webhooks registered", LIMIT, || async {
            let client = bed.client();
            configuration::<ValidatingWebhookConfiguration>(&client, binding).await?;
            configuration::<MutatingWebhookConfiguration>(&client, binding).await?;
            Some(())
        })
        .await;
        bed
    }

    fn client(&self) -> Client {
        self.cluster.client()
    }

    /// POSTs `body` to the webhook server over HTTPS, trusting the shared
    /// CA; the status and body, or `None` while it does not answer.
    async fn post(&self, path: &str, body: &[u8]) -> Option<(u16, String)> {
        post(&self.addr, &self.ca_pem, path, body)
            .await
            .map(|(s, b, _)| (s, b))
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

/// Starts an operator serving webhooks on a free loopback address behind
/// the Service [`SERVICE`]; the operator and that address.
fn start_operator(cluster: &Cluster, extra: &[&str]) -> (Operator, String) {
    let addr = format!("127.0.0.1:{}", free_port());
    let mut args = vec![
        "--webhook-addr",
        &addr,
        "--webhook-service-name",
        SERVICE,
        "--webhook-service-namespace",
        OPERATOR_NAMESPACE,
        "--lease-namespace",
        OPERATOR_NAMESPACE,
    ];
    args.extend_from_slice(extra);
    let operator = cluster.start_operator(&args);
    (operator, addr)
}

/// Has the API server reach the webhook Service at `addr`.
fn route_service_to(cluster: &Cluster, addr: &str) {
    cluster
        .server
        .set_service_address(OPERATOR_NAMESPACE, SERVICE, 443, addr.parse().unwrap());
}

/// The CA bundle of the Secret the operators share, once it exists.
async fn shared_ca(client: &Client) -> String {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), OPERATOR_NAMESPACE);
    eventually("the webhook TLS Secret", LIMIT, || async {
        let secret = secrets.get_opt(SECRET).await.ok()??;
        let ca = secret.data?.get("ca.crt")?.0.clone();
        String::from_utf8(ca).ok()
    })
    .await
}

/// The configuration `name` of kind `K`, if it exists.
async fn configuration<K>(client: &Client, name: &str) -> Option<K>
where
    K: kube::Resource<DynamicType = (), Scope = k8s_openapi::ClusterResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    Api::<K>::all(client.clone()).get_opt(name).await.unwrap()
}

/// POSTs `body` to `path` of the webhook server at `addr` on a new HTTPS
/// connection trusting `ca_pem`, as the API server does (one request per
/// connection); the status, the body and the served certificate.
async fn post(addr: &str, ca_pem: &str, path: &str, body: &[u8]) -> Option<(u16, String, Vec<u8>)> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in test_apiserver_ca(ca_pem) {
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
    let tcp = tokio::net::TcpStream::connect(addr).await.ok()?;
    let name =
        rustls::pki_types::ServerName::try_from(format!("{SERVICE}.{OPERATOR_NAMESPACE}.svc"))
            .unwrap();
    let mut tls = connector.connect(name, tcp).await.ok()?;
    let served = tls.get_ref().1.peer_certificates()?.first()?.to_vec();
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
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
    Some((status, body, served))
}

/// `GET /readyz` of the operator's HTTP endpoint: the status code.
async fn readyz(addr: &str) -> Option<u16> {
    let mut stream = tokio::net::TcpStream::connect(addr).await.ok()?;
    stream
        .write_all(b"GET /readyz HTTP/1.1\r\nHost: operator\r\nConnection: close\r\n\r\n")
        .await
        .ok()?;
    let mut reply = String::new();
    stream.read_to_string(&mut reply).await.ok()?;
    reply.split(' ').nth(1)?.parse().ok()
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
    let bed = Bed::start("swap", json!({"limits": {"memoryMib": 1}})).await;
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
    let cluster = Cluster::with_operator_crds(
        "pg-admit",
        &[OPERATOR_NAMESPACE, "db", "infra", "elsewhere"],
    )
    .await;
    let client = cluster.client();
    // No PostgreSQL is needed: admission reads only objects.
    support::pg_cluster::register_server(&client, "db", free_port(), &["infra"]).await;
    support::pg_cluster::bind_plugins(&client, &["postgres-database"], None).await;
    let kubeconfig = cluster.kubeconfig.clone();
    // The operator registers the Database plugin's webhooks itself.
    let _bed = Bed::serve(cluster, "postgres-database", &["--leader-election=false"]).await;
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

    // What a user sees: kubectl prints the denial naming the field, and the
    // stored object carries the defaults.
    let reserved = database(
        "infra",
        "via-kubectl",
        json!({"credentials": {"username": "postgres"}}),
    );
    let denied = kubectl(&kubeconfig, &["apply", "-f", "-"], Some(&reserved)).await;
    assert!(!denied.status.success(), "{denied:?}");
    let stderr = String::from_utf8_lossy(&denied.stderr);
    assert!(
        stderr.contains("admission webhook")
            && stderr.contains("denied the request")
            && stderr.contains("spec.credentials.username"),
        "{stderr}"
    );

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
    let shown = kubectl(
        &kubeconfig,
        &["-n", "infra", "get", "database", "app", "-o", "yaml"],
        None,
    )
    .await;
    let yaml = String::from_utf8_lossy(&shown.stdout);
    assert!(
        shown.status.success()
            && yaml.contains("reclaimPolicy: Retain")
            && yaml.contains("databaseName: app"),
        "{shown:?}"
    );

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

    // The reads come from this replica's watch cache: a change of consent
    // reaches admission without a restart, both ways.
    let servers: Api<kube::api::DynamicObject> = Api::namespaced_with(
        client.clone(),
        "db",
        &support::pg_cluster::resource("PostgresServer"),
    );
    let consent = |allowed: &[&str]| {
        let patch = json!({"spec": {"allowedNamespaces": allowed}});
        let servers = servers.clone();
        async move {
            servers
                .patch("main", &PatchParams::default(), &Patch::Merge(&patch))
                .await
                .unwrap();
        }
    };
    // A new name per attempt: each one is a create, decided afresh.
    let attempts = AtomicU64::new(0);
    let newcomer = || {
        let name = format!("newcomer-{}", attempts.fetch_add(1, Ordering::Relaxed));
        database(
            "elsewhere",
            &name,
            json!({"credentials": {"username": name.replace('-', "_")}}),
        )
    };
    consent(&["infra", "elsewhere"]).await;
    eventually("the new consent seen at admission", LIMIT, || async {
        apply_database(&client, "elsewhere", newcomer()).await.ok()
    })
    .await;
    consent(&["infra"]).await;
    let denied = eventually("the withdrawn consent seen at admission", LIMIT, || async {
        apply_database(&client, "elsewhere", newcomer()).await.err()
    })
    .await;
    assert!(
        denied.contains("does not allow Databases of namespace"),
        "{denied}"
    );
}

/// Runs the real kubectl against the test API server, `object` (as JSON,
/// which kubectl reads as YAML) on its standard input.
async fn kubectl(
    kubeconfig: &std::path::Path,
    args: &[&str],
    object: Option<&Value>,
) -> std::process::Output {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let cache = kubeconfig.with_file_name("kubectl-cache");
    let mut command = Command::new("kubectl");
    command
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .arg("--cache-dir")
        .arg(cache)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let input = object.map(Value::to_string).unwrap_or_default();
    tokio::task::spawn_blocking(move || {
        let mut child = command.spawn().expect("kubectl runs (it is on PATH in CI)");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(input.as_bytes())
            .expect("writing kubectl's stdin");
        child.wait_with_output().expect("kubectl finishes")
    })
    .await
    .expect("joined")
}

/// What a registered webhook configuration says, read as JSON.
async fn registered(client: &Client, binding: &str) -> (Value, Value) {
    let validating = configuration::<ValidatingWebhookConfiguration>(client, binding)
        .await
        .expect("the validating configuration");
    let mutating = configuration::<MutatingWebhookConfiguration>(client, binding)
        .await
        .expect("the mutating configuration");
    (
        serde_json::to_value(validating).unwrap(),
        serde_json::to_value(mutating).unwrap(),
    )
}

/// The host's registration: both configurations, named after the binding,
/// owned by it, carrying its settings and the shared CA; `/readyz` once
/// the CA in place trusts the certificate served; gone with the binding.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_host_registers_webhooks_with_the_binding_s_settings_and_the_shared_ca_until_the_binding_goes()
 {
    let bed = Bed::start("register", json!({})).await;
    let client = bed.client();
    let (validating, mutating) = registered(&client, BINDING).await;
    use base64::Engine as _;
    let ca_bundle = base64::engine::general_purpose::STANDARD.encode(&bed.ca_pem);
    let binding = Api::<ReconcilerPlugin>::all(client.clone())
        .get(BINDING)
        .await
        .unwrap();
    for (config, path) in [(&validating, "validate"), (&mutating, "mutate")] {
        assert_eq!(
            config["metadata"]["labels"]["app.kubernetes.io/managed-by"], "wasm-operator",
            "{config}"
        );
        let owner = &config["metadata"]["ownerReferences"][0];
        assert_eq!(owner["kind"], "ReconcilerPlugin", "{config}");
        assert_eq!(owner["name"], BINDING);
        assert_eq!(owner["uid"], json!(binding.metadata.uid), "{config}");
        let hooks = config["webhooks"].as_array().unwrap();
        assert_eq!(hooks.len(), 1, "{config}");
        let hook = &hooks[0];
        assert_eq!(
            hook["name"],
            format!("{BINDING}.{path}.systems.mikemiller.tech")
        );
        assert_eq!(
            hook["rules"],
            json!([{
                "apiGroups": ["examples.systems.mikemiller.tech"],
                "apiVersions": ["v1alpha1"],
                "resources": ["greetings"],
                "operations": ["CREATE", "UPDATE"],
                "scope": "*",
            }]),
            "{config}"
        );
        assert_eq!(hook["sideEffects"], "None");
        assert_eq!(hook["admissionReviewVersions"], json!(["v1"]));
        assert_eq!(hook["failurePolicy"], "Fail", "the default");
        assert_eq!(hook["timeoutSeconds"], 5, "the default");
        assert_eq!(
            hook["namespaceSelector"],
            json!({"matchExpressions": [{
                "key": "kubernetes.io/metadata.name",
                "operator": "NotIn",
                "values": [OPERATOR_NAMESPACE, "kube-system"],
            }]}),
            "{config}"
        );
        assert_eq!(
            hook["clientConfig"],
            json!({
                "service": {
                    "name": SERVICE,
                    "namespace": OPERATOR_NAMESPACE,
                    "path": format!("/{path}/{BINDING}"),
                    "port": 443,
                },
                "caBundle": ca_bundle,
            }),
            "{config}"
        );
    }
    eventually(
        "/readyz once the caBundle trusts the certificate",
        LIMIT,
        || async { (readyz(&bed.operator.http).await? == 200).then_some(()) },
    )
    .await;

    // The binding's settings follow into the configurations.
    Api::<ReconcilerPlugin>::all(client.clone())
        .patch(
            BINDING,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"admission": {"failurePolicy": "Ignore", "timeoutSeconds": 2, "namespaceSelector": {"matchLabels": {"team": "a"}}}}})),
        )
        .await
        .unwrap();
    eventually("the new settings registered", LIMIT, || async {
        let (validating, _) = registered(&client, BINDING).await;
        let hook = &validating["webhooks"][0];
        (hook["failurePolicy"] == "Ignore"
            && hook["timeoutSeconds"] == 2
            && hook["namespaceSelector"]["matchLabels"] == json!({"team": "a"})
            && hook["namespaceSelector"]["matchExpressions"][0]["operator"] == "NotIn")
            .then_some(())
    })
    .await;

    Api::<ReconcilerPlugin>::all(client.clone())
        .delete(BINDING, &DeleteParams::default())
        .await
        .unwrap();
    eventually(
        "the configurations gone with the binding",
        LIMIT,
        || async {
            (configuration::<ValidatingWebhookConfiguration>(&client, BINDING)
                .await
                .is_none()
                && configuration::<MutatingWebhookConfiguration>(&client, BINDING)
                    .await
                    .is_none())
            .then_some(())
        },
    )
    .await;
}

/// A configuration of a binding's name that the operator did not make is
/// left alone, and no webhooks are registered for a binding without
/// admission.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configurations_the_host_does_not_own_are_left_alone() {
    let bed = Bed::start("foreign", json!({})).await;
    let client = bed.client();
    let foreign: ValidatingWebhookConfiguration = serde_json::from_value(json!({
        "metadata": {"name": "plain", "labels": {"app.kubernetes.io/managed-by": "wasm-operator"}},
        "webhooks": [],
    }))
    .unwrap();
    Api::<ValidatingWebhookConfiguration>::all(client.clone())
        .create(&PostParams::default(), &foreign)
        .await
        .unwrap();
    Binding::named("plain")
        .source_file(&support::plugin_dir().join("example-plugin.wasm"))
        .create(&client)
        .await;
    // The plain binding is in service once it answers (with its refusal).
    eventually("the plain binding in service", LIMIT, || async {
        let response = bed
            .answer("/validate/plain", Some(&greeting("g", "hi")))
            .await;
        let message = response["status"]["message"].as_str()?.to_owned();
        message.contains("does not export").then_some(())
    })
    .await;
    // Two registration rounds (one per change, one after 2 s at most).
    tokio::time::sleep(Duration::from_secs(3)).await;
    let kept = configuration::<ValidatingWebhookConfiguration>(&client, "plain")
        .await
        .expect("a configuration labelled but not owned by a binding stays");
    assert!(kept.webhooks.unwrap_or_default().is_empty());
    assert!(
        configuration::<MutatingWebhookConfiguration>(&client, "plain")
            .await
            .is_none(),
        "no webhooks for a binding without admission"
    );
}

/// Creates a Greeting through the API server with a plain HTTP request, as
/// kubectl does: the status code and the `Warning` headers.
async fn create_with_warnings(client: &Client, object: &Value) -> (u16, Vec<String>, String) {
    let request = hyper::Request::post(
        "/apis/examples.systems.mikemiller.tech/v1alpha1/namespaces/default/greetings",
    )
    .header("content-type", "application/json")
    .body(kube::client::Body::from(
        serde_json::to_vec(object).unwrap(),
    ))
    .unwrap();
    let response = client.send(request).await.unwrap();
    let status = response.status().as_u16();
    let warnings = response
        .headers()
        .get_all("warning")
        .iter()
        .map(|v| v.to_str().unwrap_or_default().to_owned())
        .collect();
    use http_body_util::BodyExt as _;
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        warnings,
        String::from_utf8_lossy(&body).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_failure_policy_ignore_a_failing_plugin_allows_with_a_warning_naming_the_binding() {
    // 1 MiB is less than the guest's initial memory: every call fails.
    let bed = Bed::start(
        "ignore",
        json!({"limits": {"memoryMib": 1}, "admission": {"failurePolicy": "Ignore"}}),
    )
    .await;
    let client = bed.client();
    let (validating, _) = registered(&client, BINDING).await;
    assert_eq!(validating["webhooks"][0]["failurePolicy"], "Ignore");

    // An empty greeting, which the plugin would deny, goes through.
    let (status, warnings, body) = create_with_warnings(&client, &greeting("unchecked", " ")).await;
    assert_eq!(status, 201, "{body}");
    let warning = warnings
        .iter()
        .find(|w| w.contains("failurePolicy: Ignore"))
        .unwrap_or_else(|| panic!("a warning about the ignored failure: {warnings:?}"));
    assert!(warning.starts_with("299 "), "{warning}");
    assert!(warning.contains("binding greeting-admission"), "{warning}");
    assert!(warning.contains("memory limit"), "{warning}");
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
}

/// The holder of the leader-election Lease, once there is one.
async fn leader(client: &Client) -> String {
    let leases: Api<Lease> = Api::namespaced(client.clone(), OPERATOR_NAMESPACE);
    eventually("a leader", LIMIT, || async {
        leases
            .get_opt("wasm-operator")
            .await
            .ok()??
            .spec?
            .holder_identity
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_share_one_ca_secret_and_the_follower_answers_reviews() {
    let cluster = Cluster::with_greetings("replicas", &[OPERATOR_NAMESPACE]).await;
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
        .create(&client)
        .await;
    // Both start at once: they race to create the Secret.
    let (first, first_addr) =
        start_operator(&cluster, &["--identity", "first", "--lease-seconds", "3"]);
    let (second, second_addr) =
        start_operator(&cluster, &["--identity", "second", "--lease-seconds", "3"]);
    let ca_pem = shared_ca(&client).await;
    let leading = leader(&client).await;
    let (follower, follower_addr) = if leading == "first" {
        (&second, &second_addr)
    } else {
        (&first, &first_addr)
    };
    // Only the follower is behind the Service.
    route_service_to(&cluster, follower_addr);
    eventually("the webhooks registered by the leader", LIMIT, || async {
        configuration::<ValidatingWebhookConfiguration>(&client, BINDING).await?;
        configuration::<MutatingWebhookConfiguration>(&client, BINDING).await
    })
    .await;
    // Both serve a certificate of the one CA, each from its own versions.
    for addr in [&first_addr, &second_addr] {
        eventually(
            "each replica answering with the shared CA",
            LIMIT,
            || async {
                let (status, body, _) = post(
                    addr,
                    &ca_pem,
                    &format!("/validate/{BINDING}"),
                    &review(Some(&greeting("g", " "))),
                )
                .await?;
                (status == 200 && body.contains("spec.greeting is required")).then_some(())
            },
        )
        .await;
    }
    eventually("the follower ready", LIMIT, || async {
        (readyz(&follower.http).await? == 200).then_some(())
    })
    .await;

    // Through the API server, answered by the follower alone.
    let denied = create(&client, &greeting("empty", " ")).await.unwrap_err();
    assert!(denied.contains("spec.greeting is required"), "{denied}");
    let stored = create(&client, &greeting("hello", "hello")).await.unwrap();
    assert_eq!(
        stored["spec"]["audienceFrom"],
        json!({"configMap": "audience", "key": "who"}),
        "{stored}"
    );
    let text = scrape(&follower.http).await;
    assert!(
        metric(
            &text,
            &format!(r#"wasm_operator_admission_requests_total{{binding="{BINDING}""#)
        ) >= 2.0,
        "the follower answered: {text}"
    );
}

/// The serving certificate renewed by the leader (lifetime 9 s: renewed
/// every 6 s) while a client sends reviews continuously on new
/// connections, as the API server does: no review fails, and the served
/// certificate changes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_renewal_under_continuous_reviews_fails_no_request() {
    let cluster = Cluster::with_greetings("renewal", &[OPERATOR_NAMESPACE]).await;
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
        .create(&client)
        .await;
    let bed = Bed::serve(
        cluster,
        BINDING,
        &[
            "--leader-election=false",
            "--webhook-cert-lifetime-seconds",
            "9",
        ],
    )
    .await;
    let bed = Arc::new(bed);
    let sent = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let served = Arc::new(std::sync::Mutex::new(
        std::collections::BTreeSet::<Vec<u8>>::new(),
    ));
    let started = Instant::now();
    let run_for = Duration::from_secs(15);
    let mut clients = Vec::new();
    for _ in 0..4 {
        let (bed, sent, failed, served) = (
            Arc::clone(&bed),
            Arc::clone(&sent),
            Arc::clone(&failed),
            Arc::clone(&served),
        );
        clients.push(tokio::spawn(async move {
            let body = review(Some(&greeting("g", "hi")));
            while started.elapsed() < run_for {
                sent.fetch_add(1, Ordering::Relaxed);
                match post(
                    &bed.addr,
                    &bed.ca_pem,
                    &format!("/validate/{BINDING}"),
                    &body,
                )
                .await
                {
                    Some((200, body, cert)) if body.contains(r#""allowed":true"#) => {
                        served.lock().unwrap().insert(cert);
                    }
                    other => failed.lock().unwrap().push(format!("{other:?}")),
                }
            }
        }));
    }
    for client in clients {
        client.await.unwrap();
    }
    let sent = sent.load(Ordering::Relaxed);
    let rate = sent as f64 / run_for.as_secs_f64();
    let failed = failed.lock().unwrap().clone();
    let served = served.lock().unwrap().len();
    eprintln!(
        "renewal under load: {sent} reviews ({rate:.0}/s), {served} certificates served, {} failed",
        failed.len()
    );
    assert!(rate >= 50.0, "only {rate:.0} reviews/s");
    assert!(
        failed.is_empty(),
        "{} of {sent} failed: {:?}",
        failed.len(),
        &failed[..failed.len().min(5)]
    );
    assert!(
        served >= 2,
        "the certificate was renewed during the run ({served} served)"
    );
}
