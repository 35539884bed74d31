//! Hot swap of admission plugins while reviews arrive: the real operator
//! binary, its webhook server over HTTPS (reviews sent straight to it, as
//! the API server sends them) and the registration it keeps.

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use k8s_openapi::api::admissionregistration::v1::{
    MutatingWebhookConfiguration, ValidatingWebhookConfiguration,
};
use kube::Client;
use kube::api::Api;
use serde_json::{Value, json};
use support::cluster::{Cluster, Operator, eventually};
use support::fixtures::{self, Binding};
use support::webhooks::{self, OPERATOR_NAMESPACE};

const BINDING: &str = "greeting-admission";
const KEY: &str = "plugin.wasm";
const LIMIT: Duration = Duration::from_secs(60);

/// A Greeting plugin that reconciles and admits (the guest built for WIT
/// 0.1.0) bound from a ConfigMap, the operator serving its webhooks; the
/// operator, its webhook address and the CA it serves. The versions pushed
/// later keep its name, `example-greeting`, as a swap must.
async fn start(name: &str) -> (Cluster, Operator, String, String) {
    let cluster = Cluster::with_greetings(name, &[OPERATOR_NAMESPACE]).await;
    let client = cluster.client();
    push(&client, "compat-v0-1-plugin").await;
    Binding::named(BINDING)
        .source_config_map(OPERATOR_NAMESPACE, BINDING, KEY)
        .grants(json!({
            "read": [{"version": "v1", "kind": "ConfigMap"}],
            "children": [{"version": "v1", "kind": "ConfigMap"}],
        }))
        .create(&client)
        .await;
    let (operator, addr, ca) = webhooks::serve(&cluster, LIMIT).await;
    eventually("the first version answering reviews", LIMIT, || async {
        let mut connection = webhooks::Connection::open(&addr, &ca).await.ok()?;
        let (status, body) = connection
            .post(&format!("/mutate/{BINDING}"), &greeting_review())
            .await
            .ok()?;
        let review: Value = serde_json::from_slice(&body).ok()?;
        (status == 200 && review["response"]["allowed"] == true).then_some(())
    })
    .await;
    (cluster, operator, addr, ca)
}

async fn push(client: &Client, component: &str) {
    fixtures::put_component(
        client,
        OPERATOR_NAMESPACE,
        BINDING,
        KEY,
        &support::component(component),
    )
    .await;
}

fn greeting_review() -> Vec<u8> {
    let greeting = fixtures::greeting("default", "g", json!({"greeting": "hello"}));
    webhooks::review(
        "CREATE",
        &greeting,
        ("examples.systems.mikemiller.tech", "v1alpha1", "greetings"),
    )
}

/// Which version answered a mutation: the WIT 0.1.0 guest labels the
/// object with its contract version, the admission-only guest annotates it.
fn answered_by(response: &Value) -> &'static str {
    let patch = response["patch"].as_str().unwrap_or_default();
    let patch = base64::engine::general_purpose::STANDARD
        .decode(patch)
        .unwrap_or_default();
    let patch = String::from_utf8_lossy(&patch);
    match (patch.contains("\"0.1.0\""), patch.contains("admitted-by")) {
        (true, false) => "wit-0.1.0",
        (false, true) => "admission-only",
        _ => "unknown",
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_swap_under_200_reviews_per_second_fails_none_and_the_next_reviews_get_the_new_version() {
    let (cluster, _operator, addr, ca) = start("swap-under-load").await;
    let client = cluster.client();
    let body = Arc::new(greeting_review());
    let path = format!("/mutate/{BINDING}");
    let load = tokio::spawn({
        let (addr, ca) = (addr.clone(), ca.clone());
        async move { webhooks::paced(&addr, &ca, &path, body, 200, Duration::from_secs(12), 8).await }
    });
    tokio::time::sleep(Duration::from_secs(3)).await;
    let pushed = Instant::now();
    push(&client, "admission-only-plugin").await;
    let mut samples = load.await.unwrap();
    samples.sort_by_key(|s| s.due);

    let failed: Vec<_> = samples
        .iter()
        .filter(|s| !s.response.as_ref().is_ok_and(|r| r["allowed"] == true))
        .map(|s| format!("{:?}", s.response))
        .collect();
    assert!(
        failed.is_empty(),
        "{} of {} reviews failed during the swap, e.g. {:?}",
        failed.len(),
        samples.len(),
        &failed[..failed.len().min(3)]
    );
    assert!(samples.len() >= 2_000, "{} reviews sent", samples.len());
    let versions: Vec<&str> = samples
        .iter()
        .map(|s| answered_by(s.response.as_ref().unwrap()))
        .collect();
    assert!(!versions.contains(&"unknown"), "{versions:?}");
    let first_new = samples
        .iter()
        .zip(&versions)
        .find(|(_, v)| **v == "admission-only")
        .map(|(s, _)| s.due)
        .expect("the new version answered no review");
    assert!(
        first_new > pushed,
        "the new version answered before the push"
    );
    // Reviews in flight at the swap finish on the old version; every
    // review that started later is answered by the new one.
    let late_old = samples
        .iter()
        .zip(&versions)
        .filter(|(s, v)| {
            **v == "wit-0.1.0" && s.due > first_new + s.latency.max(Duration::from_millis(100))
        })
        .count();
    assert_eq!(late_old, 0, "old-version answers after the swap");
    let old = versions.iter().filter(|v| **v == "wit-0.1.0").count();
    assert!(
        old > 0 && old < samples.len(),
        "{old} old answers of {}",
        samples.len()
    );
    eprintln!(
        "swap under 200 reviews/s: {} reviews, 0 failed, the new version answering {:?} after the push",
        samples.len(),
        first_new - pushed
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_without_admission_swapped_in_removes_the_webhook_configurations() {
    let (cluster, _operator, _addr, _ca) = start("swap-to-no-admission").await;
    let client = cluster.client();
    let validating: Api<ValidatingWebhookConfiguration> = Api::all(client.clone());
    let mutating: Api<MutatingWebhookConfiguration> = Api::all(client.clone());
    eventually("the example's configurations", LIMIT, || async {
        validating.get_opt(BINDING).await.ok()??;
        mutating.get_opt(BINDING).await.ok()??;
        Some(())
    })
    .await;

    push(&client, "example-plugin").await;
    eventually("the configurations to go", LIMIT, || async {
        let gone = validating.get_opt(BINDING).await.ok()?.is_none()
            && mutating.get_opt(BINDING).await.ok()?.is_none();
        gone.then_some(())
    })
    .await;
    // The Greeting reconciler keeps serving: its objects still converge,
    // and creating one no longer calls a webhook that is not there.
    fixtures::create_greeting(&client, "after", "hello").await;
    eventually("the Greeting reconciled", LIMIT, || async {
        let greeting = fixtures::greetings(&client, "default")
            .get("after")
            .await
            .ok()?;
        greeting.data["status"]["conditions"]
            .as_array()?
            .iter()
            .any(|c| c["type"] == "Ready" && c["status"] == "True")
            .then_some(())
    })
    .await;
}
