//! Admission webhooks called as kube-apiserver calls them: ordering, concurrency, the
//! AdmissionReview request, timeouts, response verification, patch decoding, reinvocation,
//! DELETE, dry run, warnings, Service resolution, selectors and failurePolicy. Each test names
//! the semantics it pins; the webhook is a small HTTPS server that records every call.

use std::collections::HashSet;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use kube::api::{Api, DeleteParams, DynamicObject, GroupVersionKind, PostParams};
use serde_json::{Value, json};
use test_apiserver::{Certificates, TestApiServer};

/// One request the webhook server received.
#[derive(Debug, Clone)]
struct Call {
    path: String,
    query: String,
    host: String,
    review: Value,
}

/// A running webhook server: its base URL, the CA (base64, as in `caBundle`) and its calls.
struct Webhooks {
    url: String,
    addr: SocketAddr,
    ca: String,
    calls: Arc<Mutex<Vec<Call>>>,
}

impl Webhooks {
    /// Calls whose path is `path`, in arrival order.
    fn to(&self, path: &str) -> Vec<Call> {
        let calls = self.calls.lock().expect("calls");
        calls.iter().filter(|c| c.path == path).cloned().collect()
    }

    /// Paths called, in arrival order.
    fn paths(&self) -> Vec<String> {
        let calls = self.calls.lock().expect("calls");
        calls.iter().map(|c| c.path.clone()).collect()
    }
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn envelope(response: Value) -> Value {
    json!({ "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": response })
}

/// A patch adding label `key=yes` unless present (idempotent, as reinvoked mutators must be).
fn label_patch(review: &Value, key: &str) -> Option<Value> {
    let labels = &review["request"]["object"]["metadata"]["labels"];
    if labels.get(key).is_some() {
        return None;
    }
    Some(if labels.is_object() {
        json!([{ "op": "add", "path": format!("/metadata/labels/{key}"), "value": "yes" }])
    } else {
        json!([{ "op": "add", "path": "/metadata/labels", "value": { key: "yes" } }])
    })
}

/// What the webhook answers on `path` (the last segment may carry an argument).
async fn answer(path: &str, review: &Value) -> (u16, Value) {
    let uid = review["request"]["uid"].clone();
    let allow = json!({ "uid": uid, "allowed": true });
    let deny = |message: &str| json!({ "uid": uid, "allowed": false, "status": { "code": 403, "message": message } });
    let with = |extra: Value| {
        let mut response = allow.clone();
        if let (Some(r), Some(e)) = (response.as_object_mut(), extra.as_object()) {
            r.extend(e.clone());
        }
        response
    };
    let (route, arg) = path.rsplit_once('/').map_or((path, ""), |(r, a)| (r, a));
    let response = match (route, arg) {
        (_, "allow") => allow,
        (_, "deny") => deny("no thanks"),
        (_, "slow") => {
            tokio::time::sleep(Duration::from_secs(3)).await;
            allow
        }
        (_, "slow-allow") => {
            tokio::time::sleep(Duration::from_millis(800)).await;
            allow
        }
        (_, "slow-deny") => {
            tokio::time::sleep(Duration::from_millis(800)).await;
            deny("slow no")
        }
        (_, "fast-deny") => deny("fast no"),
        ("/label" | "/order", key) => match label_patch(review, key) {
            Some(patch) => with(
                json!({ "patchType": "JSONPatch", "patch": b64(patch.to_string().as_bytes()) }),
            ),
            None => allow,
        },
        ("/label-array", key) => match label_patch(review, key) {
            // kube-rs's AdmissionResponse serializes Vec<u8> as an array of numbers.
            Some(patch) => {
                with(json!({ "patchType": "JSONPatch", "patch": patch.to_string().into_bytes() }))
            }
            None => allow,
        },
        (_, "byte-300") => with(json!({ "patchType": "JSONPatch", "patch": [300] })),
        (_, "wrong-uid") => json!({ "uid": "not-the-request-uid", "allowed": true }),
        (_, "wrong-version") => {
            return (
                200,
                json!({ "apiVersion": "admission.k8s.io/v1beta1", "kind": "AdmissionReview", "response": allow }),
            );
        }
        (_, "wrong-kind") => {
            return (
                200,
                json!({ "apiVersion": "admission.k8s.io/v1", "kind": "Review", "response": allow }),
            );
        }
        (_, "no-response") => {
            return (
                200,
                json!({ "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview" }),
            );
        }
        (_, "http-500") => return (500, json!({})),
        (_, "patch-no-type") => with(json!({ "patch": b64(b"[]") })),
        (_, "type-no-patch") => with(json!({ "patchType": "JSONPatch" })),
        (_, "merge-type") => with(json!({
            "patchType": "MergePatch",
            "patch": b64(json!([{ "op": "add", "path": "/data", "value": {} }]).to_string().as_bytes()),
        })),
        (_, "any-patch") => with(json!({
            "patchType": "JSONPatch",
            "patch": b64(json!([{ "op": "add", "path": "/metadata/annotations", "value": { "p": "1" } }]).to_string().as_bytes()),
        })),
        (_, "bad-patch") => with(json!({
            "patchType": "JSONPatch",
            "patch": b64(json!([{ "op": "remove", "path": "/metadata/labels/absent" }]).to_string().as_bytes()),
        })),
        (_, "not-a-patch") => with(json!({
            "patchType": "JSONPatch",
            "patch": b64(json!({ "op": "add" }).to_string().as_bytes()),
        })),
        (_, "warn") => with(json!({ "warnings": ["careful: \"quoted\"", "second", "second"] })),
        (_, "warn-deny") => {
            let mut response = deny("no thanks");
            response["warnings"] = json!(["denied, with a warning"]);
            response
        }
        _ => deny(&format!("unknown path {path}")),
    };
    (200, envelope(response))
}

/// Starts a webhook server whose certificate is for `names`.
async fn webhooks_for(names: &[&str]) -> Webhooks {
    let certs = Certificates::generate_for(names).expect("certificates");
    let acceptor = tokio_rustls::TlsAcceptor::from(certs.server_config().expect("tls config"));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let calls: Arc<Mutex<Vec<Call>>> = Arc::default();
    let recorded = calls.clone();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                continue;
            };
            let acceptor = acceptor.clone();
            let recorded = recorded.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let service = service_fn(move |request: http::Request<hyper::body::Incoming>| {
                    let recorded = recorded.clone();
                    async move {
                        let path = request.uri().path().to_string();
                        let query = request.uri().query().unwrap_or("").to_string();
                        let host = request
                            .headers()
                            .get(http::header::HOST)
                            .and_then(|h| h.to_str().ok())
                            .unwrap_or("")
                            .to_string();
                        let body = request
                            .into_body()
                            .collect()
                            .await
                            .expect("body")
                            .to_bytes();
                        let review: Value = serde_json::from_slice(&body).expect("review");
                        recorded.lock().expect("calls").push(Call {
                            path: path.clone(),
                            query,
                            host,
                            review: review.clone(),
                        });
                        let (status, reply) = answer(&path, &review).await;
                        let mut response =
                            http::Response::new(Full::new(Bytes::from(reply.to_string())));
                        *response.status_mut() =
                            http::StatusCode::from_u16(status).expect("status");
                        Ok::<_, Infallible>(response)
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tls), service)
                    .await;
            });
        }
    });
    Webhooks {
        url: format!("https://{addr}"),
        addr,
        ca: b64(certs.ca_pem.as_bytes()),
        calls,
    }
}

