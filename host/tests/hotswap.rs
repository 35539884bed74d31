//! End to end: hot-swapping plugins through ConfigMaps. The real
//! `wasm-operator` binary runs against the test API server with real
//! components from `target/plugins/` (build them with
//! `scripts/build-plugins.sh`): the example plugin as v1, `swap-v2-plugin`
//! as v2, and components the operator must refuse.
//!
//! Swap timings are printed (`cargo test --release -p wasm-operator --test
//! hotswap -- --nocapture`), not asserted: machines are noisy.

mod support;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::api::{Api, DynamicObject, ListParams, Patch, PatchParams};
use kube::runtime::watcher;
use kube::{Client, ResourceExt};
use serde_json::{Value, json};
use support::cluster::{Cluster, Operator, eventually, metric, scrape, try_scrape};
use support::fixtures::{self, Binding};
use wasm_operator::crd::{ReconcilerPlugin, ReconcilerPluginStatus};
use wasm_operator::runtime::PluginDigest;

const OPERATOR_NAMESPACE: &str = "wasm-operator";
/// The binding, and the ConfigMap holding its components.
const BINDING: &str = "greeting";
/// The name the example plugin gives itself (both versions).
const PLUGIN: &str = "example-greeting";
const CONFIG_MAP: &str = "greeting-plugin";
const KEY: &str = "plugin.wasm";
/// Long enough for a compile on a busy machine.
const LIMIT: Duration = Duration::from_secs(60);

fn v1() -> Vec<u8> {
    support::component("example-plugin")
}

fn v2() -> Vec<u8> {
    support::component("swap-v2-plugin")
}

fn digest(bytes: &[u8]) -> String {
    PluginDigest::of(bytes).to_string()
}

/// The same component with another digest: a custom section appended (a
/// component may carry custom sections anywhere between its sections), so
/// that each swap compiles afresh instead of hitting the cache.
fn variant(component: &[u8], n: usize) -> Vec<u8> {
    let name = b"wasm-operator-hotswap-test";
    let payload = n.to_string().into_bytes();
    let mut body = leb128(name.len());
    body.extend_from_slice(name);
    body.extend_from_slice(&payload);
    let mut bytes = component.to_vec();
    bytes.push(0); // custom section id
    bytes.extend(leb128(body.len()));
    bytes.extend(body);
    bytes
}

fn leb128(mut value: usize) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let byte = (value & 0x7f) as u8;
        value >>= 7;
        if value == 0 {
            out.push(byte);
            return out;
        }
        out.push(byte | 0x80);
    }
}

/// A test API server with the Greeting and ReconcilerPlugin CRDs, a plugin
/// cache of its own (so compile and cache hits are the test's own), and
/// the operator when started.
struct Bed {
    cluster: Cluster,
    cache: PathBuf,
}

