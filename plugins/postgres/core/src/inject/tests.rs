//! The Pod credentials injector's decisions, with the SDK's `TestHost`.

use serde_json::{Value, json};
use wasm_operator_sdk::{
    AdmissionPlugin, AdmissionRequest, Context, Mutation, Operation, Plugin, TestHost, Validation,
};

use super::*;
use crate::fixtures::{admission, admit_create, object};

/// A host with Database `app` and DatabaseUser `reader` in `infra`.
fn host() -> TestHost {
    TestHost::new()
        .with_object(object(
            "Database",
            "app",
            json!({"serverRef": {"name": "main"}, "credentials": {"username": "foo"}}),
        ))
        .with_object(object(
            "DatabaseUser",
            "reader",
            json!({"databaseRef": {"name": "app"}, "username": "reader"}),
        ))
        .with_object(object(
            "DatabaseUser",
            "billing",
            json!({
                "databaseRef": {"name": "app"}, "username": "billing",
                "consumers": {"serviceAccounts": ["billing-api"]}
            }),
        ))
}

/// [`pod`], run as ServiceAccount `account` (none: the default one).
fn pod_as(account: Option<&str>, annotations: Value) -> Value {
    let mut pod = pod(annotations);
    if let Some(account) = account {
        pod["spec"]["serviceAccountName"] = json!(account);
    }
    pod
}

#[test]
fn a_user_listing_its_consumers_gives_credentials_only_to_their_pods() {
    let listed = validate(&admit_create(pod_as(
        Some("billing-api"),
        json!({INJECT_ANNOTATION: "billing"}),
    )));
    assert!(listed.allowed, "{:?}", listed.message);
    let injected = mutate(&admit_create(pod_as(
        Some("billing-api"),
        json!({INJECT_ANNOTATION: "billing"}),
    )))
    .object
    .unwrap();
    assert_eq!(
        secret_ref(container(&injected, "web"), "PGPASSWORD").0,
        "billing-user-credentials"
    );

    for account in [Some("web"), None] {
        let denied = validate(&admit_create(pod_as(
            account,
            json!({INJECT_ANNOTATION: "billing"}),
        )));
        assert!(!denied.allowed);
        let message = denied.message.unwrap();
        assert!(
            message.contains("spec.consumers.serviceAccounts")
                && message.contains(&format!("{:?}", account.unwrap_or("default"))),
            "{message}"
        );
    }
    // Without a list, any ServiceAccount of the namespace may have them.
    let open = validate(&admit_create(pod_as(
        Some("web"),
        json!({INJECT_ANNOTATION: "reader"}),
    )));
    assert!(open.allowed, "{:?}", open.message);
}

/// A Pod in `infra` with containers `web` and `worker` and init container
/// `migrate`, annotated with `annotations`.
fn pod(annotations: Value) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "web-1", "namespace": "infra", "annotations": annotations},
        "spec": {
            "initContainers": [{"name": "migrate", "image": "migrate"}],
            "containers": [
                {"name": "web", "image": "web", "env": [{"name": "PGHOST", "value": "mine"}]},
                {"name": "worker", "image": "worker"}
            ]
        }
    })
}

fn inject_into(annotations: Value) -> Value {
    mutate(&admit_create(pod(annotations))).object.unwrap()
}

fn mutate(req: &AdmissionRequest) -> Mutation {
    CredentialsInjectorPlugin::mutate(&Context::new(&host()), req).unwrap()
}

fn validate(req: &AdmissionRequest) -> Validation {
    CredentialsInjectorPlugin::validate(&Context::new(&host()), req).unwrap()
}

fn container<'a>(pod: &'a Value, name: &str) -> &'a Value {
    ["containers", "initContainers"]
        .iter()
        .filter_map(|list| pod["spec"][list].as_array())
        .flatten()
        .find(|c| c["name"] == name)
        .unwrap()
}

fn env<'a>(container: &'a Value, name: &str) -> Option<&'a Value> {
    container["env"]
        .as_array()?
        .iter()
        .find(|e| e["name"] == name)
}