async fn webhooks() -> Webhooks {
    webhooks_for(&["localhost", "127.0.0.1"]).await
}

/// A webhook on ConfigMap CREATE at `hooks.url + path`, named after the path.
fn webhook(hooks: &Webhooks, path: &str, extra: Value) -> Value {
    let mut hook = json!({
        "name": format!("{}.hooks.example.com", path.trim_start_matches('/').replace('/', "-")),
        "clientConfig": { "url": format!("{}{path}", hooks.url), "caBundle": hooks.ca },
        "rules": [{ "operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"], "resources": ["configmaps"], "scope": "Namespaced" }],
        "sideEffects": "None",
        "admissionReviewVersions": ["v1"],
        "timeoutSeconds": 2,
    });
    if let (Some(hook), Some(extra)) = (hook.as_object_mut(), extra.as_object()) {
        hook.extend(extra.clone());
    }
    hook
}

fn configuration_api(server: &TestApiServer, mutating: bool) -> Api<DynamicObject> {
    let (kind, plural) = if mutating {
        (
            "MutatingWebhookConfiguration",
            "mutatingwebhookconfigurations",
        )
    } else {
        (
            "ValidatingWebhookConfiguration",
            "validatingwebhookconfigurations",
        )
    };
    let gvk = GroupVersionKind::gvk("admissionregistration.k8s.io", "v1", kind);
    let ar = kube::api::ApiResource::from_gvk_with_plural(&gvk, plural);
    Api::all_with(server.client(), &ar)
}

async fn try_register(
    server: &TestApiServer,
    mutating: bool,
    name: &str,
    hooks: Vec<Value>,
) -> Result<DynamicObject, kube::Error> {
    let kind = if mutating {
        "MutatingWebhookConfiguration"
    } else {
        "ValidatingWebhookConfiguration"
    };
    let config: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "admissionregistration.k8s.io/v1", "kind": kind, "metadata": { "name": name }, "webhooks": hooks,
    }))
    .expect("configuration");
    configuration_api(server, mutating)
        .create(&PostParams::default(), &config)
        .await
}

async fn mutating(server: &TestApiServer, name: &str, hooks: Vec<Value>) {
    try_register(server, true, name, hooks)
        .await
        .expect("mutating configuration created");
}

async fn validating(server: &TestApiServer, name: &str, hooks: Vec<Value>) {
    try_register(server, false, name, hooks)
        .await
        .expect("validating configuration created");
}

fn config_map(name: &str, labels: Value) -> ConfigMap {
    serde_json::from_value(json!({ "metadata": { "name": name, "labels": labels } }))
        .expect("config map")
}

fn api_error<T: std::fmt::Debug>(result: Result<T, kube::Error>) -> kube::core::Status {
    match result {
        Err(kube::Error::Api(status)) => *status,
        other => panic!("expected an API error, got {other:?}"),
    }
}

async fn create(cms: &Api<ConfigMap>, name: &str) -> Result<ConfigMap, kube::Error> {
    cms.create(&PostParams::default(), &config_map(name, json!({})))
        .await
}

fn labels(cm: &ConfigMap) -> Vec<String> {
    let mut keys: Vec<String> = cm
        .metadata
        .labels
        .clone()
        .unwrap_or_default()
        .into_keys()
        .collect();
    keys.sort();
    keys
}

#[tokio::test]
async fn mutating_configurations_run_in_name_order_and_webhooks_in_listed_order() {
    let server = TestApiServer::start().await.expect("server starts");
    let hooks = webhooks().await;
    // Registered out of order; inside "b-config" the listed order is z before y.
    mutating(
        &server,
        "b-config",
        vec![
            webhook(&hooks, "/order/z", json!({})),
            webhook(&hooks, "/order/y", json!({})),
        ],
    )
    .await;
    mutating(
        &server,
        "a-config",
        vec![webhook(&hooks, "/order/x", json!({}))],
    )
    .await;
    let cms: Api<ConfigMap> = Api::namespaced(server.client(), "default");
    let created = create(&cms, "a").await.expect("created");
    assert_eq!(hooks.paths(), ["/order/x", "/order/z", "/order/y"]);
    assert_eq!(
        labels(&created),
        ["x", "y", "z"],
        "each patch applied in turn"
    );
    let seen_by_y = &hooks.to("/order/y")[0].review["request"]["object"]["metadata"]["labels"];
    assert_eq!(
        seen_by_y,
        &json!({ "x": "yes", "z": "yes" }),
        "a webhook sees the earlier patches"
    );
}

