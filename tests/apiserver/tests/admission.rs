//! Admission webhooks called over HTTPS: mutation, denial messages, selectors,
//! `failurePolicy` and `timeoutSeconds`.

use std::convert::Infallible;
use std::time::Duration;

use base64::Engine;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, DynamicObject, GroupVersionKind, PostParams};
use serde_json::{Value, json};
use test_apiserver::{Certificates, TestApiServer};

/// A webhook server: `/mutate` adds a label, `/deny` refuses with 403, `/slow` never answers in time.
async fn webhook_server() -> (String, String) {
    let certs = Certificates::generate().expect("certificates");
    let acceptor = tokio_rustls::TlsAcceptor::from(certs.server_config().expect("tls config"));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("https://{}", listener.local_addr().expect("addr"));
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                continue;
            };
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let service = service_fn(
                    |request: http::Request<hyper::body::Incoming>| async move {
                        let path = request.uri().path().to_string();
                        let body = request
                            .into_body()
                            .collect()
                            .await
                            .expect("body")
                            .to_bytes();
                        let review: Value = serde_json::from_slice(&body).expect("review");
                        let uid = review["request"]["uid"].clone();
                        let response = match path.as_str() {
                            "/mutate" => {
                                let patch = json!([{"op": "add", "path": "/metadata/labels", "value": {"mutated": "yes"}}]);
                                let encoded = base64::engine::general_purpose::STANDARD
                                    .encode(patch.to_string());
                                json!({"uid": uid, "allowed": true, "patchType": "JSONPatch", "patch": encoded})
                            }
                            "/deny" => {
                                json!({"uid": uid, "allowed": false, "status": {"code": 403, "message": "no thanks"}})
                            }
                            _ => {
                                tokio::time::sleep(Duration::from_secs(5)).await;
                                json!({"uid": uid, "allowed": true})
                            }
                        };
                        let reply = json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": response});
                        Ok::<_, Infallible>(http::Response::new(Full::new(Bytes::from(
                            reply.to_string(),
                        ))))
                    },
                );
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tls), service)
                    .await;
            });
        }
    });
    (
        url,
        base64::engine::general_purpose::STANDARD.encode(&certs.ca_pem),
    )
}

fn webhook(name: &str, url: &str, ca: &str, extra: Value) -> Value {
    let mut hook = json!({
        "name": name,
        "clientConfig": { "url": url, "caBundle": ca },
        "rules": [{ "operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"], "resources": ["configmaps"], "scope": "Namespaced" }],
        "sideEffects": "None",
        "admissionReviewVersions": ["v1"],
        "timeoutSeconds": 1,
    });
    if let (Some(hook), Some(extra)) = (hook.as_object_mut(), extra.as_object()) {
        hook.extend(extra.clone());
    }
    hook
}

async fn register(server: &TestApiServer, kind: &str, plural: &str, hooks: Vec<Value>) {
    let gvk = GroupVersionKind::gvk("admissionregistration.k8s.io", "v1", kind);
    let ar = kube::api::ApiResource::from_gvk_with_plural(&gvk, plural);
    let api: Api<DynamicObject> = Api::all_with(server.client(), &ar);
    let config: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "admissionregistration.k8s.io/v1", "kind": kind, "metadata": { "name": format!("{plural}-test") }, "webhooks": hooks,
    }))
    .expect("configuration");
    api.create(&PostParams::default(), &config)
        .await
        .expect("webhook configuration created");
}

fn config_map(name: &str, labels: Value) -> ConfigMap {
    serde_json::from_value(json!({ "metadata": { "name": name, "labels": labels } }))
        .expect("config map")
}

fn api_error(result: Result<ConfigMap, kube::Error>) -> kube::core::Status {
    match result {
        Err(kube::Error::Api(status)) => *status,
        other => panic!("expected an API error, got {other:?}"),
    }
}

