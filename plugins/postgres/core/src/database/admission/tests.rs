//! The admission decisions of the Database plugin, with the SDK's `TestHost`.

use serde_json::{Value, json};
use wasm_operator_sdk::{
    AdmissionPlugin, AdmissionRequest, Context, Mutation, Operation, TestHost, Validation,
};

use crate::DatabasePlugin;
use crate::fixtures::{
    admission as request, admit_create as create, admit_update as update, object, server_host,
};

fn spec() -> Value {
    json!({"serverRef": {"name": "main"}, "credentials": {"username": "foo"}})
}

fn with(mut base: Value, extra: Value) -> Value {
    if let (Some(base), Some(extra)) = (base.as_object_mut(), extra.as_object()) {
        base.extend(extra.clone());
    }
    base
}

fn database(spec: Value) -> Value {
    object("Database", "app", spec)
}

fn validate_on(host: &TestHost, req: &AdmissionRequest) -> Validation {
    DatabasePlugin::validate(&Context::new(host), req).unwrap()
}

fn validate(req: &AdmissionRequest) -> Validation {
    validate_on(&server_host(), req)
}

fn mutate(req: &AdmissionRequest) -> Mutation {
    DatabasePlugin::mutate(&Context::new(&TestHost::new()), req).unwrap()
}

/// The denial's message, failing the test when the request was allowed.
fn denial(validation: &Validation) -> &str {
    assert!(!validation.allowed, "allowed: {validation:?}");
    validation.message.as_deref().unwrap_or_default()
}

#[test]
fn a_valid_database_on_a_consenting_server_is_allowed_without_warnings() {
    let validation = validate(&create(database(spec())));
    assert_eq!(validation, Validation::allow());
}

#[test]
fn every_spec_reconcile_refuses_is_denied_with_the_field_in_the_message() {
    let long = "d".repeat(64);
    for (extra, field) in [
        (json!({"databaseName": "postgres"}), "spec.databaseName"),
        (json!({"databaseName": long}), "spec.databaseName"),
        (
            json!({"credentials": {"username": "postgres"}}),
            "spec.credentials.username",
        ),
        (
            json!({"credentials": {"username": "pg_admin"}}),
            "spec.credentials.username",
        ),
        (json!({"schemas": ["pg_mine"]}), "spec.schemas[0]"),
        (json!({"extensions": [""]}), "spec.extensions[0]"),
        (json!({"encoding": "a\u{0}b"}), "spec.encoding"),
        (json!({"connectionLimit": -2}), "spec.connectionLimit"),
        (json!({"size": "lots"}), "spec.size"),
        (json!({"size": "10Mi"}), "spec.size"),
        (json!({"version": 13}), "spec.version"),
        (
            json!({"credentials": {"username": "foo", "passwordRotation": {"interval": "soon"}}}),
            "spec.credentials.passwordRotation.interval",
        ),
    ] {
        let message = denial(&validate(&create(database(with(spec(), extra.clone()))))).to_owned();
        assert!(
            message.starts_with(&format!("{field}: ")),
            "{extra}: {message}"
        );
    }
}

#[test]
fn the_denial_is_the_message_reconcile_reports() {
    use wasm_operator_sdk::{Plugin, Request};

    let object = database(with(
        spec(),
        json!({"credentials": {"username": "postgres"}}),
    ));
    let host = server_host();
    let refused = DatabasePlugin::reconcile(
        &Context::new(&host),
        &Request::new(object.clone()).with_server(crate::fixtures::SERVER),
    )
    .unwrap_err();
    assert_eq!(refused.reason, "InvalidSpec");
    assert_eq!(denial(&validate(&create(object))), refused.message);
}

#[test]
fn a_metadata_name_too_long_for_postgres_is_denied_saying_to_set_database_name() {
    let long = "d".repeat(64);
    let message = denial(&validate(&create(object("Database", &long, spec())))).to_owned();
    assert!(message.starts_with("metadata.name: "), "{message}");
    assert!(message.contains("set spec.databaseName"), "{message}");
}

#[test]
fn a_dedicated_database_with_a_reserved_name_is_denied_too() {
    let dedicated = json!({"size": "120Gi", "version": 14, "credentials": {"username": "foo"},
                           "databaseName": "template1"});
    let message = denial(&validate(&create(database(dedicated)))).to_owned();
    assert!(
        message.starts_with("spec.databaseName: \"template1\" is reserved"),
        "{message}"
    );
}

#[test]
fn an_unknown_field_value_is_denied_naming_the_field() {
    let message = denial(&validate(&create(database(with(
        spec(),
        json!({"reclaimPolicy": "Shred"}),
    )))))
    .to_owned();
    assert!(message.starts_with("spec.reclaimPolicy: "), "{message}");
}

