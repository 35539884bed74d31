//! Runtime benchmark: compile vs cached load, and the per-reconcile cost of
//! a fresh sandbox beside the same plugin logic called natively.
//!
//! Run with `scripts/bench.sh` (release build; plugins built first).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use example_plugin::GreetingPlugin;
use serde_json::{Value, json};
use wasm_operator::runtime::{CallContext, ReconcileInput, Runtime, RuntimeConfig};
use wasm_operator_sdk::{Context, Plugin, Request, TestHost};

/// Median and 99th percentile of a set of durations.
struct Summary {
    median: Duration,
    p99: Duration,
}

fn summarize(mut samples: Vec<Duration>) -> Summary {
    samples.sort();
    let at = |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize];
    Summary {
        median: at(0.5),
        p99: at(0.99),
    }
}

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

/// A Greeting of about 4 KB, as the API server would serve it.
fn four_kb_greeting() -> Value {
    let annotations: serde_json::Map<String, Value> = (0..40)
        .map(|i| {
            (
                format!("example.com/annotation-{i:02}"),
                json!(format!("value-{i:02}-{}", "x".repeat(48))),
            )
        })
        .collect();
    json!({
        "apiVersion": "examples.systems.mikemiller.tech/v1alpha1",
        "kind": "Greeting",
        "metadata": {
            "name": "bench", "namespace": "default", "uid": "2f6e1c8a-6b7e-4b8e-9a51-1d2c3b4a5f60",
            "generation": 3, "resourceVersion": "123456",
            "labels": {"app.kubernetes.io/name": "bench"},
            "annotations": annotations,
        },
        "spec": {"greeting": "Hello"},
        "status": {"message": "Hello, world!"},
    })
}