#[tokio::test]
async fn mutating_webhooks_patch_before_validating_webhooks_see_the_object() {
    let server = TestApiServer::start().await.expect("server starts");
    let (url, ca) = webhook_server().await;
    let only_asked = json!({ "objectSelector": { "matchLabels": { "mutate": "please" } } });
    register(
        &server,
        "MutatingWebhookConfiguration",
        "mutatingwebhookconfigurations",
        vec![webhook(
            "mutate.example.com",
            &format!("{url}/mutate"),
            &ca,
            only_asked,
        )],
    )
    .await;
    let cms: Api<ConfigMap> = Api::namespaced(server.client(), "default");
    let untouched = cms
        .create(&PostParams::default(), &config_map("a", json!({})))
        .await
        .expect("created");
    assert!(
        untouched.metadata.labels.unwrap_or_default().is_empty(),
        "object selector skipped the webhook"
    );
    let mutated = cms
        .create(
            &PostParams::default(),
            &config_map("b", json!({"mutate": "please"})),
        )
        .await
        .expect("created");
    let labels = mutated.metadata.labels.unwrap_or_default();
    assert_eq!(labels.get("mutated").map(String::as_str), Some("yes"));
    assert!(!labels.contains_key("mutate"));

    let on_mutated = json!({ "objectSelector": { "matchLabels": { "mutated": "yes" } } });
    register(
        &server,
        "ValidatingWebhookConfiguration",
        "validatingwebhookconfigurations",
        vec![webhook(
            "deny.example.com",
            &format!("{url}/deny"),
            &ca,
            on_mutated,
        )],
    )
    .await;
    let err = api_error(
        cms.create(
            &PostParams::default(),
            &config_map("c", json!({"mutate": "please"})),
        )
        .await,
    );
    assert_eq!(
        err.code, 403,
        "the validating webhook saw the mutated labels: {}",
        err.message
    );
    assert!(cms.get_opt("c").await.expect("get").is_none());
}

#[tokio::test]
async fn a_denial_answers_with_the_webhook_code_and_message() {
    let server = TestApiServer::start().await.expect("server starts");
    let (url, ca) = webhook_server().await;
    register(
        &server,
        "ValidatingWebhookConfiguration",
        "validatingwebhookconfigurations",
        vec![webhook(
            "deny.example.com",
            &format!("{url}/deny"),
            &ca,
            json!({}),
        )],
    )
    .await;
    let cms: Api<ConfigMap> = Api::namespaced(server.client(), "default");
    let err = api_error(
        cms.create(&PostParams::default(), &config_map("a", json!({})))
            .await,
    );
    assert_eq!(err.code, 403);
    assert_eq!(
        err.message,
        "admission webhook \"deny.example.com\" denied the request: no thanks"
    );
    let other_ns = json!({ "namespaceSelector": { "matchLabels": { "team": "x" } } });
    let server2 = TestApiServer::start().await.expect("server starts");
    register(
        &server2,
        "ValidatingWebhookConfiguration",
        "validatingwebhookconfigurations",
        vec![webhook(
            "deny.example.com",
            &format!("{url}/deny"),
            &ca,
            other_ns,
        )],
    )
    .await;
    let cms2: Api<ConfigMap> = Api::namespaced(server2.client(), "default");
    cms2.create(&PostParams::default(), &config_map("a", json!({})))
        .await
        .expect("namespace selector does not match default");
}

#[tokio::test]
async fn failure_policy_and_timeout_decide_what_a_slow_webhook_does() {
    let server = TestApiServer::start().await.expect("server starts");
    let (url, ca) = webhook_server().await;
    let slow = format!("{url}/slow");
    register(&server, "ValidatingWebhookConfiguration", "validatingwebhookconfigurations", vec![
        webhook("ignore.example.com", &slow, &ca, json!({ "failurePolicy": "Ignore" })),
        webhook("fail.example.com", &slow, &ca, json!({ "failurePolicy": "Fail", "objectSelector": { "matchLabels": { "strict": "true" } } })),
    ])
    .await;
    let cms: Api<ConfigMap> = Api::namespaced(server.client(), "default");
    let started = std::time::Instant::now();
    cms.create(&PostParams::default(), &config_map("a", json!({})))
        .await
        .expect("ignored failure admits");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "timeoutSeconds is honoured"
    );
    let err = api_error(
        cms.create(
            &PostParams::default(),
            &config_map("b", json!({"strict": "true"})),
        )
        .await,
    );
    assert_eq!(err.code, 500);
    assert!(
        err.message
            .contains("failed calling webhook \"fail.example.com\""),
        "{}",
        err.message
    );
}

#[tokio::test]
async fn a_webhook_whose_ca_bundle_does_not_match_is_a_call_failure() {
    let server = TestApiServer::start().await.expect("server starts");
    let (url, _) = webhook_server().await;
    let wrong_ca = base64::engine::general_purpose::STANDARD
        .encode(Certificates::generate().expect("certs").ca_pem);
    register(
        &server,
        "ValidatingWebhookConfiguration",
        "validatingwebhookconfigurations",
        vec![webhook(
            "deny.example.com",
            &format!("{url}/deny"),
            &wrong_ca,
            json!({}),
        )],
    )
    .await;
    let cms: Api<ConfigMap> = Api::namespaced(server.client(), "default");
    let err = api_error(
        cms.create(&PostParams::default(), &config_map("a", json!({})))
            .await,
    );
    assert_eq!(err.code, 500, "untrusted certificate: {}", err.message);
}