fn secret_ref(container: &Value, name: &str) -> (String, String) {
    let reference = &env(container, name).unwrap()["valueFrom"]["secretKeyRef"];
    (
        reference["name"].as_str().unwrap().to_owned(),
        reference["key"].as_str().unwrap().to_owned(),
    )
}

#[test]
fn every_container_gets_secret_key_refs_never_values() {
    let injected = inject_into(json!({INJECT_ANNOTATION: "app"}));
    let worker = container(&injected, "worker");
    for (variable, key) in [
        ("PGHOST", "host"),
        ("PGPORT", "port"),
        ("PGDATABASE", "dbname"),
        ("PGUSER", "username"),
        ("PGPASSWORD", "password"),
        ("DATABASE_URL", "uri"),
    ] {
        assert_eq!(
            secret_ref(worker, variable),
            ("app-credentials".to_owned(), key.to_owned())
        );
        assert!(env(worker, variable).unwrap().get("value").is_none());
    }
    assert_eq!(
        env(worker, "SERVICE_BINDING_ROOT").unwrap()["value"],
        "/bindings"
    );
}

#[test]
fn a_variable_the_container_sets_itself_is_kept() {
    let injected = inject_into(json!({INJECT_ANNOTATION: "app"}));
    let web = container(&injected, "web");
    assert_eq!(
        env(web, "PGHOST").unwrap(),
        &json!({"name": "PGHOST", "value": "mine"})
    );
    assert_eq!(secret_ref(web, "PGUSER").0, "app-credentials");
}

#[test]
fn the_secret_is_mounted_in_the_service_binding_layout() {
    let injected = inject_into(json!({INJECT_ANNOTATION: "app"}));
    assert_eq!(
        injected["spec"]["volumes"],
        json!([{"name": "pg-app", "projected": {"sources": [{"secret": {"name": "app-credentials"}}]}}])
    );
    assert_eq!(
        container(&injected, "worker")["volumeMounts"],
        json!([{"name": "pg-app", "mountPath": "/bindings/app", "readOnly": true}])
    );
    assert_eq!(
        injected["metadata"]["annotations"][INJECTED_ANNOTATION],
        "app-credentials"
    );
}

#[test]
fn init_containers_are_injected_only_when_listed() {
    let by_default = inject_into(json!({INJECT_ANNOTATION: "app"}));
    assert!(container(&by_default, "migrate").get("env").is_none());
    let listed = inject_into(json!({
        INJECT_ANNOTATION: "app", CONTAINERS_ANNOTATION: "migrate, worker"
    }));
    assert_eq!(
        secret_ref(container(&listed, "migrate"), "PGPASSWORD").1,
        "password"
    );
    assert!(env(container(&listed, "worker"), "PGUSER").is_some());
    assert!(env(container(&listed, "web"), "PGUSER").is_none());
}

#[test]
fn a_second_resource_gets_variables_prefixed_with_its_name() {
    let injected = inject_into(json!({INJECT_ANNOTATION: "app, reader,app"}));
    let worker = container(&injected, "worker");
    assert_eq!(secret_ref(worker, "PGUSER").0, "app-credentials");
    assert_eq!(
        secret_ref(worker, "READER_PGUSER"),
        ("reader-user-credentials".to_owned(), "username".to_owned())
    );
    assert_eq!(
        injected["metadata"]["annotations"][INJECTED_ANNOTATION],
        "app-credentials,reader-user-credentials"
    );
    assert_eq!(injected["spec"]["volumes"].as_array().unwrap().len(), 2);
    assert_eq!(env_prefix("reader-2.v1"), "READER_2_V1_");
    assert_eq!(env_prefix("2nd"), "_2ND_");
}

#[test]
fn a_second_pass_changes_nothing() {
    let once = inject_into(json!({INJECT_ANNOTATION: "app,reader"}));
    assert_eq!(mutate(&admit_create(once.clone())), Mutation::unchanged());
    assert_eq!(validate(&admit_create(once)), Validation::allow());
}

