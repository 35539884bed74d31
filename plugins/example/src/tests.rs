//! Native tests of the Greeting plugin's decisions, with the SDK's `TestHost`.

use serde_json::{Value, json};
use wasm_operator_sdk::{Context, Level, Plugin, Request, TestHost};

use super::*;

fn greeting(spec: Value) -> Value {
    json!({
        "apiVersion": "examples.systems.mikemiller.tech/v1alpha1",
        "kind": "Greeting",
        "metadata": {"name": "hello", "namespace": "demo", "uid": "u-1", "generation": 2},
        "spec": spec
    })
}

fn audience_config_map(who: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "audience", "namespace": "demo"},
        "data": {"who": who}
    })
}

fn reconcile(host: &TestHost, request: &Request) -> Result<Response, PluginError> {
    GreetingPlugin::reconcile(&Context::new(host), request)
}

#[test]
fn reconcile_returns_the_greeting_config_map_in_the_same_namespace() {
    let response = reconcile(
        &TestHost::new(),
        &Request::new(greeting(json!({"greeting": "Hello"}))),
    )
    .unwrap();
    assert_eq!(
        response.children,
        vec![json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "hello-greeting", "namespace": "demo",
                         "labels": {"app.kubernetes.io/name": "greeting"}},
            "data": {"message": "Hello, world!"}
        })]
    );
}

#[test]
fn retain_on_delete_marks_the_config_map_to_outlive_the_greeting() {
    let retained = reconcile(
        &TestHost::new(),
        &Request::new(greeting(
            json!({"greeting": "Hello", "retainOnDelete": true}),
        )),
    )
    .unwrap();
    assert_eq!(
        retained.children[0]["metadata"]["annotations"],
        json!({wasm_operator_sdk::RETAIN_ANNOTATION: "true"})
    );
    let collected = reconcile(
        &TestHost::new(),
        &Request::new(greeting(json!({"greeting": "Hello"}))),
    )
    .unwrap();
    assert!(
        collected.children[0]["metadata"]
            .get("annotations")
            .is_none()
    );
}

#[test]
fn audience_is_read_from_the_named_config_map_key() {
    let host = TestHost::new().with_object(audience_config_map("operators"));
    let spec = json!({"greeting": "Hi", "audienceFrom": {"configMap": "audience", "key": "who"}});
    let response = reconcile(&host, &Request::new(greeting(spec))).unwrap();
    assert_eq!(response.children[0]["data"]["message"], "Hi, operators!");
}

#[test]
fn missing_config_map_falls_back_to_the_default_audience_setting() {
    let spec = json!({"greeting": "Hi", "audienceFrom": {"configMap": "absent", "key": "who"}});
    let request =
        Request::new(greeting(spec)).with_settings(json!({"defaultAudience": "everyone"}));
    let response = reconcile(&TestHost::new(), &request).unwrap();
    assert_eq!(response.children[0]["data"]["message"], "Hi, everyone!");
}

#[test]
fn missing_key_falls_back_to_world_without_settings() {
    let host = TestHost::new().with_object(audience_config_map("operators"));
    let spec = json!({"greeting": "Hi", "audienceFrom": {"configMap": "audience", "key": "other"}});
    let response = reconcile(&host, &Request::new(greeting(spec))).unwrap();
    assert_eq!(response.children[0]["data"]["message"], "Hi, world!");
}

#[test]
fn refused_cache_read_is_a_retryable_error() {
    let host =
        TestHost::new().with_read_error(config_map_kind(), "kind v1 ConfigMap is not granted");
    let spec = json!({"greeting": "Hi", "audienceFrom": {"configMap": "audience", "key": "who"}});
    let error = reconcile(&host, &Request::new(greeting(spec))).unwrap_err();
    assert_eq!(error.reason, "KubeReadFailed");
    assert!(error.retryable);
}

#[test]
fn empty_greeting_is_a_permanent_invalid_spec_error_naming_the_field() {
    for spec in [json!({"greeting": ""}), json!({}), json!({"greeting": 7})] {
        let error = reconcile(&TestHost::new(), &Request::new(greeting(spec.clone()))).unwrap_err();
        assert_eq!(error.reason, "InvalidSpec", "{spec}");
        assert!(!error.retryable);
        assert!(
            error.message.contains("spec.greeting"),
            "{spec}: {}",
            error.message
        );
    }
}

