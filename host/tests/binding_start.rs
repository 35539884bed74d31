//! End to end: a binding whose controller cannot start says so, and starts
//! by itself once it can. The real `wasm-operator` binary against the test
//! API server, with the real example plugin loaded from a ConfigMap.

mod support;

use std::time::{Duration, Instant};

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, ListParams, PostParams};
use serde_json::{Value, json};
use support::cluster::{self, Cluster, eventually, metric, scrape};
use support::fixtures::{self, Binding, greetings};
use wasm_operator::crd::{ReconcilerPlugin, ReconcilerPluginStatus};

const OPERATOR_NAMESPACE: &str = "wasm-operator";
const BINDING: &str = "greeting";

/// The example's `Greeting` CRD, as `plugins/example/greeting-crd.yaml`
/// has it.
fn greeting_crd() -> CustomResourceDefinition {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../plugins/example/greeting-crd.yaml"
    ))
    .expect("reading the Greeting CRD");
    serde_saphyr::from_str(&text).expect("the Greeting CRD is a CustomResourceDefinition")
}

/// The condition `type_` of `status`, if any.
fn condition<'a>(
    status: &'a ReconcilerPluginStatus,
    type_: &str,
) -> Option<&'a k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition> {
    status.conditions.iter().find(|c| c.type_ == type_)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_binding_created_before_its_crd_is_not_ready_until_the_crd_appears_then_serves_without_a_restart()
 {
    // Only the operator's own CRD: the API server does not serve Greetings.
    let binding_crd = wasm_operator::crd::all()
        .remove("reconcilerplugins.yaml")
        .expect("the ReconcilerPlugin CRD");
    let bed = Cluster::start(
        "binding-start",
        vec![serde_json::to_value(binding_crd).unwrap()],
        &[OPERATOR_NAMESPACE, "default"],
    )
    .await;
    let client = bed.client();
    fixtures::put_component(
        &client,
        OPERATOR_NAMESPACE,
        "example-plugin",
        "plugin.wasm",
        &support::component("example-plugin"),
    )
    .await;
    Binding::named(BINDING)
        .source_config_map(OPERATOR_NAMESPACE, "example-plugin", "plugin.wasm")
        .settings(json!({"defaultAudience": "operators"}))
        .grants(json!({"read": [{"version": "v1", "kind": "ConfigMap"}], "children": [{"version": "v1", "kind": "ConfigMap"}]}))
        .create(&client)
        .await;
    let operator = bed.start_operator(&["--leader-election=false", "--resync-seconds", "3600"]);
    let pid = operator.pid();
    let bindings = Api::<ReconcilerPlugin>::all(client.clone());
    let status = || async {
        bindings
            .get(BINDING)
            .await
            .ok()
            .and_then(|b| b.status)
            .unwrap_or_default()
    };

    // Not ready, and saying which kind is missing and what to do.
    let not_ready = eventually(
        "Ready=False ControllerNotStarted",
        Duration::from_secs(30),
        || async {
            let status = status().await;
            let ready = condition(&status, "Ready")?.clone();
            (ready.status == "False" && ready.reason == "ControllerNotStarted")
                .then_some((status, ready))
        },
    )
    .await;
    let (first, ready) = not_ready;
    println!("not ready: {}", ready.message);
    for fragment in [
        "examples.systems.mikemiller.tech/v1alpha1/Greeting",
        "CustomResourceDefinition",
    ] {
        assert!(ready.message.contains(fragment), "{fragment}: {ready:?}");
    }
    let loaded = condition(&first, "Loaded").unwrap();
    assert_eq!(
        loaded.status, "True",
        "the version itself loaded: {loaded:?}"
    );
    assert!(first.digest.is_some(), "{first:?}");
    assert!(
        first
            .last_error
            .as_deref()
            .unwrap_or_default()
            .contains("Greeting"),
        "{first:?}"
    );
    let events = cluster::events(&client, "default");
    let warning = eventually(
        "a Warning event ControllerNotStarted",
        Duration::from_secs(20),
        || async {
            let list = events.list(&ListParams::default()).await.ok()?;
            list.items.into_iter().find(|e| {
                e.data["type"] == "Warning"
                    && e.data["reason"] == "ControllerNotStarted"
                    && e.data["regarding"]["name"] == BINDING
            })
        },
    )
    .await;
    assert!(
        warning.data["note"]
            .as_str()
            .unwrap_or_default()
            .contains("Greeting"),
        "{:?}",
        warning.data
    );
    let failures = |text: &str| start_failures(text, "KindNotServed");
    let counted = eventually(
        "the start failure to be counted",
        Duration::from_secs(10),
        || async {
            let text = scrape(&operator.http).await;
            let n = failures(&text);
            (n > 0.0).then_some(n)
        },
    )
    .await;
    // Retried with a back-off: a few attempts, not a busy loop.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let text = scrape(&operator.http).await;
    let retried = failures(&text);
    assert!(
        retried > counted && retried <= counted + 3.0,
        "failed starts: {counted} then {retried} two seconds later\n{text}"
    );

    // The CRD appears: the controller starts by itself.
    let applied = Instant::now();
    Api::<CustomResourceDefinition>::all(client.clone())
        .create(&PostParams::default(), &greeting_crd())
        .await
        .expect("applying the Greeting CRD");
    let ready = eventually(
        "Ready=True Serving after the CRD",
        Duration::from_secs(20),
        || async {
            let status = status().await;
            let ready = condition(&status, "Ready")?.clone();
            (ready.status == "True" && ready.reason == "Serving").then_some(ready)
        },
    )
    .await;
    let took = applied.elapsed();
    println!(
        "ready {took:?} after the CRD was applied: {}",
        ready.message
    );
    assert!(took < Duration::from_secs(10), "took {took:?}");
    assert!(status().await.last_error.is_none());

    // And it reconciles.
    fixtures::create_greeting(&client, "hello", "Hello").await;
    let config_maps =
        Api::<k8s_openapi::api::core::v1::ConfigMap>::namespaced(client.clone(), "default");
    let child = eventually(
        "the Greeting's child ConfigMap",
        Duration::from_secs(20),
        || async { config_maps.get_opt("hello-greeting").await.ok().flatten() },
    )
    .await;
    assert_eq!(child.data.as_ref().unwrap()["message"], "Hello, operators!");
    let api = greetings(&client, "default");
    eventually(
        "the Greeting's status Ready",
        Duration::from_secs(20),
        || async {
            let g = api.get("hello").await.ok()?;
            let conditions: &Vec<Value> = g.data["status"]["conditions"].as_array()?;
            conditions
                .iter()
                .any(|c| c["type"] == "Ready" && c["status"] == "True")
                .then_some(())
        },
    )
    .await;
    eventually(
        "a Normal event ControllerStarted",
        Duration::from_secs(20),
        || async {
            let list = events.list(&ListParams::default()).await.ok()?;
            list.items
                .iter()
                .any(|e| e.data["type"] == "Normal" && e.data["reason"] == "ControllerStarted")
                .then_some(())
        },
    )
    .await;

    // The same operator process did all of it: its counts go on.
    let text = scrape(&operator.http).await;
    assert!(failures(&text) >= retried, "{text}");
    assert_eq!(operator.pid(), pid);
}

/// The failed starts of the binding's controller for the Greeting kind
/// with `reason`, as the operator's metrics `text` counts them.
fn start_failures(text: &str, reason: &str) -> f64 {
    let fragments = [
        format!("binding=\"{BINDING}\""),
        "plugin=\"example-greeting\"".to_owned(),
        "kind=\"examples.systems.mikemiller.tech/v1alpha1/Greeting\"".to_owned(),
        format!("reason=\"{reason}\""),
    ];
    text.lines()
        .filter(|l| l.starts_with("wasm_operator_controller_start_failures_total{"))
        .filter(|l| fragments.iter().all(|f| l.contains(f.as_str())))
        .map(|l| metric(l, "wasm_operator_controller_start_failures_total"))
        .sum()
}