#[test]
fn changing_an_immutable_field_is_denied_naming_it() {
    let old = database(with(
        spec(),
        json!({"encoding": "UTF8", "locale": "C.UTF-8", "version": 15}),
    ));
    for (extra, expected) in [
        (
            json!({"databaseName": "renamed"}),
            "spec.databaseName: \"renamed\" cannot change after creation (is \"app\")",
        ),
        (
            json!({"encoding": "LATIN1"}),
            "spec.encoding: \"LATIN1\" cannot change after creation (is \"UTF8\")",
        ),
        (
            json!({"locale": "de_DE.UTF-8"}),
            "spec.locale: \"de_DE.UTF-8\" cannot change after creation (is \"C.UTF-8\")",
        ),
        (
            json!({"locale": null}),
            "spec.locale: unset cannot change after creation (is \"C.UTF-8\")",
        ),
        (
            json!({"credentials": {"username": "bar"}}),
            "spec.credentials.username: \"bar\" cannot change after creation (is \"foo\")",
        ),
        (
            json!({"version": 16}),
            "spec.version: 16 cannot change after creation (is 15)",
        ),
    ] {
        let new = database(with(old["spec"].clone(), extra.clone()));
        assert_eq!(
            denial(&validate(&update(old.clone(), new))),
            expected,
            "{extra}"
        );
    }
}

#[test]
fn removing_database_name_is_a_rename_to_metadata_name_and_denied() {
    let old = database(with(spec(), json!({"databaseName": "shop"})));
    let message = denial(&validate(&update(old, database(spec())))).to_owned();
    assert_eq!(
        message,
        "spec.databaseName: \"app\" cannot change after creation (is \"shop\")"
    );
}

#[test]
fn writing_out_the_default_name_or_respelling_the_encoding_is_no_change() {
    let old = database(with(spec(), json!({"encoding": "UTF8"})));
    let new = database(with(
        spec(),
        json!({"databaseName": "app", "encoding": "utf-8", "connectionLimit": 5}),
    ));
    assert!(validate(&update(old, new)).allowed);
}

#[test]
fn size_may_grow_but_not_shrink() {
    let old = database(with(spec(), json!({"size": "120Gi"})));
    let grown = database(with(spec(), json!({"size": "0.5Ti"})));
    assert!(validate(&update(old.clone(), grown)).allowed);
    let shrunk = database(with(spec(), json!({"size": "100Gi"})));
    assert_eq!(
        denial(&validate(&update(old, shrunk))),
        "spec.size: \"100Gi\" is smaller than \"120Gi\"; storage can grow but not shrink"
    );
}

#[test]
fn an_update_that_leaves_the_spec_alone_is_allowed_even_if_the_spec_is_refused() {
    // The host removing its finalizer from a Database stored before a check
    // existed must never be blocked.
    let old = database(with(spec(), json!({"databaseName": "postgres"})));
    let mut new = old.clone();
    new["metadata"]["finalizers"] = json!([]);
    assert!(validate(&update(old.clone(), new)).allowed);
    let mut deleting = old.clone();
    deleting["metadata"]["deletionTimestamp"] = json!("2025-01-01T00:00:00Z");
    deleting["spec"]["connectionLimit"] = json!(3);
    assert!(validate(&update(old, deleting)).allowed);
}

#[test]
fn a_metadata_update_of_an_object_stored_without_defaults_is_still_no_spec_change() {
    // Stored before the webhook: no defaults. The update reaches validation
    // with the defaults the mutation just wrote.
    let old = database(with(spec(), json!({"databaseName": "postgres"})));
    let mut new = mutate(&update(old.clone(), old.clone())).object.unwrap();
    new["metadata"]["finalizers"] = json!(["systems.mikemiller.tech/postgres-database"]);
    assert!(validate(&update(old, new)).allowed);
}

#[test]
fn delete_and_connect_are_allowed_and_unchanged() {
    let refused = database(with(spec(), json!({"databaseName": "postgres"})));
    for operation in [Operation::Delete, Operation::Connect] {
        let req = request(operation, Some(refused.clone()), Some(refused.clone()));
        assert!(validate(&req).allowed, "{operation:?}");
        assert_eq!(mutate(&req), Mutation::unchanged(), "{operation:?}");
    }
}

#[test]
fn a_server_that_does_not_allow_the_namespace_is_denied_naming_server_ref() {
    let mut foreign = database(json!({
        "serverRef": {"name": "main", "namespace": "infra"},
        "credentials": {"username": "foo"}
    }));
    foreign["metadata"]["namespace"] = json!("other");
    let message = denial(&validate(&create(foreign.clone()))).to_owned();
    assert!(
        message.starts_with("spec.serverRef: PostgresServer infra/main"),
        "{message}"
    );
    assert!(message.contains("spec.allowedNamespaces"), "{message}");

    // `apps` is listed by the fixture server.
    foreign["metadata"]["namespace"] = json!("apps");
    assert_eq!(validate(&create(foreign)), Validation::allow());
}

#[test]
fn a_server_that_does_not_exist_yet_is_allowed_with_a_warning() {
    let validation = validate_on(&TestHost::new(), &create(database(spec())));
    assert!(validation.allowed);
    assert_eq!(validation.warnings.len(), 1);
    assert!(
        validation.warnings[0]
            .starts_with("spec.serverRef: PostgresServer infra/main does not exist"),
        "{:?}",
        validation.warnings
    );
}

