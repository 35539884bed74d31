//! The admission decisions of the DatabaseUser plugin, with the SDK's `TestHost`.

use serde_json::{Value, json};
use wasm_operator_sdk::{
    AdmissionPlugin, AdmissionRequest, Context, Mutation, Operation, Plugin, Request, TestHost,
    Validation,
};

use crate::DatabaseUserPlugin;
use crate::fixtures::{admission, admit_create, admit_update, object};

fn spec() -> Value {
    json!({"databaseRef": {"name": "app"}, "username": "reader"})
}

fn with(mut base: Value, extra: Value) -> Value {
    if let (Some(base), Some(extra)) = (base.as_object_mut(), extra.as_object()) {
        base.extend(extra.clone());
    }
    base
}

fn user(spec: Value) -> Value {
    object("DatabaseUser", "reader", spec)
}

/// A host with the Database `infra/app`, owned by role `foo`.
fn database_host() -> TestHost {
    TestHost::new().with_object(object(
        "Database",
        "app",
        json!({"serverRef": {"name": "main"}, "credentials": {"username": "foo"}}),
    ))
}

fn validate_on(host: &TestHost, req: &AdmissionRequest) -> Validation {
    DatabaseUserPlugin::validate(&Context::new(host), req).unwrap()
}

fn validate(req: &AdmissionRequest) -> Validation {
    validate_on(&database_host(), req)
}

fn mutate(req: &AdmissionRequest) -> Mutation {
    DatabaseUserPlugin::mutate(&Context::new(&TestHost::new()), req).unwrap()
}

fn denial(validation: &Validation) -> &str {
    assert!(!validation.allowed, "allowed: {validation:?}");
    validation.message.as_deref().unwrap_or_default()
}

#[test]
fn a_valid_user_of_an_existing_database_is_allowed_without_warnings() {
    assert_eq!(validate(&admit_create(user(spec()))), Validation::allow());
}

#[test]
fn every_spec_reconcile_refuses_is_denied_with_the_field_in_the_message() {
    for (extra, field) in [
        (json!({"username": "postgres"}), "spec.username"),
        (json!({"username": "pg_read_all_data"}), "spec.username"),
        (json!({"username": "u".repeat(64)}), "spec.username"),
        (json!({"validUntil": "tomorrow"}), "spec.validUntil"),
        (json!({"connectionLimit": -5}), "spec.connectionLimit"),
        (
            json!({"passwordRotation": {"interval": "0h"}}),
            "spec.passwordRotation.interval",
        ),
        (json!({"username": "foo"}), "spec.username"),
    ] {
        let message =
            denial(&validate(&admit_create(user(with(spec(), extra.clone()))))).to_owned();
        assert!(
            message.starts_with(&format!("{field}: ")),
            "{extra}: {message}"
        );
    }
}

#[test]
fn an_unknown_access_profile_is_denied_naming_the_field() {
    let message = denial(&validate(&admit_create(user(with(
        spec(),
        json!({"access": "superuser"}),
    )))))
    .to_owned();
    assert!(message.starts_with("spec.access: "), "{message}");
    assert!(message.contains("superuser"), "{message}");
}

#[test]
fn the_owner_denial_is_the_message_reconcile_reports() {
    let owner = user(with(spec(), json!({"username": "foo"})));
    let ready = crate::fixtures::reconciled(
        object(
            "Database",
            "app",
            json!({"serverRef": {"name": "main"}, "credentials": {"username": "foo"}}),
        ),
        json!({}),
    );
    let host = crate::fixtures::server_host().with_object(ready);
    let refused = DatabaseUserPlugin::reconcile(&Context::new(&host), &Request::new(owner.clone()))
        .unwrap_err();
    assert_eq!(refused.reason, "InvalidSpec");
    assert_eq!(
        denial(&validate_on(&host, &admit_create(owner))),
        refused.message
    );
}

#[test]
fn a_database_that_does_not_exist_yet_is_allowed_with_a_warning() {
    let validation = validate_on(&TestHost::new(), &admit_create(user(spec())));
    assert!(validation.allowed);
    assert_eq!(validation.warnings.len(), 1, "{:?}", validation.warnings);
    assert!(
        validation.warnings[0].starts_with("spec.databaseRef: Database \"app\" does not exist")
    );
}

#[test]
fn username_and_database_ref_cannot_change() {
    let old = user(spec());
    for (extra, expected) in [
        (
            json!({"username": "writer"}),
            "spec.username: \"writer\" cannot change after creation (is \"reader\")",
        ),
        (
            json!({"databaseRef": {"name": "shop"}}),
            "spec.databaseRef.name: \"shop\" cannot change after creation (is \"app\")",
        ),
    ] {
        let new = user(with(spec(), extra.clone()));
        assert_eq!(denial(&validate(&admit_update(old.clone(), new))), expected);
    }
    let upgraded = user(with(
        spec(),
        json!({"access": "readWrite", "connectionLimit": 3}),
    ));
    assert!(validate(&admit_update(old, upgraded)).allowed);
}

#[test]
fn an_update_that_leaves_the_spec_alone_is_allowed_even_if_the_spec_is_refused() {
    let old = user(with(spec(), json!({"username": "postgres"})));
    let mut new = old.clone();
    new["metadata"]["finalizers"] = json!([]);
    assert!(validate(&admit_update(old, new)).allowed);
}

#[test]
fn delete_and_connect_are_allowed_and_unchanged() {
    let refused = user(with(spec(), json!({"username": "postgres"})));
    for operation in [Operation::Delete, Operation::Connect] {
        let req = admission(operation, Some(refused.clone()), Some(refused.clone()));
        assert!(validate(&req).allowed, "{operation:?}");
        assert_eq!(mutate(&req), Mutation::unchanged(), "{operation:?}");
    }
}

#[test]
fn mutation_writes_out_access_and_reclaim_policy() {
    let Mutation { object, warnings } = mutate(&admit_create(user(spec())));
    assert!(warnings.is_empty());
    assert_eq!(
        object.unwrap()["spec"],
        json!({"databaseRef": {"name": "app"}, "username": "reader",
               "access": "readOnly", "reclaimPolicy": "Delete"})
    );
}

#[test]
fn mutation_keeps_what_the_user_chose_and_is_idempotent() {
    let chosen = user(with(
        spec(),
        json!({"access": "owner", "reclaimPolicy": "Retain"}),
    ));
    assert_eq!(mutate(&admit_create(chosen)), Mutation::unchanged());
    let once = mutate(&admit_create(user(spec()))).object.unwrap();
    assert_eq!(mutate(&admit_create(once.clone())), Mutation::unchanged());
    assert_eq!(validate(&admit_create(once)), Validation::allow());
}

#[test]
fn a_spec_that_does_not_decode_is_left_to_validation() {
    let broken = user(with(spec(), json!({"access": "superuser"})));
    assert_eq!(mutate(&admit_create(broken)), Mutation::unchanged());
}