#[test]
fn the_password_never_appears_in_the_pod() {
    let injected = inject_into(json!({INJECT_ANNOTATION: "app,reader"})).to_string();
    assert!(!injected.contains(crate::fixtures::PASSWORD));
    assert!(!injected.contains("\"value\":\"postgresql://"));
}

#[test]
fn a_name_that_does_not_exist_in_the_namespace_is_denied() {
    let req = admit_create(pod(json!({INJECT_ANNOTATION: "app,missing"})));
    let validation = validate(&req);
    assert!(!validation.allowed);
    assert_eq!(
        validation.message.as_deref(),
        Some(
            "systems.mikemiller.tech/inject-credentials: no Database or DatabaseUser \
             \"missing\" in namespace \"infra\""
        )
    );
    let mutation = mutate(&req);
    assert_eq!(mutation.object, None, "left for validation to deny");
    assert_eq!(mutation.warnings.len(), 1);
}

#[test]
fn another_namespace_is_denied_and_the_own_one_accepted() {
    let foreign = validate(&admit_create(pod(json!({INJECT_ANNOTATION: "prod/app"}))));
    assert!(!foreign.allowed);
    let message = foreign.message.unwrap();
    assert!(message.contains("names namespace \"prod\""), "{message}");
    let own = inject_into(json!({INJECT_ANNOTATION: "infra/app"}));
    assert_eq!(
        secret_ref(container(&own, "web"), "PGUSER").0,
        "app-credentials"
    );
}

#[test]
fn a_listed_container_the_pod_lacks_is_denied() {
    let validation = validate(&admit_create(pod(json!({
        INJECT_ANNOTATION: "app", CONTAINERS_ANNOTATION: "web,sidecar"
    }))));
    assert_eq!(
        validation.message.as_deref(),
        Some("systems.mikemiller.tech/inject-containers: the Pod has no container \"sidecar\"")
    );
}

#[test]
fn an_empty_annotation_is_denied() {
    let validation = validate(&admit_create(pod(json!({INJECT_ANNOTATION: " , "}))));
    assert!(!validation.allowed);
}

#[test]
fn pods_without_the_annotation_and_updates_are_left_alone() {
    let plain = pod(json!({}));
    assert_eq!(validate(&admit_create(plain.clone())), Validation::allow());
    assert_eq!(mutate(&admit_create(plain)), Mutation::unchanged());
    let annotated = pod(json!({INJECT_ANNOTATION: "missing"}));
    for operation in [Operation::Update, Operation::Delete, Operation::Connect] {
        let req = admission(operation, Some(annotated.clone()), Some(annotated.clone()));
        assert_eq!(validate(&req), Validation::allow(), "{operation:?}");
        assert_eq!(mutate(&req), Mutation::unchanged(), "{operation:?}");
    }
}

#[test]
fn a_refused_read_is_an_error_for_the_failure_policy() {
    let host = TestHost::new().with_read_error(crate::database_kind(), "not granted");
    let req = admit_create(pod(json!({INJECT_ANNOTATION: "app"})));
    let ctx = Context::new(&host);
    assert!(
        CredentialsInjectorPlugin::validate(&ctx, &req)
            .unwrap_err()
            .retryable
    );
    assert!(
        CredentialsInjectorPlugin::mutate(&ctx, &req)
            .unwrap_err()
            .retryable
    );
}

#[test]
fn it_admits_pods_reads_databases_and_users_and_reconciles_nothing() {
    let info = CredentialsInjectorPlugin::describe();
    assert_eq!(info.target, GroupVersionKind::core("v1", "Pod"));
    assert_eq!(info.read_kinds, [database_kind(), database_user_kind()]);
    assert!(info.child_kinds.is_empty() && !info.sql);
    let response = CredentialsInjectorPlugin::reconcile(
        &Context::new(&host()),
        &wasm_operator_sdk::Request::new(pod(json!({INJECT_ANNOTATION: "app"}))),
    )
    .unwrap();
    assert_eq!(response, wasm_operator_sdk::Response::new());
}