#[test]
fn a_refused_server_read_is_an_error_for_the_failure_policy() {
    let host = TestHost::new().with_read_error(crate::postgres_server_kind(), "not granted");
    let error =
        DatabasePlugin::validate(&Context::new(&host), &create(database(spec()))).unwrap_err();
    assert!(error.retryable, "{error:?}");
}

#[test]
fn consent_is_not_asked_again_when_the_server_ref_is_unchanged() {
    // A server that withdrew consent shows as ServerNotAllowed at reconcile;
    // it must not block unrelated edits.
    let old = database(spec());
    let new = database(with(spec(), json!({"connectionLimit": 10})));
    let host = TestHost::new().with_read_error(crate::postgres_server_kind(), "not granted");
    assert!(validate_on(&host, &update(old, new)).allowed);
}

#[test]
fn mutation_writes_out_the_defaults() {
    let Mutation { object, warnings } = mutate(&create(database(spec())));
    assert!(warnings.is_empty());
    assert_eq!(
        object.unwrap()["spec"],
        json!({
            "serverRef": {"name": "main", "namespace": "infra"},
            "credentials": {"username": "foo"},
            "databaseName": "app",
            "reclaimPolicy": "Retain"
        })
    );
}

#[test]
fn mutation_keeps_what_the_user_chose() {
    let chosen = with(
        spec(),
        json!({"databaseName": "shop", "reclaimPolicy": "Delete",
               "serverRef": {"name": "main", "namespace": "infra"}}),
    );
    assert_eq!(mutate(&create(database(chosen))), Mutation::unchanged());
}

#[test]
fn mutation_is_idempotent() {
    let once = mutate(&create(database(spec()))).object.unwrap();
    assert_eq!(mutate(&create(once.clone())), Mutation::unchanged());
    assert_eq!(mutate(&update(once.clone(), once)), Mutation::unchanged());
}

#[test]
fn a_name_that_cannot_be_a_database_name_is_not_written_out() {
    // Left absent, so the denial still says to set spec.databaseName.
    let long = "d".repeat(64);
    for name in ["postgres", long.as_str(), ""] {
        let object = mutate(&create(object("Database", name, spec())))
            .object
            .unwrap();
        assert!(object["spec"].get("databaseName").is_none(), "{name}");
        assert_eq!(object["spec"]["reclaimPolicy"], "Retain");
    }
}

#[test]
fn the_defaulted_database_is_still_valid() {
    let defaulted = mutate(&create(database(spec()))).object.unwrap();
    assert_eq!(validate(&create(defaulted.clone())), Validation::allow());
    assert!(validate(&update(database(spec()), defaulted)).allowed);
}

/// The seed, verbatim: a dedicated instance.
fn seed() -> Value {
    json!({
        "apiVersion": "systems.mikemiller.tech/v1alpha1", "kind": "Database",
        "metadata": {"name": "foo-db", "namespace": "infra", "uid": "uid-1", "generation": 1},
        "spec": {"replication": true, "size": "120Gi", "version": 14,
                 "credentials": {"username": "foo"}}
    })
}

#[test]
fn the_seed_is_allowed_and_its_hostile_or_changed_values_are_denied_naming_the_field() {
    assert_eq!(validate(&create(seed())), Validation::allow());
    for (field, value, start) in [
        ("size", json!("-1Gi"), "spec.size:"),
        ("size", json!("1e3"), "spec.size:"),
        ("version", json!(99), "spec.version:"),
    ] {
        let mut hostile = seed();
        hostile["spec"][field] = value;
        let validation = validate(&create(hostile));
        assert!(denial(&validation).starts_with(start), "{validation:?}");
    }
    let mut upgraded = seed();
    upgraded["spec"]["version"] = json!(15);
    assert!(denial(&validate(&update(seed(), upgraded))).starts_with("spec.version"));
    let mut shrunk = seed();
    shrunk["spec"]["size"] = json!("100Gi");
    assert!(denial(&validate(&update(seed(), shrunk))).starts_with("spec.size"));
}

#[test]
fn a_dedicated_database_whose_name_cannot_name_services_is_denied() {
    let mut dotted = seed();
    dotted["metadata"]["name"] = json!("foo.db");
    assert!(denial(&validate(&create(dotted))).starts_with("metadata.name: \"foo.db\""));
}

#[test]
fn a_server_ref_cannot_be_added_to_a_database_that_has_a_dedicated_instance() {
    let mut provisioned = seed();
    provisioned["status"] = json!({"currentPrimary": "foo-db-1"});
    let mut moved = provisioned.clone();
    moved["spec"]["serverRef"] = json!({"name": "main"});
    assert!(denial(&validate(&update(provisioned, moved.clone()))).starts_with("spec.serverRef:"));
    // Before an instance exists, pointing the Database at a server is fine.
    assert!(validate(&update(seed(), moved)).allowed);
}