fn main() {
    let tokio = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    // Where `scripts/build-plugins.sh` puts components, unless
    // WASM_OPERATOR_PLUGIN_DIR says otherwise (as for the tests).
    let plugin_dir = std::env::var_os("WASM_OPERATOR_PLUGIN_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/plugins"));
    let component = std::fs::read(plugin_dir.join("example-plugin.wasm"))
        .expect("build the plugins first: scripts/build-plugins.sh");
    let cache_dir =
        std::env::temp_dir().join(format!("wasm-operator-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&cache_dir);

    // Compile: no cache, every load compiles with Cranelift.
    let uncached = Runtime::new(&RuntimeConfig::default()).unwrap();
    let compile: Vec<Duration> = (0..10)
        .map(|_| {
            let started = Instant::now();
            tokio.block_on(uncached.load(&component)).unwrap();
            started.elapsed()
        })
        .collect();

    // Cached load: a warm on-disk cache, as after an operator restart.
    let cached = Runtime::new(&RuntimeConfig {
        cache_dir: Some(cache_dir.clone()),
        disable_pooling: false,
    })
    .unwrap();
    tokio.block_on(cached.load(&component)).unwrap();
    let load: Vec<Duration> = (0..50)
        .map(|_| {
            let started = Instant::now();
            tokio.block_on(cached.load(&component)).unwrap();
            started.elapsed()
        })
        .collect();

    // Dispatch: fresh store + instantiate + reconcile of a ~4 KB object,
    // JSON in and out, beside the same logic natively with JSON in and out.
    // The sandboxed call starts from the `Value` the controller holds: the
    // host serializes it, the guest's SDK parses the text (`serde_json`),
    // the plugin decides, the SDK serializes the decision (`serde_json`), and
    // the host parses and checks it. The native side does the guest's part
    // with the very same SDK code: it parses the same text with
    // `serde_json` and serializes the decision with `serde_json`.
    let plugin = tokio.block_on(cached.load(&component)).unwrap();
    let object = four_kb_greeting();
    let object_text = object.to_string();
    let input = ReconcileInput {
        object,
        settings: json!({}),
        ..ReconcileInput::default()
    };
    let rounds = 20_000;
    let mut wasm = Vec::with_capacity(rounds);
    let mut native = Vec::with_capacity(rounds);
    let host = TestHost::new();
    for _ in 0..rounds {
        let started = Instant::now();
        let decision = tokio
            .block_on(plugin.reconcile(&input, CallContext::none()))
            .unwrap();
        wasm.push(started.elapsed());
        assert_eq!(decision.children.len(), 1);

        let started = Instant::now();
        let object: Value = serde_json::from_str(&object_text).unwrap();
        let response =
            GreetingPlugin::reconcile(&Context::new(&host), &Request::new(object)).unwrap();
        let children: Vec<String> = response.children.iter().map(json_text).collect();
        let status = response.status.as_ref().map(json_text);
        native.push(started.elapsed());
        assert!(status.is_some());
        // Both made the same decision.
        assert_eq!(children.len(), 1);
        assert_eq!(
            Value::Object(decision.children[0].object.clone()),
            serde_json::from_str::<Value>(&children[0]).unwrap()
        );
    }
    // The host's share of the JSON work of one sandboxed call, outside the
    // sandbox: serializing the object, parsing the decision's child and status.
    let decision = tokio
        .block_on(plugin.reconcile(&input, CallContext::none()))
        .unwrap();
    let outputs: Vec<String> = decision
        .children
        .iter()
        .map(|child| Value::Object(child.object.clone()))
        .chain(decision.status.clone())
        .map(|value| json_text(&value))
        .collect();
    let host_json: Vec<Duration> = (0..rounds / 4)
        .map(|_| {
            let started = Instant::now();
            std::hint::black_box(json_text(&input.object));
            for output in &outputs {
                std::hint::black_box(serde_json::from_str::<Value>(output).unwrap());
            }
            started.elapsed()
        })
        .collect();
    // Fixed cost of a sandboxed call: `finalize` of a tiny object.
    let tiny = ReconcileInput {
        object: json!({"metadata": {"name": "tiny", "namespace": "default"}}),
        settings: json!({}),
        ..ReconcileInput::default()
    };
    let minimal: Vec<Duration> = (0..rounds / 4)
        .map(|_| {
            let started = Instant::now();
            tokio
                .block_on(plugin.finalize(&tiny, CallContext::none()))
                .unwrap();
            started.elapsed()
        })
        .collect();
    let _ = std::fs::remove_dir_all(&cache_dir);

    let minimal = summarize(minimal);
    let host_json = summarize(host_json);
    let compile = summarize(compile);
    let load = summarize(load);
    let wasm = summarize(wasm);
    let native = summarize(native);
    println!(
        "wasm-operator runtime benchmark (release; example-plugin.wasm, {} bytes; object {} bytes; pooling allocator: {})",
        component.len(),
        object_text.len(),
        cached.uses_pooling_allocator()
    );
    println!("{:<44} {:>12} {:>12}", "", "median", "p99");
    println!(
        "{:<44} {:>10.0}µs {:>10.0}µs",
        "compile (Cranelift, no cache)",
        micros(compile.median),
        micros(compile.p99)
    );
    println!(
        "{:<44} {:>10.0}µs {:>10.0}µs",
        "cached load (precompiled, incl. describe)",
        micros(load.median),
        micros(load.p99)
    );
    println!(
        "{:<44} {:>10.1}µs {:>10.1}µs",
        "reconcile in a fresh sandbox",
        micros(wasm.median),
        micros(wasm.p99)
    );
    println!(
        "{:<44} {:>10.1}µs {:>10.1}µs",
        "same logic natively",
        micros(native.median),
        micros(native.p99)
    );
    println!(
        "{:<44} {:>10.1}µs {:>10.1}µs",
        "minimal sandboxed call (tiny finalize)",
        micros(minimal.median),
        micros(minimal.p99)
    );
    println!(
        "{:<44} {:>10.1}µs {:>10.1}µs",
        "host JSON of a call (object out, decision in)",
        micros(host_json.median),
        micros(host_json.p99)
    );
    println!();
    let overhead = wasm.median.saturating_sub(native.median);
    println!(
        "compile / cached load:        {:.0}x (target >= 50x)",
        compile.median.as_secs_f64() / load.median.as_secs_f64()
    );
    println!(
        "sandbox / native (median):    {:.1}x",
        wasm.median.as_secs_f64() / native.median.as_secs_f64()
    );
    println!(
        "sandbox / native (p99):       {:.1}x",
        wasm.p99.as_secs_f64() / native.p99.as_secs_f64()
    );
    println!(
        "dispatch overhead (median):   {:.1}µs (target <= 20µs)",
        micros(overhead)
    );
    println!();
    println!("native = the same plugin code and SDK, JSON text in and out (serde_json);");
    println!(
        "sandboxed = host serializes the object, fresh store + instantiate + reconcile + teardown, host parses the decision."
    );
}

/// JSON text as the runtime and the SDK write it.
fn json_text(value: &Value) -> String {
    serde_json::to_string(value).unwrap()
}