impl Bed {
    async fn start(name: &str) -> Self {
        let cluster =
            Cluster::with_greetings(&format!("hotswap-{name}"), &[OPERATOR_NAMESPACE]).await;
        let cache = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("hotswap-cache-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&cache);
        Self { cluster, cache }
    }

    /// Starts with v1 in the ConfigMap and a binding pointing at it.
    async fn start_with_v1(name: &str) -> Self {
        let bed = Self::start(name).await;
        put_component(&bed.client(), KEY, &v1()).await;
        bed.bind().await;
        bed
    }

    fn client(&self) -> Client {
        self.cluster.client()
    }

    async fn bind(&self) {
        Binding::named(BINDING)
            .source_config_map(OPERATOR_NAMESPACE, CONFIG_MAP, KEY)
            .settings(json!({"defaultAudience": "operators"}))
            .grants(json!({
                "read": [{"version": "v1", "kind": "ConfigMap"}],
                "children": [{"version": "v1", "kind": "ConfigMap"}],
            }))
            .create(&self.client())
            .await;
    }

    fn start_operator(&self) -> Operator {
        self.cluster.start_operator(&[
            "--leader-election=false",
            "--resync-seconds",
            "3600",
            "--plugin-cache-dir",
            self.cache.to_str().unwrap(),
        ])
    }

    async fn status(&self) -> ReconcilerPluginStatus {
        Api::<ReconcilerPlugin>::all(self.client())
            .get(BINDING)
            .await
            .unwrap()
            .status
            .unwrap_or_default()
    }

    /// Waits until the binding reports `digest` in service and loaded.
    async fn wait_serving(&self, digest: &str) -> ReconcilerPluginStatus {
        let api = Api::<ReconcilerPlugin>::all(self.client());
        eventually(&format!("{digest} in service"), LIMIT, || async {
            let status = api.get(BINDING).await.ok()?.status?;
            let loaded = condition(&status, "Loaded")?.status == "True";
            (loaded && status.digest.as_deref() == Some(digest)).then_some(status)
        })
        .await
    }
}

/// Writes `bytes` under `key` of the plugin ConfigMap (created if needed),
/// leaving the other keys alone.
async fn put_component(client: &Client, key: &str, bytes: &[u8]) {
    fixtures::put_component(client, OPERATOR_NAMESPACE, CONFIG_MAP, key, bytes).await;
}

fn condition<'a>(status: &'a ReconcilerPluginStatus, type_: &str) -> Option<&'a Condition> {
    status.conditions.iter().find(|c| c.type_ == type_)
}

fn greetings(client: &Client) -> Api<DynamicObject> {
    fixtures::greetings(client, "default")
}

async fn set_greeting(client: &Client, name: &str, greeting: &str) {
    greetings(client)
        .patch(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"greeting": greeting}})),
        )
        .await
        .unwrap();
}

/// Waits until the child of Greeting `name` says `message` and its status
/// names `digest` for its current generation.
async fn wait_reconciled(client: &Client, name: &str, message: &str, digest: &str) {
    let config_maps = Api::<ConfigMap>::namespaced(client.clone(), "default");
    let api = greetings(client);
    eventually(
        &format!("{name} to say {message:?} by {digest}"),
        LIMIT,
        || async {
            let child = config_maps
                .get_opt(&format!("{name}-greeting"))
                .await
                .ok()??;
            let g = api.get(name).await.ok()?;
            let status = &g.data["status"];
            let done = child.data.as_ref()?.get("message")? == message
                && status["pluginDigest"] == digest
                && status["observedGeneration"] == json!(g.metadata.generation)
                && status["conditions"]
                    .as_array()?
                    .iter()
                    .any(|c| c["type"] == "Ready" && c["status"] == "True");
            done.then_some(())
        },
    )
    .await;
}

/// Asserts that no reconcile failed, by the operator's own counters.
fn assert_no_failed_reconcile(metrics: &str) {
    assert_eq!(
        metric(metrics, "wasm_operator_reconcile_errors_total"),
        0.0,
        "a reconcile failed:\n{metrics}"
    );
    for outcome in ["error", "refused"] {
        let failed: f64 = metrics
            .lines()
            .filter(|l| {
                l.starts_with("wasm_operator_reconciles_total")
                    && l.contains(&format!("outcome=\"{outcome}\""))
            })
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum();
        assert_eq!(failed, 0.0, "reconciles ended {outcome}:\n{metrics}");
    }
    assert!(
        metric(metrics, "wasm_operator_reconciles_total") > 0.0,
        "{metrics}"
    );
}

/// Puts `bytes` under the binding's key and returns how long it took from
/// that write to the first Greeting status written by the new version.
async fn time_swap(client: &Client, bytes: &[u8]) -> Duration {
    let digest = digest(bytes);
    let mut events = watcher(greetings(client), watcher::Config::default()).boxed();
    loop {
        match events.next().await.expect("the Greeting watch ended") {
            Ok(watcher::Event::InitDone) => break,
            Ok(_) => {}
            Err(error) => panic!("watching Greetings failed: {error}"),
        }
    }
    let started = Instant::now();
    put_component(client, KEY, bytes).await;
    let first = async {
        while let Some(event) = events.next().await {
            if let Ok(watcher::Event::Apply(g)) = event
                && g.data["status"]["pluginDigest"] == digest
            {
                return started.elapsed();
            }
        }
        panic!("the Greeting watch ended");
    };
    tokio::time::timeout(LIMIT, first)
        .await
        .unwrap_or_else(|_| panic!("no Greeting was reconciled by {digest} within {LIMIT:?}"))
}

