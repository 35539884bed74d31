//! The runtime against real compiled components: the example plugin and the
//! hostile guests under `host/tests/plugins/hostile/`, built by `scripts/build-plugins.sh`.

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use support::{ObjectStore, RUNTIME, component, configmap_kind, greeting, greeting_kind, load};
use wasm_operator::runtime::{
    AdmissionRequest, AdmissionScope, CallContext, CallError, EventType, LoadError, LoadSource,
    MatchCondition, Operation, PluginLimits, PluginRole, ReconcileInput, Runtime, RuntimeConfig,
};

fn input(object: serde_json::Value) -> ReconcileInput {
    ReconcileInput {
        object,
        settings: json!({}),
        ..ReconcileInput::default()
    }
}

#[tokio::test]
async fn example_plugin_describes_itself_with_typed_fields() {
    let plugin = load("example-plugin").await;
    let description = plugin.description();
    assert_eq!(description.name, "example-greeting");
    assert_eq!(description.version, "0.1.0");
    assert_eq!(description.target, greeting_kind());
    assert_eq!(description.child_kinds, vec![configmap_kind()]);
    assert_eq!(description.read_kinds, vec![configmap_kind()]);
    assert!(!description.wants_sql);
    assert_eq!(description.wit_version, "0.2.0");
    assert!(description.settings_schema.is_object());
    assert_eq!(
        plugin.digest(),
        &wasm_operator::runtime::PluginDigest::of(&component("example-plugin"))
    );
}

#[tokio::test]
async fn example_plugin_turns_a_greeting_into_a_configmap_and_a_ready_status() {
    let plugin = load("example-plugin").await;
    let store = Arc::new(ObjectStore::default());
    store.insert(
        configmap_kind(),
        json!({"apiVersion": "v1", "kind": "ConfigMap",
               "metadata": {"name": "audience", "namespace": "default"},
               "data": {"who": "platform team"}}),
    );
    let object = greeting(
        "hello",
        json!({"greeting": "Hello", "audienceFrom": {"configMap": "audience", "key": "who"}}),
    );
    let decision = plugin
        .reconcile(&input(object), store.context(&[configmap_kind()]))
        .await
        .expect("reconcile succeeds");

    assert_eq!(decision.children.len(), 1);
    let child = &decision.children[0];
    assert_eq!(child.kind, configmap_kind());
    assert_eq!(child.name, "hello-greeting");
    assert_eq!(child.namespace.as_deref(), Some("default"));
    assert_eq!(child.object["data"]["message"], "Hello, platform team!");
    let status = decision.status.expect("a status");
    assert_eq!(status["message"], "Hello, platform team!");
    let ready = status["conditions"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["type"] == "Ready"))
        .expect("a Ready condition");
    assert_eq!(ready["status"], "True");
    assert!(decision.events.iter().all(|e| e.type_ == EventType::Normal));
    assert!(
        !decision.events.is_empty(),
        "a changed message is announced by an event"
    );
}

#[tokio::test]
async fn example_plugin_refuses_an_empty_greeting_naming_the_field() {
    let plugin = load("example-plugin").await;
    let error = plugin
        .reconcile(
            &input(greeting("bad", json!({"greeting": ""}))),
            CallContext::none(),
        )
        .await
        .expect_err("an empty greeting is invalid");
    match &error {
        CallError::Guest {
            reason,
            message,
            retryable,
        } => {
            assert_eq!(reason, "InvalidSpec");
            assert!(message.contains("spec.greeting"), "{message}");
            assert!(!retryable);
        }
        other => panic!("expected the plugin's own error, got {other:?}"),
    }
}