#[test]
fn reconcile_logs_one_info_line_with_fields() {
    let host = TestHost::new();
    let response = reconcile(&host, &Request::new(greeting(json!({"greeting": "Hello"})))).unwrap();
    assert_eq!(response.children.len(), 1);
    let logs = host.logs();
    assert_eq!(logs.len(), 1);
    assert_eq!(logs[0].level, Level::Info);
    assert_eq!(logs[0].field("greeting"), Some("hello"));
    assert_eq!(logs[0].field("audience"), Some("world"));
    assert_eq!(logs[0].field("audienceSource"), Some("default"));
    assert_eq!(logs[0].field("message"), Some("Hello, world!"));
}

#[test]
fn status_has_the_message_and_a_ready_condition() {
    let response = reconcile(
        &TestHost::new(),
        &Request::new(greeting(json!({"greeting": "Hello"}))),
    )
    .unwrap();
    assert_eq!(
        response.status,
        Some(json!({
            "message": "Hello, world!",
            "conditions": [{
                "type": "Ready", "status": "True", "reason": "Reconciled",
                "message": "the greeting is published",
                "lastTransitionTime": "2025-01-01T00:00:00Z", "observedGeneration": 2
            }]
        }))
    );
}

#[test]
fn first_reconcile_emits_a_message_changed_event() {
    let response = reconcile(
        &TestHost::new(),
        &Request::new(greeting(json!({"greeting": "Hello"}))),
    )
    .unwrap();
    assert_eq!(response.events.len(), 1);
    assert_eq!(response.events[0].reason, "MessageChanged");
}

#[test]
fn steady_state_reproduces_the_status_exactly_and_emits_no_event() {
    let first = reconcile(
        &TestHost::new(),
        &Request::new(greeting(json!({"greeting": "Hello"}))),
    )
    .unwrap();
    let mut object = greeting(json!({"greeting": "Hello"}));
    object["status"] = first.status.clone().unwrap();
    let later = TestHost::new().with_now(std::time::SystemTime::now());
    let second = reconcile(&later, &Request::new(object)).unwrap();
    assert_eq!(second.status, first.status);
    assert!(second.events.is_empty());
}

#[test]
fn describe_declares_config_map_children_and_reads_and_no_sql() {
    let info = GreetingPlugin::describe();
    assert_eq!(info.name, "example-greeting");
    assert_eq!(info.version, "0.1.0");
    assert_eq!(info.target, greeting_kind());
    assert_eq!(info.child_kinds, vec![config_map_kind()]);
    assert_eq!(info.read_kinds, vec![config_map_kind()]);
    assert!(!info.sql);
    assert_eq!(
        info.settings_schema["properties"]["defaultAudience"]["default"],
        "world"
    );
}

/// The settings schema this plugin wrote by hand before deriving it from [`Settings`].
fn hand_written_settings_schema() -> Value {
    json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "properties": {"defaultAudience": {"type": "string", "default": "world"}},
        "additionalProperties": false
    })
}

#[test]
fn derived_settings_schema_accepts_and_refuses_what_the_hand_written_one_did() {
    let derived = jsonschema::validator_for(&GreetingPlugin::describe().settings_schema).unwrap();
    let hand_written = jsonschema::validator_for(&hand_written_settings_schema()).unwrap();
    let accepted = [
        json!({}),
        json!({"defaultAudience": "operators"}),
        json!({"defaultAudience": ""}),
    ];
    for settings in accepted {
        assert!(hand_written.is_valid(&settings), "{settings}");
        assert!(derived.is_valid(&settings), "{settings}");
    }
    let refused = [
        json!({"defaultAudience": 7}),
        json!({"defaultAudience": null}),
        json!({"greetingStyle": "formal"}),
        json!({"defaultAudience": "operators", "extra": true}),
        json!("operators"),
        json!(null),
    ];
    for settings in refused {
        assert!(!hand_written.is_valid(&settings), "{settings}");
        assert!(!derived.is_valid(&settings), "{settings}");
    }
}

#[test]
fn unknown_setting_is_an_invalid_settings_error_naming_it() {
    let request = Request::new(greeting(json!({"greeting": "Hi"})))
        .with_settings(json!({"defaultAudiense": "typo"}));
    let error = reconcile(&TestHost::new(), &request).unwrap_err();
    assert_eq!(error.reason, "InvalidSettings");
    assert!(
        error.message.contains("defaultAudiense"),
        "{}",
        error.message
    );
}

#[test]
fn finalize_logs_and_is_done() {
    let host = TestHost::new();
    let response = GreetingPlugin::finalize(
        &Context::new(&host),
        &Request::new(greeting(json!({"greeting": "Hello"}))),
    )
    .unwrap();
    assert!(response.done);
    assert_eq!(host.logs().len(), 1);
}