#[tokio::test]
async fn mutating_webhooks_patch_before_validating_webhooks_see_the_object() {
    let server = TestApiServer::start().await.expect("server starts");
    let hooks = webhooks().await;
    let on_mutated = json!({ "objectSelector": { "matchLabels": { "mutated": "yes" } } });
    mutating(
        &server,
        "m",
        vec![
            webhook(&hooks, "/label/mutated", json!({})),
            webhook(&hooks, "/label/then", on_mutated.clone()),
        ],
    )
    .await;
    validating(&server, "v", vec![webhook(&hooks, "/deny", on_mutated)]).await;
    let cms: Api<ConfigMap> = Api::namespaced(server.client(), "default");
    let err = api_error(create(&cms, "a").await);
    assert_eq!(
        err.code, 403,
        "the validating webhook saw the mutated labels: {}",
        err.message
    );
    assert!(
        cms.get_opt("a").await.expect("get").is_none(),
        "nothing stored"
    );
    assert_eq!(
        hooks.to("/label/then").len(),
        1,
        "a later mutating webhook's objectSelector sees the earlier patch"
    );
}

#[tokio::test]
async fn validating_webhooks_are_called_concurrently_and_any_denial_denies() {
    let server = TestApiServer::start().await.expect("server starts");
    let hooks = webhooks().await;
    validating(
        &server,
        "v",
        vec![
            webhook(&hooks, "/a/slow-allow", json!({})),
            webhook(&hooks, "/b/slow-allow", json!({})),
            webhook(&hooks, "/c/slow-deny", json!({})),
        ],
    )
    .await;
    let cms: Api<ConfigMap> = Api::namespaced(server.client(), "default");
    let started = Instant::now();
    let err = api_error(create(&cms, "a").await);
    let elapsed = started.elapsed();
    assert_eq!(hooks.paths().len(), 3, "every webhook is called");
    assert!(
        elapsed < Duration::from_millis(1600),
        "three 800 ms calls overlap: {elapsed:?}"
    );
    assert_eq!(err.code, 403);
    assert_eq!(
        err.message,
        "admission webhook \"c-slow-deny.hooks.example.com\" denied the request: slow no"
    );

    // Two denials: the first to arrive answers.
    let server = TestApiServer::start().await.expect("server starts");
    validating(
        &server,
        "v",
        vec![
            webhook(&hooks, "/d/slow-deny", json!({})),
            webhook(&hooks, "/e/fast-deny", json!({})),
        ],
    )
    .await;
    let cms: Api<ConfigMap> = Api::namespaced(server.client(), "default");
    let err = api_error(create(&cms, "a").await);
    assert!(err.message.contains("fast no"), "{}", err.message);
}