#[tokio::test]
async fn an_endless_loop_is_stopped_at_the_deadline_and_the_plugin_keeps_working() {
    let deadline = Duration::from_millis(300);
    let plugin = load("hostile-loop").await.with_limits(PluginLimits {
        deadline,
        ..PluginLimits::default()
    });
    let started = Instant::now();
    let error = plugin
        .reconcile(
            &input(greeting("spin", json!({"greeting": "hi"}))),
            CallContext::none(),
        )
        .await
        .expect_err("an endless loop cannot finish");
    let elapsed = started.elapsed();
    assert!(
        matches!(error, CallError::DeadlineExceeded { .. }),
        "{error:?}"
    );
    assert!(
        elapsed < deadline + Duration::from_millis(100),
        "stopped after {elapsed:?}, deadline {deadline:?}"
    );
    // A trapped instance is dropped with its store: the next call starts fresh.
    let decision = plugin
        .finalize(
            &input(greeting("spin", json!({"greeting": "hi"}))),
            CallContext::none(),
        )
        .await
        .expect("the next call to the same plugin succeeds");
    assert!(decision.done);
}

#[tokio::test]
async fn a_one_gib_allocation_fails_at_the_memory_cap() {
    let plugin = load("hostile-memory").await;
    let started = Instant::now();
    let error = plugin
        .reconcile(
            &input(greeting("hog", json!({"greeting": "hi"}))),
            CallContext::none(),
        )
        .await
        .expect_err("1 GiB does not fit in 64 MiB");
    match error {
        CallError::MemoryLimit { limit_bytes } => assert_eq!(limit_bytes, 64 << 20),
        other => panic!("expected a memory limit error, got {other:?}"),
    }
    assert!(started.elapsed() < Duration::from_secs(1));
}

#[tokio::test]
async fn a_panic_comes_back_as_a_clear_error_with_its_message() {
    let plugin = load("hostile-panic").await;
    let error = plugin
        .reconcile(
            &input(greeting("boom", json!({"greeting": "hi"}))),
            CallContext::none(),
        )
        .await
        .expect_err("the guest panics");
    match &error {
        CallError::Panic { message } => {
            assert!(
                message.contains("deliberate panic from hostile-panic"),
                "{message}"
            )
        }
        other => panic!("expected a panic error, got {other:?}"),
    }
    assert!(
        error.to_string().starts_with("plugin panicked: "),
        "{error}"
    );
}

#[tokio::test]
async fn an_oversized_output_is_refused() {
    // Memory enough to build 16 MiB of output, so the output cap is what stops it.
    let plugin = load("hostile-output").await.with_limits(PluginLimits {
        memory_bytes: 256 << 20,
        ..PluginLimits::default()
    });
    let error = plugin
        .reconcile(
            &input(greeting("big", json!({"greeting": "hi"}))),
            CallContext::none(),
        )
        .await
        .expect_err("16 MiB of status is over the cap");
    match error {
        CallError::OutputTooLarge { size, limit } => {
            assert!(size >= 16 << 20, "{size}");
            assert_eq!(limit, PluginLimits::default().max_output_bytes);
        }
        other => panic!("expected an output size error, got {other:?}"),
    }
}