/// Patches every Greeting's greeting in turn until `stop` is set, and
/// returns the last greeting of each.
async fn keep_updating(
    client: Client,
    names: Vec<String>,
    stop: Arc<AtomicBool>,
) -> (HashMap<String, String>, usize) {
    let mut last = HashMap::new();
    let mut updates = 0;
    while !stop.load(Ordering::Relaxed) {
        for name in &names {
            updates += 1;
            let greeting = format!("Hello-{updates}");
            set_greeting(&client, name, &greeting).await;
            last.insert(name.clone(), greeting);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    (last, updates)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let rank = ((sorted.len() as f64) * p).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn swapping_v1_for_v2_while_objects_change_fails_no_reconcile_and_every_object_ends_on_v2() {
    const OBJECTS: usize = 6;
    const MORE_SWAPS: usize = 8;
    let bed = Bed::start_with_v1("under-load").await;
    let operator = bed.start_operator();
    let client = bed.client();
    let (v1, v2) = (v1(), v2());
    bed.wait_serving(&digest(&v1)).await;
    let names: Vec<String> = (0..OBJECTS).map(|i| format!("busy-{i}")).collect();
    for name in &names {
        fixtures::create_greeting(&client, name, "Hello").await;
    }
    for name in &names {
        wait_reconciled(&client, name, "Hello, operators!", &digest(&v1)).await;
    }

    // v1 → v2 while every object keeps changing.
    let stop = Arc::new(AtomicBool::new(false));
    let updater = tokio::spawn(keep_updating(
        client.clone(),
        names.clone(),
        Arc::clone(&stop),
    ));
    tokio::time::sleep(Duration::from_millis(500)).await;
    let first = time_swap(&client, &v2).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, Ordering::Relaxed);
    let (last, updates) = updater.await.unwrap();
    println!(
        "v1 -> v2 ({} bytes) under {updates} spec updates: first reconcile by v2 {first:?} after the ConfigMap update",
        v2.len()
    );
    for name in &names {
        let message = format!("{}, operators! (v2)", last[name]);
        wait_reconciled(&client, name, &message, &digest(&v2)).await;
    }
    let metrics = scrape(&operator.http).await;
    assert_no_failed_reconcile(&metrics);
    assert_eq!(
        metric(
            &metrics,
            &format!(
                "wasm_operator_plugin_swaps_total{{binding=\"{BINDING}\",plugin=\"{PLUGIN}\"}}"
            )
        ),
        1.0,
        "{metrics}"
    );
    let status = bed.wait_serving(&digest(&v2)).await;
    assert_eq!(status.plugin_version.as_deref(), Some("0.2.0"));
    assert_eq!(status.rejected_digest, None);
    assert_eq!(condition(&status, "Ready").unwrap().status, "True");

    // More swaps, alternating v1 and v2, each a fresh compile, for a p99.
    let mut latencies = vec![first];
    for n in 1..=MORE_SWAPS {
        let (base, suffix) = if n % 2 == 1 {
            (&v1, "")
        } else {
            (&v2, " (v2)")
        };
        let bytes = variant(base, n);
        latencies.push(time_swap(&client, &bytes).await);
        for name in &names {
            let message = format!("{}, operators!{suffix}", last[name]);
            wait_reconciled(&client, name, &message, &digest(&bytes)).await;
        }
    }
    let metrics = scrape(&operator.http).await;
    assert_no_failed_reconcile(&metrics);
    assert_eq!(
        metric(&metrics, "wasm_operator_plugin_swaps_total"),
        (1 + MORE_SWAPS) as f64
    );
    let mut sorted = latencies.clone();
    sorted.sort();
    println!(
        "ConfigMap update -> first reconcile by the new version, {} swaps of {}-{} KB components (fresh compiles): \
         p50 {:?}, p90 {:?}, p99 {:?}, max {:?}; all: {latencies:?}",
        sorted.len(),
        v2.len() / 1000,
        v1.len() / 1000,
        percentile(&sorted, 0.5),
        percentile(&sorted, 0.9),
        percentile(&sorted, 0.99),
        sorted[sorted.len() - 1],
    );
    let series =
        |name: &str| format!("wasm_operator_{name}{{binding=\"{BINDING}\",plugin=\"{PLUGIN}\"");
    println!(
        "operator side: swap latency mean {:.0} ms over {} swaps; compile mean {:.0} ms over {} loads",
        1000.0 * metric(&metrics, &series("plugin_swap_latency_seconds_sum"))
            / metric(&metrics, &series("plugin_swap_latency_seconds_count")),
        metric(&metrics, &series("plugin_swap_latency_seconds_count")),
        1000.0 * metric(&metrics, &series("plugin_load_duration_seconds_sum"))
            / metric(&metrics, &series("plugin_load_duration_seconds_count")),
        metric(&metrics, &series("plugin_load_duration_seconds_count")),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_bad_version_is_refused_with_its_own_reason_while_v1_keeps_serving() {
    let bed = Bed::start_with_v1("refusals").await;
    let operator = bed.start_operator();
    let client = bed.client();
    let v1 = v1();
    bed.wait_serving(&digest(&v1)).await;
    fixtures::create_greeting(&client, "kept", "Hello").await;
    wait_reconciled(&client, "kept", "Hello, operators!", &digest(&v1)).await;

    let cases = [
        (
            "a corrupt file",
            v1[..v1.len() / 2].to_vec(),
            "MalformedComponent",
            "malformed component",
        ),
        (
            "a core module",
            b"\0asm\x01\0\0\0".to_vec(),
            "NotAComponent",
            "a core WebAssembly module",
        ),
        (
            "a component for WIT 1.0.0",
            support::component("hostile-wit-v1"),
            "IncompatibleWit",
            "wasm-operator:plugin@1.0.0",
        ),
        (
            "a component for another kind",
            support::component("hostile-other-kind"),
            "TargetKindChanged",
            "create a new ReconcilerPlugin",
        ),
        (
            "a component whose settings schema rejects the settings",
            support::component("hostile-strict-settings"),
            "InvalidSettings",
            "'defaultAudience' was unexpected",
        ),
        (
            "another plugin",
            support::component("hostile-panic"),
            "PluginRenamed",
            "hostile-panic",
        ),
    ];
    let events = support::cluster::events(&client, "default");
    for (n, (what, bytes, reason, fragment)) in cases.iter().enumerate() {
        put_component(&client, KEY, bytes).await;
        let refused = digest(bytes);
        let status = eventually(&format!("{what} to be refused"), LIMIT, || async {
            let status = bed.status().await;
            (status.rejected_digest.as_deref() == Some(refused.as_str())).then_some(status)
        })
        .await;
        let loaded = condition(&status, "Loaded").unwrap();
        assert_eq!(
            (loaded.status.as_str(), loaded.reason.as_str()),
            ("False", *reason),
            "{what}: {loaded:?}"
        );
        assert!(loaded.message.contains(fragment), "{what}: {loaded:?}");
        assert!(
            loaded
                .message
                .contains(&format!("{} keeps serving", digest(&v1))),
            "{what}: {loaded:?}"
        );
        assert_eq!(condition(&status, "Ready").unwrap().status, "True");
        assert_eq!(status.digest, Some(digest(&v1)), "{what}");
        assert!(
            status.last_error.as_deref().unwrap().contains(fragment),
            "{status:?}"
        );
        println!("{what}: refused with {reason}: {}", loaded.message);
        eventually(&format!("a Warning event {reason}"), LIMIT, || async {
            let list = events.list(&ListParams::default()).await.ok()?;
            list.items
                .iter()
                .any(|e| {
                    e.data["type"] == "Warning"
                        && e.data["reason"] == *reason
                        && e.data["regarding"]["name"] == BINDING
                })
                .then_some(())
        })
        .await;
        // v1 keeps serving.
        let greeting = format!("Hello-{n}");
        set_greeting(&client, "kept", &greeting).await;
        wait_reconciled(
            &client,
            "kept",
            &format!("{greeting}, operators!"),
            &digest(&v1),
        )
        .await;
    }
    let metrics = scrape(&operator.http).await;
    for (_, _, reason, _) in &cases {
        assert_eq!(
            metric(
                &metrics,
                &format!(
                    "wasm_operator_plugin_rejections_total{{binding=\"{BINDING}\",plugin=\"{PLUGIN}\",reason=\"{reason}\"}}"
                )
            ),
            1.0,
            "{metrics}"
        );
    }
    assert_eq!(metric(&metrics, "wasm_operator_plugin_swaps_total"), 0.0);
    assert_no_failed_reconcile(&metrics);

    // Putting v1 back clears the refusal.
    put_component(&client, KEY, &v1).await;
    let status = eventually("the refusal to clear", LIMIT, || async {
        let status = bed.status().await;
        status.rejected_digest.is_none().then_some(status)
    })
    .await;
    assert_eq!(condition(&status, "Loaded").unwrap().status, "True");
    assert_eq!(status.last_error, None);
    assert_eq!(status.digest, Some(digest(&v1)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pointing_the_binding_at_another_key_swaps_and_pointing_it_back_rolls_back() {
    let bed = Bed::start_with_v1("rollback").await;
    let operator = bed.start_operator();
    let client = bed.client();
    let (v1, v2) = (v1(), v2());
    bed.wait_serving(&digest(&v1)).await;
    fixtures::create_greeting(&client, "rolled", "Hello").await;
    wait_reconciled(&client, "rolled", "Hello, operators!", &digest(&v1)).await;

    // A new key in the same ConfigMap changes nothing by itself.
    put_component(&client, "v2.wasm", &v2).await;
    let point_at = |key: &'static str| {
        let api = Api::<ReconcilerPlugin>::all(client.clone());
        async move {
            api.patch(
                BINDING,
                &PatchParams::default(),
                &Patch::Merge(json!({"spec": {"source": {"configMap": {"key": key}}}})),
            )
            .await
            .unwrap();
        }
    };
    point_at("v2.wasm").await;
    wait_reconciled(&client, "rolled", "Hello, operators! (v2)", &digest(&v2)).await;
    bed.wait_serving(&digest(&v2)).await;

    // Rollback: back at the previous key.
    point_at(KEY).await;
    wait_reconciled(&client, "rolled", "Hello, operators!", &digest(&v1)).await;
    bed.wait_serving(&digest(&v1)).await;

    let metrics = scrape(&operator.http).await;
    assert_eq!(
        metric(&metrics, "wasm_operator_plugin_swaps_total"),
        2.0,
        "{metrics}"
    );
    assert_no_failed_reconcile(&metrics);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_operator_comes_back_with_v2_from_the_cache_without_recompiling() {
    let bed = Bed::start_with_v1("restart").await;
    let operator = bed.start_operator();
    let client = bed.client();
    let (v1, v2) = (v1(), v2());
    bed.wait_serving(&digest(&v1)).await;
    fixtures::create_greeting(&client, "durable", "Hello").await;
    wait_reconciled(&client, "durable", "Hello, operators!", &digest(&v1)).await;
    put_component(&client, KEY, &v2).await;
    wait_reconciled(&client, "durable", "Hello, operators! (v2)", &digest(&v2)).await;
    let load = |source: &str, part: &str| {
        format!(
            "wasm_operator_plugin_load_duration_seconds_{part}{{binding=\"{BINDING}\",plugin=\"{PLUGIN}\",source=\"{source}\"}}"
        )
    };
    let before = scrape(&operator.http).await;
    assert_eq!(metric(&before, &load("compiled", "count")), 2.0, "{before}");
    let compiled_ms = 1000.0 * metric(&before, &load("compiled", "sum")) / 2.0;
    drop(operator);

    let started = Instant::now();
    let operator = bed.start_operator();
    let after = eventually("the restarted operator to load v2", LIMIT, || async {
        let text = try_scrape(&operator.http).await?;
        (metric(&text, &load("cached", "count")) >= 1.0).then_some(text)
    })
    .await;
    let restart = started.elapsed();
    assert_eq!(metric(&after, &load("cached", "count")), 1.0, "{after}");
    assert_eq!(
        metric(&after, &load("compiled", "count")),
        0.0,
        "recompiled after a restart:\n{after}"
    );
    println!(
        "restart: v2 loaded from the cache in {:.1} ms (compiling took {compiled_ms:.1} ms on average); \
         in service {restart:?} after the process started",
        1000.0 * metric(&after, &load("cached", "sum"))
    );
    let status = bed.wait_serving(&digest(&v2)).await;
    assert_eq!(status.plugin_version.as_deref(), Some("0.2.0"));
    set_greeting(&client, "durable", "Back").await;
    wait_reconciled(&client, "durable", "Back, operators! (v2)", &digest(&v2)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_binding_runs_a_controller_only_while_it_has_a_good_version_and_follows_its_spec() {
    let bed = Bed::start("lifecycle").await;
    let client = bed.client();
    let v1 = v1();
    let core_module = b"\0asm\x01\0\0\0".to_vec();
    put_component(&client, KEY, &core_module).await;
    bed.bind().await;
    let operator = bed.start_operator();

    // The first version is refused: nothing serves, and the status says why.
    let status = eventually("the first version to be refused", LIMIT, || async {
        let status = bed.status().await;
        (status.rejected_digest == Some(digest(&core_module))).then_some(status)
    })
    .await;
    for type_ in ["Loaded", "Ready"] {
        let c = condition(&status, type_).unwrap();
        assert_eq!(
            (c.status.as_str(), c.reason.as_str()),
            ("False", "NotAComponent")
        );
    }
    assert_eq!(status.digest, None);
    fixtures::create_greeting(&client, "waiting", "Hello").await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let config_maps = Api::<ConfigMap>::namespaced(client.clone(), "default");
    assert!(
        config_maps
            .get_opt("waiting-greeting")
            .await
            .unwrap()
            .is_none(),
        "a controller ran without a good version"
    );

    // A good version starts the controller.
    put_component(&client, KEY, &v1).await;
    wait_reconciled(&client, "waiting", "Hello, operators!", &digest(&v1)).await;
    let status = bed.wait_serving(&digest(&v1)).await;
    assert_eq!(status.rejected_digest, None);

    // New settings are swapped in with the same component.
    Api::<ReconcilerPlugin>::all(client.clone())
        .patch(
            BINDING,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"settings": {"defaultAudience": "everyone"}}})),
        )
        .await
        .unwrap();
    wait_reconciled(&client, "waiting", "Hello, everyone!", &digest(&v1)).await;
    let metrics = scrape(&operator.http).await;
    assert_eq!(metric(&metrics, "wasm_operator_plugin_swaps_total"), 1.0);
    assert_eq!(
        metric(&metrics, "wasm_operator_plugin_load_duration_seconds_count"),
        1.0,
        "new settings reloaded the component:\n{metrics}"
    );
    assert_no_failed_reconcile(&metrics);

    // Deleting the binding stops its controller.
    Api::<ReconcilerPlugin>::all(client.clone())
        .delete(BINDING, &Default::default())
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    fixtures::create_greeting(&client, "orphan", "Hello").await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(
        config_maps
            .get_opt("orphan-greeting")
            .await
            .unwrap()
            .is_none(),
        "the controller of a deleted binding still runs"
    );
}

/// Runs `wasm-operator plugin push` against the bed's API server.
async fn push(bed: &Bed, file: &str, extra: &[&str]) -> std::process::Output {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_wasm-operator"));
    command
        .env("KUBECONFIG", &bed.cluster.kubeconfig)
        .args(["--plugin-cache-dir", bed.cache.to_str().unwrap()])
        .args(["plugin", "push"])
        .arg(support::plugin_dir().join(format!("{file}.wasm")))
        .args(["--name", BINDING, "--namespace", OPERATOR_NAMESPACE])
        .args(extra);
    tokio::task::spawn_blocking(move || command.output().expect("running wasm-operator"))
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plugin_push_publishes_and_binds_a_plugin_and_refuses_files_that_would_not_load() {
    let bed = Bed::start("push").await;
    let client = bed.client();
    let (v1, v2) = (v1(), v2());
    let pushed = push(
        &bed,
        "example-plugin",
        &[
            "--bind",
            "--grant-requested",
            "--settings",
            r#"{"defaultAudience": "operators"}"#,
        ],
    )
    .await;
    let stdout = String::from_utf8_lossy(&pushed.stdout);
    assert!(
        pushed.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&pushed.stderr)
    );
    println!("plugin push --bind printed:\n{stdout}");
    let report: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(report["digest"], digest(&v1));
    assert_eq!(report["bindings"], json!([BINDING]));
    let config_maps = Api::<ConfigMap>::namespaced(client.clone(), OPERATOR_NAMESPACE);
    let config_map = config_maps.get(BINDING).await.unwrap();
    assert_eq!(
        config_map.binary_data.as_ref().unwrap()["plugin.wasm"].0,
        v1
    );
    let binding = Api::<ReconcilerPlugin>::all(client.clone())
        .get(BINDING)
        .await
        .unwrap();
    let source = binding.spec.source.config_map.as_ref().unwrap();
    assert_eq!(
        (
            source.namespace.as_str(),
            source.name.as_str(),
            source.key.as_str()
        ),
        (OPERATOR_NAMESPACE, BINDING, "plugin.wasm")
    );
    assert_eq!(binding.spec.grants.children.len(), 1);
    assert_eq!(binding.spec.grants.children[0].kind, "ConfigMap");
    assert_eq!(
        binding.spec.settings,
        Some(json!({"defaultAudience": "operators"}))
    );

    let _operator = bed.start_operator();
    fixtures::create_greeting(&client, "pushed", "Hello").await;
    wait_reconciled(&client, "pushed", "Hello, operators!", &digest(&v1)).await;

    // Refused before anything is written: by the local checks, then by the
    // binding the component would reach.
    let version = config_maps.get(BINDING).await.unwrap().resource_version();
    for (file, says) in [
        ("hostile-wit-v1", "IncompatibleWit"),
        ("hostile-other-kind", "TargetKindChanged"),
        ("hostile-strict-settings", "InvalidSettings"),
    ] {
        let refused = push(&bed, file, &[]).await;
        let stderr = String::from_utf8_lossy(&refused.stderr);
        assert!(!refused.status.success(), "{file} was pushed");
        assert!(stderr.contains(says), "{file}: {stderr}");
        let error = stderr
            .lines()
            .find(|l| l.starts_with("error:"))
            .unwrap_or_default();
        println!("plugin push {file}: {error}");
    }
    assert_eq!(
        config_maps.get(BINDING).await.unwrap().resource_version(),
        version,
        "a refused push wrote the ConfigMap"
    );

    // A push of v2 is swapped in by the running operator.
    let pushed = push(&bed, "swap-v2-plugin", &[]).await;
    assert!(
        pushed.status.success(),
        "{}",
        String::from_utf8_lossy(&pushed.stderr)
    );
    wait_reconciled(&client, "pushed", "Hello, operators! (v2)", &digest(&v2)).await;
}

/// The URIs of the requests the in-process test API server serves on this
/// thread (it logs each at debug level): with a current-thread runtime,
/// every request of one test and no other's.
#[derive(Clone, Default)]
struct ServedRequests(Arc<std::sync::Mutex<Vec<String>>>);

impl ServedRequests {
    /// Records until the returned guard is dropped.
    fn record(&self) -> tracing::subscriber::DefaultGuard {
        use tracing_subscriber::Layer as _;
        use tracing_subscriber::layer::SubscriberExt as _;
        let only_the_api_server = tracing_subscriber::filter::Targets::new()
            .with_target("test_apiserver", tracing::Level::DEBUG);
        tracing::subscriber::set_default(
            tracing_subscriber::registry().with(self.clone().with_filter(only_the_api_server)),
        )
    }

    /// Watches of Greetings (`…/greetings?…watch=true…`) served so far.
    fn greeting_watches(&self) -> usize {
        let uris = self.0.lock().unwrap();
        uris.iter()
            .filter(|uri| uri.contains("/greetings?") && uri.contains("watch=true"))
            .count()
    }
}

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for ServedRequests {
    fn on_event(&self, event: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        struct Uri(Option<String>);
        impl tracing::field::Visit for Uri {
            fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
                if field.name() == "uri" {
                    self.0 = Some(format!("{value:?}"));
                }
            }
        }
        let mut uri = Uri(None);
        event.record(&mut uri);
        if let Some(uri) = uri.0 {
            self.0.lock().unwrap().push(uri);
        }
    }
}

// A current-thread runtime: the test API server's tasks run on this
// thread, where `ServedRequests` listens.
#[tokio::test(flavor = "current_thread")]
async fn an_admission_only_version_watches_nothing_until_a_wit_0_1_0_reconciler_is_swapped_in() {
    let served = ServedRequests::default();
    let _recording = served.record();
    let bed = Bed::start("admission-only").await;
    let client = bed.client();
    let admitter = support::component("admission-only-plugin");
    put_component(&client, KEY, &admitter).await;
    Binding::named(BINDING)
        .source_config_map(OPERATOR_NAMESPACE, CONFIG_MAP, KEY)
        .settings(json!({"defaultAudience": "operators"}))
        .grants(json!({
            "read": [{"version": "v1", "kind": "ConfigMap"}],
            "children": [{"version": "v1", "kind": "ConfigMap"}],
        }))
        // The webhooks the operator registers cannot be reached here (no
        // Service is mapped): let requests through rather than deny them.
        .admission(json!({"failurePolicy": "Ignore"}))
        .create(&client)
        .await;
    let (_operator, log) = bed
        .cluster
        .start_operator_logged(&["--leader-election=false"]);
    let status = bed.wait_serving(&digest(&admitter)).await;
    assert_eq!(status.wit_version.as_deref(), Some("0.2.0"));
    fixtures::create_greeting(&client, "waiting", "Hello").await;
    // Long enough for a controller to have listed, watched and reconciled.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        served.greeting_watches(),
        0,
        "an admission-only binding watched Greetings"
    );
    let waiting = greetings(&client).get("waiting").await.unwrap();
    assert!(
        waiting.data["status"].is_null(),
        "reconciled: {:?}",
        waiting.data
    );
    assert!(log.containing("controller started").is_empty());

    // A version that reconciles, built for WIT 0.1.0, starts the controller.
    let compat = support::component("compat-v0-1-plugin");
    put_component(&client, KEY, &compat).await;
    let status = bed.wait_serving(&digest(&compat)).await;
    assert_eq!(status.wit_version.as_deref(), Some("0.1.0"));
    wait_reconciled(
        &client,
        "waiting",
        "Hello, operators! (WIT 0.1.0)",
        &digest(&compat),
    )
    .await;
    assert!(
        served.greeting_watches() > 0,
        "the controller watches Greetings"
    );
    assert_eq!(log.containing("controller started").len(), 1);
}