#[tokio::test]
async fn every_call_gets_a_new_uid_and_the_whole_admission_request() {
    let server = TestApiServer::start().await.expect("server starts");
    let hooks = webhooks().await;
    let all_ops = json!({ "rules": [{ "operations": ["*"], "apiGroups": [""], "apiVersions": ["v1"], "resources": ["configmaps"] }] });
    mutating(
        &server,
        "m",
        vec![webhook(&hooks, "/m/allow", all_ops.clone())],
    )
    .await;
    validating(&server, "v", vec![webhook(&hooks, "/v/allow", all_ops)]).await;
    let cms: Api<ConfigMap> = Api::namespaced(server.client(), "default");
    let pp = PostParams {
        field_manager: Some("tester".into()),
        ..PostParams::default()
    };
    cms.create(&pp, &config_map("a", json!({})))
        .await
        .expect("created");
    let mut cm = cms.get("a").await.expect("get");
    cm.data = Some([("k".to_string(), "v".to_string())].into());
    cms.replace("a", &PostParams::default(), &cm)
        .await
        .expect("replaced");
    cms.delete("a", &DeleteParams::background())
        .await
        .expect("deleted");

    let calls: Vec<Value> = hooks
        .calls
        .lock()
        .expect("calls")
        .iter()
        .map(|c| c.review["request"].clone())
        .collect();
    let ops: Vec<&str> = calls
        .iter()
        .map(|r| r["operation"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(
        ops,
        ["CREATE", "CREATE", "UPDATE", "UPDATE", "DELETE", "DELETE"]
    );
    let uids: HashSet<&str> = calls
        .iter()
        .map(|r| r["uid"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(uids.len(), calls.len(), "a new uid per call");
    for request in &calls {
        let gvk = json!({ "group": "", "version": "v1", "kind": "ConfigMap" });
        let gvr = json!({ "group": "", "version": "v1", "resource": "configmaps" });
        assert_eq!(request["kind"], gvk);
        assert_eq!(request["requestKind"], gvk);
        assert_eq!(request["resource"], gvr);
        assert_eq!(request["requestResource"], gvr);
        assert_eq!(request["name"], "a");
        assert_eq!(request["namespace"], "default");
        assert_eq!(request["dryRun"], false);
        assert_eq!(request["userInfo"]["username"], "test-apiserver-user");
        assert_eq!(request["options"]["apiVersion"], "meta.k8s.io/v1");
        assert!(request.get("subResource").is_none());
    }
    let (on_create, on_update, on_delete) = (&calls[0], &calls[2], &calls[4]);
    assert_eq!(on_create["options"]["kind"], "CreateOptions");
    assert_eq!(on_create["options"]["fieldManager"], "tester");
    assert_eq!(on_create["oldObject"], Value::Null);
    assert_eq!(on_create["object"]["metadata"]["name"], "a");
    assert_eq!(on_update["options"]["kind"], "UpdateOptions");
    assert_eq!(on_update["object"]["data"]["k"], "v");
    assert_eq!(on_update["oldObject"]["data"], Value::Null);
    assert_eq!(on_delete["options"]["kind"], "DeleteOptions");
    assert_eq!(on_delete["options"]["propagationPolicy"], "Background");
    assert_eq!(on_delete["object"], Value::Null);
    assert_eq!(on_delete["oldObject"]["data"]["k"], "v");
}

#[tokio::test]
async fn the_request_names_the_subresource_the_caller_and_a_generated_name_as_empty() {
    let server = TestApiServer::start().await.expect("server starts");
    let hooks = webhooks().await;
    let pods = json!({ "rules": [{ "operations": ["CREATE", "UPDATE"], "apiGroups": [""], "apiVersions": ["v1"], "resources": ["pods", "pods/status"] }] });
    validating(&server, "v", vec![webhook(&hooks, "/allow", pods)]).await;
    // A caller impersonating a user (kubectl --as / kube's `impersonate`).
    let mut kubeconfig = server.kubeconfig();
    if let Some(auth) = kubeconfig.auth_infos[0].auth_info.as_mut() {
        auth.impersonate = Some("alice".into());
        auth.impersonate_groups = Some(vec!["devs".into()]);
    }
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
        .await
        .expect("config");
    let client = kube::Client::try_from(config).expect("client");
    let pods: Api<Pod> = Api::namespaced(client, "default");
    let pod: Pod = serde_json::from_value(json!({
        "metadata": { "generateName": "web-" },
        "spec": { "containers": [{ "name": "c", "image": "busybox" }] },
    }))
    .expect("pod");
    let created = pods
        .create(&PostParams::default(), &pod)
        .await
        .expect("created");
    let name = created.metadata.name.clone().expect("generated name");
    let mut running = created.clone();
    running.status = Some(serde_json::from_value(json!({ "phase": "Running" })).expect("status"));
    pods.replace_status(&name, &PostParams::default(), &running)
        .await
        .expect("status replaced");
    let calls = hooks.to("/allow");
    let (create, status) = (&calls[0].review["request"], &calls[1].review["request"]);
    assert_eq!(
        create["name"], "",
        "the request of a generateName create has no name"
    );
    assert_eq!(create["userInfo"]["username"], "alice");
    assert_eq!(
        create["userInfo"]["groups"],
        json!(["devs", "system:authenticated"])
    );
    assert_eq!(status["operation"], "UPDATE");
    assert_eq!(status["subResource"], "status");
    assert_eq!(status["requestSubResource"], "status");
    assert_eq!(status["name"], json!(name));
}

#[tokio::test]
async fn the_timeout_is_sent_on_the_url_and_bounds_the_call() {
    let server = TestApiServer::start().await.expect("server starts");
    let hooks = webhooks().await;
    let mut default_timeout = webhook(&hooks, "/allow", json!({}));
    default_timeout
        .as_object_mut()
        .expect("object")
        .remove("timeoutSeconds");
    validating(
        &server,
        "v",
        vec![
            default_timeout,
            webhook(&hooks, "/ignore/slow", json!({ "failurePolicy": "Ignore", "timeoutSeconds": 1 })),
            webhook(&hooks, "/fail/slow", json!({ "timeoutSeconds": 1, "objectSelector": { "matchLabels": { "strict": "true" } } })),
        ],
    )
    .await;
    let cms: Api<ConfigMap> = Api::namespaced(server.client(), "default");
    let started = Instant::now();
    create(&cms, "a").await.expect("an ignored timeout admits");
    assert!(
        started.elapsed() < Duration::from_millis(2500),
        "bounded by timeoutSeconds"
    );
    assert_eq!(hooks.to("/allow")[0].query, "timeout=10s", "the v1 default");
    assert_eq!(hooks.to("/ignore/slow")[0].query, "timeout=1s");

    let started = Instant::now();
    let err = api_error(
        cms.create(
            &PostParams::default(),
            &config_map("b", json!({ "strict": "true" })),
        )
        .await,
    );
    assert!(started.elapsed() < Duration::from_millis(2500));
    assert_eq!(err.code, 500);
    assert!(
        err.message.starts_with("Internal error occurred: failed calling webhook \"fail-slow.hooks.example.com\": failed to call webhook: Post \"https://")
            && err.message.ends_with("/fail/slow?timeout=1s\": context deadline exceeded"),
        "{}",
        err.message
    );
}

#[tokio::test]
async fn a_response_that_does_not_match_the_request_is_a_call_failure() {
    let cases = [
        ("/wrong-uid", "expected response.uid="),
        (
            "/wrong-version",
            "expected webhook response of admission.k8s.io/v1, Kind=AdmissionReview, got admission.k8s.io/v1beta1, Kind=AdmissionReview",
        ),
        ("/wrong-kind", "got admission.k8s.io/v1, Kind=Review"),
        ("/no-response", "webhook response was absent"),
        (
            "/patch-no-type",
            "webhook returned response.patch but not response.patchType",
        ),
        (
            "/type-no-patch",
            "webhook returned response.patchType but not response.patch",
        ),
        ("/merge-type", "unsupported patch type \"MergePatch\""),
        ("/http-500", "the server responded with the status code 500"),
    ];
    let hooks = webhooks().await;
    for (path, why) in cases {
        let server = TestApiServer::start().await.expect("server starts");
        mutating(
            &server,
            "fail",
            vec![webhook(&hooks, path, json!({ "failurePolicy": "Fail" }))],
        )
        .await;
        let cms: Api<ConfigMap> = Api::namespaced(server.client(), "default");
        let err = api_error(create(&cms, "a").await);
        let hook_name = format!("{}.hooks.example.com", path.trim_start_matches('/'));
        assert_eq!(err.code, 500, "{path}: {}", err.message);
        assert_eq!(err.reason, "InternalError");
        assert!(
            err.message
                .contains(&format!("failed calling webhook \"{hook_name}\"")),
            "{}",
            err.message
        );
        assert!(err.message.contains(why), "{path}: {}", err.message);

        let server = TestApiServer::start().await.expect("server starts");
        mutating(
            &server,
            "ignore",
            vec![webhook(&hooks, path, json!({ "failurePolicy": "Ignore" }))],
        )
        .await;
        let cms: Api<ConfigMap> = Api::namespaced(server.client(), "default");
        let created = create(&cms, "a").await.expect("Ignore proceeds");
        assert!(labels(&created).is_empty(), "{path}");
    }
}

#[tokio::test]
async fn a_validating_webhook_may_not_patch() {
    let server = TestApiServer::start().await.expect("server starts");
    let hooks = webhooks().await;
    validating(&server, "v", vec![webhook(&hooks, "/label/v", json!({}))]).await;
    let cms: Api<ConfigMap> = Api::namespaced(server.client(), "default");
    let err = api_error(create(&cms, "a").await);
    assert_eq!(err.code, 500);
    assert!(
        err.message
            .contains("validating webhook may not return response.patch"),
        "{}",
        err.message
    );

    let server = TestApiServer::start().await.expect("server starts");
    validating(
        &server,
        "v",
        vec![webhook(
            &hooks,
            "/label/v",
            json!({ "failurePolicy": "Ignore" }),
        )],
    )
    .await;
    let cms: Api<ConfigMap> = Api::namespaced(server.client(), "default");
    let created = create(&cms, "a").await.expect("Ignore admits");
    assert!(labels(&created).is_empty(), "the patch is not applied");
}

#[tokio::test]
async fn a_patch_is_read_from_base64_and_from_an_array_of_numbers() {
    let server = TestApiServer::start().await.expect("server starts");
    let hooks = webhooks().await;
    mutating(
        &server,
        "m",
        vec![
            webhook(&hooks, "/label/text", json!({})),
            webhook(&hooks, "/label-array/numbers", json!({})),
        ],
    )
    .await;
    let cms: Api<ConfigMap> = Api::namespaced(server.client(), "default");
    let created = create(&cms, "a").await.expect("created");
    assert_eq!(labels(&created), ["numbers", "text"]);

    // A number that is not a byte cannot decode: a call failure.
    let server = TestApiServer::start().await.expect("server starts");
    mutating(&server, "m", vec![webhook(&hooks, "/byte-300", json!({}))]).await;
    let cms: Api<ConfigMap> = Api::namespaced(server.client(), "default");
    let err = api_error(create(&cms, "a").await);
    assert_eq!(err.code, 500);
    assert!(
        err.message
            .contains("failed calling webhook \"byte-300.hooks.example.com\""),
        "{}",
        err.message
    );
}

#[tokio::test]
async fn if_needed_webhooks_run_once_more_when_a_later_webhook_changed_the_object() {
    let server = TestApiServer::start().await.expect("server starts");
    let hooks = webhooks().await;
    let if_needed = json!({ "reinvocationPolicy": "IfNeeded" });
    mutating(
        &server,
        "m",
        vec![
            webhook(&hooks, "/label/first", if_needed.clone()),
            webhook(
                &hooks,
                "/never/allow",
                json!({ "reinvocationPolicy": "Never" }),
            ),
            webhook(&hooks, "/label/second", json!({})),
            webhook(&hooks, "/last/allow", if_needed),
        ],
    )
    .await;
    let cms: Api<ConfigMap> = Api::namespaced(server.client(), "default");
    let created = create(&cms, "a").await.expect("created");
    assert_eq!(labels(&created), ["first", "second"]);
    assert_eq!(
        hooks.paths(),
        [
            "/label/first",
            "/never/allow",
            "/label/second",
            "/last/allow",
            "/label/first"
        ],
        "only the IfNeeded webhook invoked before a later change is called again, once"
    );
    let rounds = hooks.to("/label/first");
    assert_ne!(
        rounds[0].review["request"]["uid"],
        rounds[1].review["request"]["uid"]
    );
    assert_eq!(
        rounds[1].review["request"]["object"]["metadata"]["labels"],
        json!({ "first": "yes", "second": "yes" }),
        "the reinvocation sees the later change"
    );

    // Nothing changed after it: no second round.
    let server = TestApiServer::start().await.expect("server starts");
    let hooks = webhooks().await;
    mutating(
        &server,
        "m",
        vec![
            webhook(
                &hooks,
                "/label/only",
                json!({ "reinvocationPolicy": "IfNeeded" }),
            ),
            webhook(&hooks, "/allow", json!({})),
        ],
    )
    .await;
    let cms: Api<ConfigMap> = Api::namespaced(server.client(), "default");
    create(&cms, "a").await.expect("created");
    assert_eq!(hooks.paths(), ["/label/only", "/allow"]);
}

#[tokio::test]
async fn delete_is_sent_to_mutating_webhooks_and_a_patch_on_delete_fails() {
    let server = TestApiServer::start().await.expect("server starts");
    let hooks = webhooks().await;
    let on_delete = json!({ "rules": [{ "operations": ["DELETE"], "apiGroups": [""], "apiVersions": ["v1"], "resources": ["configmaps"] }] });
    mutating(
        &server,
        "m",
        vec![webhook(&hooks, "/allow", on_delete.clone())],
    )
    .await;
    let cms: Api<ConfigMap> = Api::namespaced(server.client(), "default");
    create(&cms, "a").await.expect("created");
    cms.delete("a", &DeleteParams::default())
        .await
        .expect("deleted");
    let calls = hooks.to("/allow");
    assert_eq!(calls.len(), 1, "CREATE is not in the rules");
    let request = &calls[0].review["request"];
    assert_eq!(request["operation"], "DELETE");
    assert_eq!(request["object"], Value::Null);
    assert_eq!(request["oldObject"]["metadata"]["name"], "a");
    assert_eq!(request["options"]["kind"], "DeleteOptions");

    let server = TestApiServer::start().await.expect("server starts");
    mutating(&server, "m", vec![webhook(&hooks, "/any-patch", on_delete)]).await;
    let cms: Api<ConfigMap> = Api::namespaced(server.client(), "default");
    create(&cms, "a").await.expect("created");
    let err = api_error(cms.delete("a", &DeleteParams::default()).await);
    assert_eq!(err.code, 500);
    assert!(
        err.message
            .contains("attempted to modify the object, which is not supported for this operation"),
        "{}",
        err.message
    );
    assert!(
        cms.get_opt("a").await.expect("get").is_some(),
        "not deleted"
    );
}

#[tokio::test]
async fn a_patch_that_does_not_apply_is_500_whatever_the_failure_policy() {
    let server = TestApiServer::start().await.expect("server starts");
    let hooks = webhooks().await;
    mutating(
        &server,
        "m",
        vec![webhook(
            &hooks,
            "/bad-patch",
            json!({ "failurePolicy": "Ignore" }),
        )],
    )
    .await;
    let cms: Api<ConfigMap> = Api::namespaced(server.client(), "default");
    let err = api_error(create(&cms, "a").await);
    assert_eq!(err.code, 500);
    assert_eq!(err.reason, "InternalError");
    assert!(cms.get_opt("a").await.expect("get").is_none());

    // A patch that does not even decode is a call failure, so Ignore proceeds.
    let server = TestApiServer::start().await.expect("server starts");
    mutating(
        &server,
        "m",
        vec![webhook(
            &hooks,
            "/not-a-patch",
            json!({ "failurePolicy": "Ignore" }),
        )],
    )
    .await;
    let cms: Api<ConfigMap> = Api::namespaced(server.client(), "default");
    create(&cms, "a")
        .await
        .expect("Ignore proceeds past an undecodable patch");
}

#[tokio::test]
async fn a_dry_run_to_a_webhook_with_side_effects_is_400() {
    let hooks = webhooks().await;
    let dry = PostParams {
        dry_run: true,
        ..PostParams::default()
    };
    for effects in ["Some", "Unknown"] {
        let server = TestApiServer::start().await.expect("server starts");
        validating(
            &server,
            "v",
            vec![webhook(
                &hooks,
                "/fx/allow",
                json!({ "sideEffects": effects, "failurePolicy": "Ignore" }),
            )],
        )
        .await;
        let cms: Api<ConfigMap> = Api::namespaced(server.client(), "default");
        let err = api_error(cms.create(&dry, &config_map("a", json!({}))).await);
        assert_eq!(err.code, 400, "{effects}: failurePolicy does not rescue it");
        assert_eq!(
            err.message,
            "admission webhook \"fx-allow.hooks.example.com\" does not support dry run"
        );
        create(&cms, "a").await.expect("a real write calls it");
    }
    let server = TestApiServer::start().await.expect("server starts");
    mutating(
        &server,
        "m",
        vec![webhook(
            &hooks,
            "/dry/allow",
            json!({ "sideEffects": "NoneOnDryRun" }),
        )],
    )
    .await;
    let cms: Api<ConfigMap> = Api::namespaced(server.client(), "default");
    cms.create(&dry, &config_map("a", json!({})))
        .await
        .expect("NoneOnDryRun is called");
    let request = &hooks.to("/dry/allow")[0].review["request"];
    assert_eq!(request["dryRun"], true);
    assert_eq!(request["options"]["dryRun"], json!(["All"]));
    assert!(cms.get_opt("a").await.expect("get").is_none());
}

/// POSTs a ConfigMap and returns the status and the `Warning` headers.
async fn post_for_warnings(server: &TestApiServer, name: &str) -> (u16, Vec<String>) {
    let body = serde_json::to_vec(&config_map(name, json!({}))).expect("json");
    let request = http::Request::post("/api/v1/namespaces/default/configmaps")
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(kube::client::Body::from(body))
        .expect("request");
    let response = server.client().send(request).await.expect("response");
    let warnings = response
        .headers()
        .get_all(http::header::WARNING)
        .iter()
        .map(|v| v.to_str().expect("ascii").to_string())
        .collect();
    (response.status().as_u16(), warnings)
}

#[tokio::test]
async fn webhook_warnings_are_returned_as_warning_headers() {
    let server = TestApiServer::start().await.expect("server starts");
    let hooks = webhooks().await;
    mutating(&server, "m", vec![webhook(&hooks, "/m/warn", json!({}))]).await;
    validating(&server, "v", vec![webhook(&hooks, "/v/warn", json!({}))]).await;
    let (status, warnings) = post_for_warnings(&server, "a").await;
    assert_eq!(status, 201);
    assert_eq!(
        warnings,
        ["299 - \"careful: \\\"quoted\\\"\"", "299 - \"second\""],
        "quoted, duplicates dropped"
    );

    let server = TestApiServer::start().await.expect("server starts");
    validating(&server, "v", vec![webhook(&hooks, "/warn-deny", json!({}))]).await;
    let (status, warnings) = post_for_warnings(&server, "a").await;
    assert_eq!(status, 403);
    assert_eq!(
        warnings,
        ["299 - \"denied, with a warning\""],
        "a denial carries its warnings too"
    );
}

#[tokio::test]
async fn a_service_client_config_is_resolved_through_the_mapping_and_verified_for_its_dns_name() {
    let hooks = webhooks_for(&["injector.operators.svc"]).await;
    let service = |port: Option<u16>, path: &str| {
        let mut svc = json!({ "namespace": "operators", "name": "injector", "path": path });
        if let Some(port) = port {
            svc["port"] = json!(port);
        }
        json!({ "clientConfig": { "service": svc, "caBundle": hooks.ca } })
    };
    let server = TestApiServer::builder()
        .service_address("operators", "injector", 443, hooks.addr)
        .start()
        .await
        .expect("server starts");
    server.set_service_address("operators", "injector", 9443, hooks.addr);
    mutating(
        &server,
        "m",
        vec![
            webhook(
                &hooks,
                "/svc-default-port",
                service(None, "/label/default-port"),
            ),
            webhook(
                &hooks,
                "/svc-explicit-port",
                service(Some(9443), "/label/explicit-port"),
            ),
        ],
    )
    .await;
    let cms: Api<ConfigMap> = Api::namespaced(server.client(), "default");
    let created = create(&cms, "a").await.expect("created");
    assert_eq!(labels(&created), ["default-port", "explicit-port"]);
    let first = &hooks.to("/label/default-port")[0];
    assert_eq!(first.query, "timeout=2s");
    assert_eq!(first.host, "injector.operators.svc:443");

    // Unmapped port: no such host. A certificate for another name: a TLS failure.
    let server = TestApiServer::start().await.expect("server starts");
    validating(
        &server,
        "v",
        vec![webhook(&hooks, "/unmapped", service(Some(8443), "/allow"))],
    )
    .await;
    let err = api_error(create(&Api::namespaced(server.client(), "default"), "a").await);
    assert_eq!(err.code, 500);
    assert!(err.message.contains("Post \"https://injector.operators.svc:8443/allow?timeout=2s\": dial tcp: lookup injector.operators.svc: no such host"), "{}", err.message);
    let wrong_name = webhooks().await;
    let server = TestApiServer::builder()
        .service_address("operators", "injector", 443, wrong_name.addr)
        .start()
        .await
        .expect("server starts");
    let mut hook = webhook(&wrong_name, "/wrong-cert", service(None, "/allow"));
    hook["clientConfig"]["caBundle"] = json!(wrong_name.ca);
    validating(&server, "v", vec![hook]).await;
    let err = api_error(create(&Api::namespaced(server.client(), "default"), "a").await);
    assert_eq!(
        err.code, 500,
        "certificate not valid for injector.operators.svc: {}",
        err.message
    );
    assert!(wrong_name.paths().is_empty());
}

#[tokio::test]
async fn a_webhook_whose_ca_bundle_does_not_match_is_a_call_failure() {
    let server = TestApiServer::start().await.expect("server starts");
    let hooks = webhooks().await;
    let wrong_ca = b64(Certificates::generate().expect("certs").ca_pem.as_bytes());
    let mut hook = webhook(&hooks, "/deny", json!({}));
    hook["clientConfig"]["caBundle"] = json!(wrong_ca);
    validating(&server, "v", vec![hook]).await;
    let cms: Api<ConfigMap> = Api::namespaced(server.client(), "default");
    let err = api_error(create(&cms, "a").await);
    assert_eq!(err.code, 500, "untrusted certificate: {}", err.message);
}

#[tokio::test]
async fn a_denial_answers_with_the_webhook_code_and_message() {
    let server = TestApiServer::start().await.expect("server starts");
    let hooks = webhooks().await;
    validating(&server, "v", vec![webhook(&hooks, "/deny", json!({}))]).await;
    let cms: Api<ConfigMap> = Api::namespaced(server.client(), "default");
    let err = api_error(create(&cms, "a").await);
    assert_eq!(err.code, 403);
    assert_eq!(
        err.message,
        "admission webhook \"deny.hooks.example.com\" denied the request: no thanks"
    );
}

#[tokio::test]
async fn selectors_pick_namespaces_by_label_and_objects_by_their_new_or_old_labels() {
    let server = TestApiServer::start().await.expect("server starts");
    let hooks = webhooks().await;
    let team_x = json!({ "namespaceSelector": { "matchLabels": { "team": "x" } } });
    validating(&server, "ns", vec![webhook(&hooks, "/ns/deny", team_x)]).await;
    let cms: Api<ConfigMap> = Api::namespaced(server.client(), "default");
    create(&cms, "a")
        .await
        .expect("namespace selector does not match default");

    let server = TestApiServer::start().await.expect("server starts");
    let tracked = json!({
        "objectSelector": { "matchLabels": { "tracked": "yes" } },
        "rules": [{ "operations": ["UPDATE"], "apiGroups": [""], "apiVersions": ["v1"], "resources": ["configmaps"] }],
    });
    validating(&server, "obj", vec![webhook(&hooks, "/obj/allow", tracked)]).await;
    let cms: Api<ConfigMap> = Api::namespaced(server.client(), "default");
    let mut cm = cms
        .create(
            &PostParams::default(),
            &config_map("b", json!({ "tracked": "yes" })),
        )
        .await
        .expect("created");
    cm.metadata.labels = None;
    cms.replace("b", &PostParams::default(), &cm)
        .await
        .expect("replaced");
    assert_eq!(
        hooks.to("/obj/allow").len(),
        1,
        "removing the label still matches through oldObject"
    );
    let mut cm = cms.get("b").await.expect("get");
    cm.data = Some([("k".to_string(), "v".to_string())].into());
    cms.replace("b", &PostParams::default(), &cm)
        .await
        .expect("replaced");
    assert_eq!(
        hooks.to("/obj/allow").len(),
        1,
        "neither object carries the label"
    );
}

/// The condition the Pod credential injection plugin registers, on ConfigMaps here.
const INJECT_CONDITION: &str = "has(object.metadata.annotations) && 'systems.mikemiller.tech/inject-credentials' in object.metadata.annotations";

fn conditions(expressions: &[&str]) -> Value {
    let list: Vec<Value> = expressions
        .iter()
        .enumerate()
        .map(|(i, e)| json!({ "name": format!("condition-{i}"), "expression": e }))
        .collect();
    json!({ "matchConditions": list })
}

fn annotated(name: &str) -> ConfigMap {
    serde_json::from_value(json!({ "metadata": { "name": name, "annotations": {
        "systems.mikemiller.tech/inject-credentials": "db",
    } } }))
    .expect("config map")
}

#[tokio::test]
async fn a_webhook_is_called_only_when_all_its_match_conditions_are_true() {
    let server = TestApiServer::start().await.expect("server starts");
    let hooks = webhooks().await;
    mutating(
        &server,
        "inject",
        vec![webhook(
            &hooks,
            "/label/injected",
            conditions(&[INJECT_CONDITION]),
        )],
    )
    .await;
    let by_name = conditions(&["request.name == 'blocked'", "request.operation == 'CREATE'"]);
    validating(
        &server,
        "guard",
        vec![webhook(&hooks, "/guard/deny", by_name)],
    )
    .await;
    let cms: Api<ConfigMap> = Api::namespaced(server.client(), "default");

    let plain = create(&cms, "plain").await.expect("no webhook denies it");
    assert_eq!(
        labels(&plain),
        Vec::<String>::new(),
        "the mutating webhook was skipped"
    );
    assert!(hooks.to("/label/injected").is_empty());
    assert!(hooks.to("/guard/deny").is_empty());

    let marked = cms
        .create(&PostParams::default(), &annotated("marked"))
        .await
        .expect("created");
    assert_eq!(
        labels(&marked),
        ["injected"],
        "the annotated object reached the webhook"
    );
    assert_eq!(hooks.to("/label/injected").len(), 1);

    let err = api_error(create(&cms, "blocked").await);
    assert_eq!(err.code, 403);
    assert_eq!(
        err.message,
        "admission webhook \"guard-deny.hooks.example.com\" denied the request: no thanks"
    );
    assert_eq!(hooks.to("/guard/deny").len(), 1);
}

#[tokio::test]
async fn a_match_condition_that_does_not_compile_is_refused_at_create() {
    let server = TestApiServer::start().await.expect("server starts");
    let hooks = webhooks().await;
    let refused = |expressions: &[&str]| {
        try_register(
            &server,
            true,
            "m",
            vec![webhook(&hooks, "/allow", conditions(expressions))],
        )
    };
    let err = api_error(refused(&[INJECT_CONDITION, "object.metadata.name =="]).await);
    assert_eq!(err.code, 422);
    assert_eq!(err.reason, "Invalid");
    assert!(
        err.message.contains(
            "webhooks[0].matchConditions[1].expression: Invalid value: \"object.metadata.name ==\": compilation failed: ERROR: <input>:1:"
        ),
        "{}",
        err.message
    );
    let err = api_error(refused(&["object.metadata.name"]).await);
    assert!(
        err.message.contains("webhooks[0].matchConditions[0].expression: Invalid value: \"object.metadata.name\": must evaluate to bool"),
        "{}",
        err.message
    );
    let err =
        api_error(refused(&["authorizer.group('').resource('pods').check('get').allowed()"]).await);
    assert!(
        err.message
            .contains("'authorizer' is not supported by the test API server"),
        "{}",
        err.message
    );
    let twice = json!({ "matchConditions": [
        { "name": "same", "expression": "true" },
        { "name": "same", "expression": "true" },
    ] });
    let err =
        api_error(try_register(&server, false, "v", vec![webhook(&hooks, "/allow", twice)]).await);
    assert!(
        err.message
            .contains("webhooks[0].matchConditions[1].name: Duplicate value: \"same\""),
        "{}",
        err.message
    );
    assert!(
        configuration_api(&server, true)
            .get_opt("m")
            .await
            .expect("get")
            .is_none(),
        "nothing was stored"
    );
}

#[tokio::test]
async fn a_match_condition_that_fails_to_evaluate_follows_the_failure_policy() {
    // ConfigMaps without annotations have no `metadata.annotations`: indexing it fails.
    let failing = "object.metadata.annotations['team'] == 'x'";
    let server = TestApiServer::start().await.expect("server starts");
    let hooks = webhooks().await;
    validating(
        &server,
        "strict",
        vec![webhook(
            &hooks,
            "/strict/allow",
            conditions(&["true", failing]),
        )],
    )
    .await;
    let cms: Api<ConfigMap> = Api::namespaced(server.client(), "default");
    let err = api_error(create(&cms, "a").await);
    assert_eq!(err.code, 403);
    assert_eq!(err.reason, "Forbidden");
    assert_eq!(
        err.message,
        format!(
            "configmaps \"a\" is forbidden: expression '{failing}' resulted in error: no such key: annotations"
        )
    );
    assert!(
        hooks.to("/strict/allow").is_empty(),
        "the webhook is not called"
    );

    let server = TestApiServer::start().await.expect("server starts");
    let mut ignore = conditions(&[failing]);
    ignore["failurePolicy"] = json!("Ignore");
    validating(
        &server,
        "lenient",
        vec![webhook(&hooks, "/lenient/deny", ignore)],
    )
    .await;
    // A false condition skips the webhook even when another fails, whatever the policy.
    validating(
        &server,
        "mixed",
        vec![webhook(
            &hooks,
            "/mixed/deny",
            conditions(&[failing, "false"]),
        )],
    )
    .await;
    let cms: Api<ConfigMap> = Api::namespaced(server.client(), "default");
    create(&cms, "b")
        .await
        .expect("skipped under Ignore, and skipped by the false condition");
    assert!(hooks.to("/lenient/deny").is_empty());
    assert!(hooks.to("/mixed/deny").is_empty());
}