#[tokio::test]
async fn files_environment_and_network_are_out_of_reach_inside_the_guest() {
    // A real listener the guest is asked to reach: a connection would show here.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    // SAFETY: set before any plugin call in this test; other tests do not read it.
    unsafe { std::env::set_var("WASM_OPERATOR_TEST_SECRET", "leaked") };
    let plugin = load("hostile-escape").await;
    let decision = plugin
        .reconcile(
            &input(greeting("escape", json!({"greeting": "hi", "port": port}))),
            CallContext::none(),
        )
        .await
        .expect("the escape attempts fail inside the guest, not the call");
    let status = decision.status.expect("the guest reports what it tried");
    for attempt in ["file", "dir", "env", "socket", "dns"] {
        assert_eq!(
            status[attempt]["ok"], false,
            "{attempt} should have failed inside the guest: {}",
            status[attempt]
        );
    }
    assert_eq!(
        status["envCount"]["detail"], "0",
        "the guest sees no environment: {}",
        status["envCount"]
    );
    let accepted = tokio::time::timeout(Duration::from_millis(50), listener.accept()).await;
    assert!(accepted.is_err(), "the guest reached the listener");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_guests_do_not_disturb_concurrent_calls_to_another_plugin() {
    let example = load("example-plugin").await;
    let hostile = [
        load("hostile-loop")
            .await
            .with_limits(support::limits_with_deadline(500)),
        load("hostile-memory").await,
        load("hostile-panic").await,
        load("hostile-output").await,
    ];
    let attacks: Vec<_> = hostile
        .into_iter()
        .map(|plugin| {
            tokio::spawn(async move {
                plugin
                    .reconcile(
                        &input(greeting("x", json!({"greeting": "hi"}))),
                        CallContext::none(),
                    )
                    .await
            })
        })
        .collect();
    let loop_attack_started = Instant::now();
    let mut good = 0;
    while loop_attack_started.elapsed() < Duration::from_millis(400) {
        let decision = example
            .reconcile(
                &input(greeting("calm", json!({"greeting": "Hello"}))),
                CallContext::none(),
            )
            .await
            .expect("the example plugin keeps working");
        assert_eq!(
            decision.children[0].object["data"]["message"],
            "Hello, world!"
        );
        good += 1;
    }
    assert!(
        good >= 10,
        "only {good} example reconciles completed beside the hostile calls"
    );
    for attack in attacks {
        assert!(attack.await.unwrap().is_err(), "every hostile call fails");
    }
}

#[tokio::test]
async fn a_core_module_is_refused_as_not_a_component() {
    let core_module = b"\0asm\x01\0\0\0";
    let error = RUNTIME.load(core_module).await.expect_err("a core module");
    assert!(
        matches!(error, LoadError::NotAComponent { .. }),
        "{error:?}"
    );
    assert!(
        error.to_string().contains("core WebAssembly module"),
        "{error}"
    );
    let error = RUNTIME
        .load(b"#!/bin/sh\necho hi\n")
        .await
        .expect_err("not wasm at all");
    assert!(
        error.to_string().contains("no WebAssembly magic number"),
        "{error}"
    );
}

#[tokio::test]
async fn a_corrupt_component_is_refused_as_malformed() {
    let mut bytes = component("example-plugin");
    let middle = bytes.len() / 2;
    bytes[middle..middle + 64].fill(0xff);
    let error = RUNTIME.load(&bytes).await.expect_err("corrupt bytes");
    assert!(matches!(error, LoadError::Malformed { .. }), "{error:?}");
    assert!(
        error.to_string().starts_with("malformed component sha256:"),
        "{error}"
    );
}

#[tokio::test]
async fn a_component_without_reconcile_is_refused_naming_the_export() {
    let error = RUNTIME
        .load(&component("hostile-no-reconcile"))
        .await
        .expect_err("reconcile is missing");
    assert!(
        matches!(error, LoadError::MissingExport { .. }),
        "{error:?}"
    );
    assert!(
        error
            .to_string()
            .contains("wasm-operator:plugin/reconciler@0.2.0#reconcile"),
        "{error}"
    );
}

#[tokio::test]
async fn a_component_for_another_major_wit_version_is_refused_naming_both_versions() {
    let error = RUNTIME
        .load(&component("hostile-wit-v1"))
        .await
        .expect_err("WIT 1.0.0 is neither 0.1.x nor 0.2.x");
    assert!(
        matches!(error, LoadError::IncompatibleWit { .. }),
        "{error:?}"
    );
    let message = error.to_string();
    assert!(message.contains("wasm-operator:plugin@1.0.0"), "{message}");
    assert!(
        message.contains(">=0.1.0, <0.3.0 (0.1.x, 0.2.x)"),
        "{message}"
    );
}

#[tokio::test]
async fn a_component_for_a_newer_minor_wit_version_is_refused_naming_the_accepted_range() {
    let error = RUNTIME
        .load(&component("hostile-wit-v0-3"))
        .await
        .expect_err("the host cannot know what 0.3.0 added");
    assert!(
        matches!(error, LoadError::IncompatibleWit { .. }),
        "{error:?}"
    );
    let message = error.to_string();
    assert!(message.contains("wasm-operator:plugin@0.3.0"), "{message}");
    assert!(
        message.contains("implements wasm-operator:plugin@0.2.0"),
        "{message}"
    );
    assert!(
        message.contains(">=0.1.0, <0.3.0 (0.1.x, 0.2.x)"),
        "{message}"
    );
}

#[tokio::test]
async fn a_component_built_for_wit_0_1_0_loads_as_a_reconciler_that_admits() {
    let plugin = load("compat-v0-1-plugin").await;
    let description = plugin.description();
    assert_eq!(description.wit_version, "0.1.0");
    assert_eq!(description.name, "example-greeting");
    assert_eq!(description.target, greeting_kind());
    assert_eq!(description.role, PluginRole::Reconciler);
    assert!(!description.is_admission_only());
    assert!(description.offers_admission);
    assert_eq!(
        description.admission,
        Some(AdmissionScope::default()),
        "0.1.0 has no admission-info: creates and updates of every Greeting"
    );
}

#[tokio::test]
async fn a_wit_0_1_0_component_reconciles_through_its_0_1_0_imports() {
    let plugin = load("compat-v0-1-plugin").await;
    let store = Arc::new(ObjectStore::default());
    store.insert(
        configmap_kind(),
        json!({"apiVersion": "v1", "kind": "ConfigMap",
               "metadata": {"name": "audience", "namespace": "default"},
               "data": {"who": "platform team"}}),
    );
    let object = greeting(
        "old",
        json!({"greeting": "Hello",
               "audienceFrom": {"configMap": "audience", "key": "who"},
               "probeServer": "default/db"}),
    );
    let decision = plugin
        .reconcile(&input(object), store.context(&[configmap_kind()]))
        .await
        .expect("reconcile succeeds");
    // `kube.get` under its 0.1.0 name reached the host's cache.
    let child = &decision.children[0];
    assert_eq!(child.name, "old-greeting");
    assert_eq!(
        child.object["data"]["message"],
        "Hello, platform team! (WIT 0.1.0)"
    );
    let status = decision.status.expect("a status");
    assert_eq!(status["conditions"][0]["type"], "Ready");
    // So did `sql.query`: the host's grant check answered it.
    let probe = status["sqlProbe"]["error"].as_str().unwrap_or_default();
    assert!(probe.contains("is not granted"), "{status}");
}

#[tokio::test]
async fn a_wit_0_1_0_component_validates_and_mutates() {
    let plugin = load("compat-v0-1-plugin").await;
    let request = |spec| AdmissionRequest {
        operation: Operation::Create,
        object: Some(greeting("g", spec).to_string()),
        old_object: None,
        user: "alice".into(),
        dry_run: false,
        settings: "{}".into(),
    };
    let denied = plugin
        .validate(&request(json!({"greeting": ""})), CallContext::none())
        .await
        .unwrap();
    assert!(!denied.allowed);
    assert_eq!(
        denied.message.as_deref(),
        Some("spec.greeting must not be empty (WIT 0.1.0)")
    );
    let allowed = plugin
        .validate(&request(json!({"greeting": "Hi"})), CallContext::none())
        .await
        .unwrap();
    assert!(allowed.allowed);
    let mutation = plugin
        .mutate(&request(json!({"greeting": "Hi"})), CallContext::none())
        .await
        .unwrap();
    let object: serde_json::Value = serde_json::from_str(&mutation.object.unwrap()).unwrap();
    assert_eq!(
        object["metadata"]["labels"]["examples.systems.mikemiller.tech/wit"],
        "0.1.0"
    );
}

#[tokio::test]
async fn an_admission_only_component_says_what_it_admits_and_has_no_reconcile() {
    let plugin = load("admission-only-plugin").await;
    let description = plugin.description();
    assert!(description.is_admission_only());
    assert_eq!(description.wit_version, "0.2.0");
    assert_eq!(description.target, greeting_kind());
    assert!(description.child_kinds.is_empty() && !description.wants_sql);
    assert_eq!(description.read_kinds, vec![configmap_kind()]);
    let scope = description.admission.as_ref().expect("it admits");
    assert_eq!(scope.operations, [Operation::Create]);
    assert_eq!(scope.object_selector, "admission=checked");
    assert_eq!(
        scope.match_conditions,
        [MatchCondition {
            name: "has-greeting".into(),
            expression: "has(object.spec.greeting)".into(),
        }]
    );
    let object = input(greeting("g", json!({"greeting": "Hi"})));
    for error in [
        plugin
            .reconcile(&object, CallContext::none())
            .await
            .unwrap_err(),
        plugin
            .finalize(&object, CallContext::none())
            .await
            .map(|_| ())
            .unwrap_err(),
    ] {
        assert!(
            matches!(error, CallError::NotExported { .. }),
            "a clear error, never a trap: {error:?}"
        );
        assert!(!error.is_retryable());
    }
    let request = |spec| AdmissionRequest {
        operation: Operation::Create,
        object: Some(greeting("g", spec).to_string()),
        old_object: None,
        user: "alice".into(),
        dry_run: false,
        settings: "{}".into(),
    };
    let denied = plugin
        .validate(&request(json!({"greeting": " "})), CallContext::none())
        .await
        .expect("a query at admission is refused by the SDK, not a trap");
    assert!(!denied.allowed);
    let mutation = plugin
        .mutate(&request(json!({"greeting": "Hi"})), CallContext::none())
        .await
        .unwrap();
    let object: serde_json::Value = serde_json::from_str(&mutation.object.unwrap()).unwrap();
    assert_eq!(
        object["metadata"]["annotations"]["examples.systems.mikemiller.tech/admitted-by"],
        "admission-only"
    );
}

#[tokio::test]
async fn the_credentials_injector_is_admission_only_for_creates_of_annotated_pods() {
    let plugin = load("postgres-inject-plugin").await;
    let description = plugin.description();
    assert_eq!(description.name, "postgres-inject");
    assert!(description.is_admission_only());
    assert_eq!(description.target.kind, "Pod");
    let scope = description.admission.as_ref().expect("it admits");
    assert_eq!(scope.operations, [Operation::Create]);
    assert_eq!(scope.object_selector, "");
    assert_eq!(scope.match_conditions.len(), 1);
    assert_eq!(scope.match_conditions[0].name, "annotated");
    assert!(
        scope.match_conditions[0].expression.contains(
            "'systems.mikemiller.tech/inject-credentials' in object.metadata.annotations"
        ),
        "{scope:?}"
    );
}

#[tokio::test]
async fn an_sdk_admission_plugin_describes_its_scope_which_defaults_to_creates_and_updates() {
    let plugin = load("example-admission").await;
    let description = plugin.description();
    assert_eq!(description.role, PluginRole::Reconciler);
    assert_eq!(description.admission, Some(AdmissionScope::default()));
    assert_eq!(
        description.admission.as_ref().unwrap().operations,
        [Operation::Create, Operation::Update]
    );
}

#[tokio::test]
async fn a_component_whose_admission_info_describes_another_plugin_is_refused_naming_both() {
    let error = RUNTIME
        .load(&component("hostile-admission-mismatch"))
        .await
        .expect_err("admission-info names another plugin and kind");
    assert!(matches!(error, LoadError::Describe { .. }), "{error:?}");
    let message = error.to_string();
    for part in [
        "admission-info.describe",
        "someone-else",
        "v1/Pod",
        "hostile-admission-mismatch",
        "Greeting",
    ] {
        assert!(message.contains(part), "{part}: {message}");
    }
}

#[tokio::test]
async fn a_restarted_runtime_loads_from_the_cache_and_survives_a_corrupt_entry() {
    let dir = tempdir("cache-restart");
    let config = RuntimeConfig {
        cache_dir: Some(dir.clone()),
        disable_pooling: true,
    };
    let bytes = component("example-plugin");
    let first = Runtime::new(&config).unwrap().load(&bytes).await.unwrap();
    assert_eq!(first.load_report().0, LoadSource::Compiled);

    let restarted = Runtime::new(&config).unwrap();
    let second = restarted.load(&bytes).await.unwrap();
    assert_eq!(second.load_report().0, LoadSource::Cached);

    for entry in std::fs::read_dir(&dir).unwrap() {
        std::fs::write(entry.unwrap().path(), b"not a precompiled component").unwrap();
    }
    let third = Runtime::new(&config).unwrap().load(&bytes).await.unwrap();
    assert_eq!(
        third.load_report().0,
        LoadSource::Compiled,
        "a corrupt entry is a miss"
    );
    let decision = third
        .reconcile(
            &input(greeting("after", json!({"greeting": "Hi"}))),
            CallContext::none(),
        )
        .await
        .unwrap();
    assert_eq!(decision.children[0].object["data"]["message"], "Hi, world!");
}

fn tempdir(name: &str) -> std::path::PathBuf {
    let dir = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A decision of `hostile-doors` for an object whose name picks the door.
async fn doors(name: &str) -> Result<wasm_operator::runtime::Decision, CallError> {
    load("hostile-doors")
        .await
        .reconcile(
            &input(greeting(name, json!({"greeting": "hi"}))),
            CallContext::none(),
        )
        .await
}

#[tokio::test]
async fn events_over_the_cap_of_one_decision_are_dropped_and_counted() {
    let decision = doors("events-flood").await.expect("a decision");
    let cap = PluginLimits::default().max_events;
    assert_eq!(decision.events.len(), cap);
    assert_eq!(decision.dropped_events, 20_000 - cap);
}

#[tokio::test]
async fn a_requeue_sooner_than_the_floor_is_raised_to_it() {
    let decision = doors("requeue-now").await.expect("a decision");
    assert_eq!(
        decision.requeue_after,
        Some(PluginLimits::default().min_requeue)
    );
}

#[tokio::test]
async fn a_stack_overflow_is_reported_as_such() {
    let error = doors("stack-deep").await.expect_err("the stack overflows");
    assert!(matches!(error, CallError::StackOverflow), "{error:?}");
    assert_eq!(error.reason(), "StackOverflow");
    // The plugin keeps working for other objects.
    assert!(doors("plain").await.is_ok());
}

/// Counts the log records plugins write (target `wasm_operator::plugin`).
struct PluginRecords(Arc<std::sync::atomic::AtomicUsize>);

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for PluginRecords {
    fn on_event(&self, event: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        if event.metadata().target() == "wasm_operator::plugin" {
            self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    }
}

#[tokio::test]
async fn tiny_and_empty_log_records_are_capped_by_count() {
    use tracing_subscriber::layer::SubscriberExt;
    let records = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let subscriber = tracing_subscriber::registry().with(PluginRecords(Arc::clone(&records)));
    // This test's runtime runs the call on this thread: the subscriber sees it.
    let _guard = tracing::subscriber::set_default(subscriber);
    doors("logs-spam").await.expect("a decision");
    let written = records.load(std::sync::atomic::Ordering::Relaxed);
    // 200,000 records were attempted; the cap and one notice of the rest pass.
    assert!(
        written <= PluginLimits::default().max_log_records + 1,
        "{written} records reached the operator's log"
    );
    assert!(written > 0, "the first records and the notice are logged");
}

#[tokio::test]
async fn a_read_larger_than_a_quarter_of_the_memory_cap_is_refused_before_it_reaches_the_guest() {
    // 16 MiB of memory: a call may read 4 MiB; the ConfigMap holds 6 MiB.
    let plugin = load("example-plugin").await.with_limits(PluginLimits {
        memory_bytes: 16 << 20,
        ..PluginLimits::default()
    });
    let store = Arc::new(ObjectStore::default());
    store.insert(
        configmap_kind(),
        json!({"apiVersion": "v1", "kind": "ConfigMap",
               "metadata": {"name": "audience", "namespace": "default"},
               "data": {"who": "x".repeat(6 << 20)}}),
    );
    let object = greeting(
        "hello",
        json!({"greeting": "Hello", "audienceFrom": {"configMap": "audience", "key": "who"}}),
    );
    let error = plugin
        .reconcile(&input(object), store.context(&[configmap_kind()]))
        .await
        .expect_err("the read is refused, and the plugin reports it");
    assert!(
        error
            .to_string()
            .contains("4194304 bytes one call may read"),
        "{error}"
    );
}
