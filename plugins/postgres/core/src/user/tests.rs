//! Native tests of the DatabaseUser plugin's decisions, with the SDK's `TestHost`.

use serde_json::{Value, json};
use wasm_operator_sdk::{
    Context, Plugin, PluginError, QueryResult, Request, Response, SqlValue, TestHost,
};

use super::*;
use crate::fixtures::{
    PASSWORD, SERVER, host, jsonb, object, reconciled, row, secret, secret_value, server_host,
    statements, verifier_result,
};
use crate::queries;

/// What the observe query reports.
#[derive(Clone)]
struct Observe {
    role_exists: bool,
    can_login: bool,
    connection_limit: i64,
    valid_until_matches: bool,
    member: bool,
    schemas: Value,
    missing: bool,
    extra: bool,
    role_mark: Option<String>,
}

/// The comment that marks a role as created for the fixture DatabaseUser `infra/reader`.
fn mine() -> Option<String> {
    Some("wasm-operator: created for DatabaseUser infra/reader (uid uid-1)".into())
}

impl Observe {
    fn converged() -> Self {
        Self {
            role_exists: true,
            can_login: true,
            connection_limit: -1,
            valid_until_matches: true,
            member: false,
            schemas: json!(["public", "reports"]),
            missing: false,
            extra: false,
            role_mark: mine(),
        }
    }

    fn fresh() -> Self {
        Self {
            role_exists: false,
            can_login: false,
            valid_until_matches: false,
            missing: true,
            role_mark: None,
            ..Self::converged()
        }
    }

    fn result(&self) -> QueryResult {
        row(&[
            ("role_exists", SqlValue::Boolean(self.role_exists)),
            ("can_login", SqlValue::Boolean(self.can_login)),
            (
                "connection_limit",
                if self.role_exists {
                    SqlValue::Int(self.connection_limit)
                } else {
                    SqlValue::Null
                },
            ),
            (
                "valid_until_matches",
                SqlValue::Boolean(self.valid_until_matches),
            ),
            ("member", SqlValue::Boolean(self.member)),
            ("schemas", jsonb(self.schemas.clone())),
            ("missing", SqlValue::Boolean(self.missing)),
            ("extra", SqlValue::Boolean(self.extra)),
            (
                "role_mark",
                match &self.role_mark {
                    Some(mark) if self.role_exists => SqlValue::Text(mark.clone()),
                    _ => SqlValue::Null,
                },
            ),
            ("role_superuser", SqlValue::Boolean(false)),
            ("role_createrole", SqlValue::Boolean(false)),
            ("role_replication", SqlValue::Boolean(false)),
            ("role_bypassrls", SqlValue::Boolean(false)),
        ])
    }
}

/// The Database `app` (owner `foo`, database `app_db`), Ready.
fn ready_database() -> Value {
    reconciled(
        object(
            "Database",
            "app",
            json!({"serverRef": {"name": "main"}, "credentials": {"username": "foo"}}),
        ),
        json!({"server": SERVER, "databaseName": "app_db"}),
    )
}

fn spec(extra: Value) -> Value {
    let mut spec = json!({"databaseRef": {"name": "app"}, "username": "reader"});
    if let (Some(spec), Some(extra)) = (spec.as_object_mut(), extra.as_object()) {
        spec.extend(extra.clone());
    }
    spec
}

fn user(spec: Value) -> Value {
    object("DatabaseUser", "reader", spec)
}

fn converged_status() -> Value {
    json!({
        "server": SERVER, "databaseName": "app_db", "binding": {"name": "reader-user-credentials"},
        "password": {"lastRotated": "2024-06-01T00:00:00Z"}
    })
}

fn converged_request(spec: Value) -> Request {
    Request::new(reconciled(user(spec), converged_status()))
        .with_server(SERVER)
        .with_child(secret("reader-user-credentials"))
}

fn observing(host: TestHost, observe: &Observe) -> TestHost {
    host.with_object(ready_database())
        .with_query_result(queries::USER_OBSERVE, Ok(observe.result()))
}

fn reconcile(host: &TestHost, request: &Request) -> Result<Response, PluginError> {
    DatabaseUserPlugin::reconcile(&Context::new(host), request)
}

fn ready(response: &Response) -> &Value {
    &response.status.as_ref().unwrap()["conditions"][0]
}

fn reasons(response: &Response) -> Vec<&str> {
    response.events.iter().map(|e| e.reason.as_str()).collect()
}

fn read_only_grants() -> Vec<String> {
    let mut all = vec!["GRANT CONNECT ON DATABASE \"app_db\" TO \"reader\"".to_owned()];
    for schema in ["public", "reports"] {
        all.extend([
            format!("GRANT USAGE ON SCHEMA \"{schema}\" TO \"reader\""),
            format!("GRANT SELECT ON ALL TABLES IN SCHEMA \"{schema}\" TO \"reader\""),
            format!("GRANT SELECT ON ALL SEQUENCES IN SCHEMA \"{schema}\" TO \"reader\""),
            format!("ALTER DEFAULT PRIVILEGES FOR ROLE \"foo\" IN SCHEMA \"{schema}\" GRANT SELECT ON TABLES TO \"reader\""),
            format!("ALTER DEFAULT PRIVILEGES FOR ROLE \"foo\" IN SCHEMA \"{schema}\" GRANT SELECT ON SEQUENCES TO \"reader\""),
        ]);
    }
    all
}

#[test]
fn missing_database_is_database_not_ready_and_requeued_in_10_seconds() {
    let host = host();
    let response = reconcile(
        &host,
        &Request::new(user(spec(json!({})))).with_server(SERVER),
    )
    .unwrap();
    assert!(response.sql.is_empty() && host.queries().is_empty());
    assert_eq!(ready(&response)["reason"], "DatabaseNotReady");
    assert!(
        ready(&response)["message"]
            .as_str()
            .unwrap()
            .contains("does not exist")
    );
    assert_eq!(
        response.requeue_after,
        Some(std::time::Duration::from_secs(10))
    );
}

#[test]
fn database_that_is_not_ready_is_waited_for() {
    let mut database = ready_database();
    database["status"]["conditions"][0]["status"] = json!("False");
    database["status"]["conditions"][0]["reason"] = json!("ServerNotAllowed");
    let host = host().with_object(database);
    let response = reconcile(&host, &converged_request(spec(json!({})))).unwrap();
    assert_eq!(ready(&response)["reason"], "DatabaseNotReady");
    assert!(
        ready(&response)["message"]
            .as_str()
            .unwrap()
            .contains("ServerNotAllowed")
    );
    assert_eq!(response.children.len(), 1, "the existing Secret is kept");
}

#[test]
fn fresh_read_only_user_gets_a_login_role_and_the_whole_grant_set() {
    let host = observing(host(), &Observe::fresh());
    let response = reconcile(
        &host,
        &Request::new(user(spec(json!({})))).with_server(SERVER),
    )
    .unwrap();
    assert_eq!(response.sql.len(), 2);
    let create = &response.sql[0].statements[0];
    assert!(create.sensitive);
    assert!(
        create
            .statement
            .starts_with("CREATE ROLE \"reader\" LOGIN PASSWORD 'SCRAM-SHA-256$4096:")
    );
    assert!(
        create
            .statement
            .ends_with("' CONNECTION LIMIT -1 VALID UNTIL 'infinity'")
    );
    assert_eq!(response.sql[1].database.as_deref(), Some("app_db"));
    assert_eq!(statements(&response.sql[1..]), read_only_grants());
    assert_eq!(reasons(&response), ["Created"]);
    assert_eq!(ready(&response)["status"], "True");
    let queries = host.queries();
    assert_eq!(queries[0].database.as_deref(), Some("app_db"));
    assert_eq!(
        queries[0].params,
        [
            SqlValue::from("reader"),
            SqlValue::from("foo"),
            SqlValue::from("SELECT"),
            SqlValue::from("SELECT"),
            SqlValue::from("INSERT,UPDATE,DELETE"),
            SqlValue::from("USAGE,UPDATE"),
            SqlValue::from("infinity"),
        ]
    );
}

#[test]
fn converged_user_plans_nothing_and_emits_no_event() {
    let host = observing(host(), &Observe::converged());
    let request = converged_request(spec(json!({})));
    let response = reconcile(&host, &request).unwrap();
    assert!(response.sql.is_empty(), "{:?}", response.sql);
    assert!(response.events.is_empty());
    let secret = &response.children[0];
    assert_eq!(secret["metadata"]["name"], "reader-user-credentials");
    assert_eq!(secret_value(secret, "dbname"), "app_db");
    assert_eq!(secret_value(secret, "username"), "reader");
    assert_eq!(secret_value(secret, "password"), PASSWORD);
    assert_eq!(
        reconcile(&host, &request).unwrap(),
        response,
        "deterministic"
    );
}

#[test]
fn read_write_grants_rows_and_sequences_now_and_by_default() {
    let observe = Observe {
        missing: true,
        ..Observe::converged()
    };
    let host = observing(host(), &observe);
    let mut object = reconciled(
        user(spec(json!({"access": "readWrite"}))),
        converged_status(),
    );
    object["metadata"]["generation"] = json!(2);
    let request = Request::new(object)
        .with_server(SERVER)
        .with_child(secret("reader-user-credentials"));
    let response = reconcile(&host, &request).unwrap();
    let all = statements(&response.sql);
    assert!(all.contains(&"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA \"public\" TO \"reader\"".to_owned()));
    assert!(
        all.contains(
            &"GRANT SELECT, USAGE, UPDATE ON ALL SEQUENCES IN SCHEMA \"reports\" TO \"reader\""
                .to_owned()
        )
    );
    assert!(all.contains(&"ALTER DEFAULT PRIVILEGES FOR ROLE \"foo\" IN SCHEMA \"reports\" GRANT SELECT, USAGE, UPDATE ON SEQUENCES TO \"reader\"".to_owned()));
    assert_eq!(
        reasons(&response),
        ["Updated"],
        "a profile change is not drift"
    );
}

#[test]
fn downgrade_to_read_only_revokes_the_extra_privileges() {
    let observe = Observe {
        extra: true,
        ..Observe::converged()
    };
    let host = observing(host(), &observe);
    let response = reconcile(&host, &converged_request(spec(json!({})))).unwrap();
    assert_eq!(
        statements(&response.sql),
        [
            "REVOKE INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA \"public\" FROM \"reader\"",
            "ALTER DEFAULT PRIVILEGES FOR ROLE \"foo\" IN SCHEMA \"public\" REVOKE INSERT, UPDATE, DELETE ON TABLES FROM \"reader\"",
            "REVOKE USAGE, UPDATE ON ALL SEQUENCES IN SCHEMA \"public\" FROM \"reader\"",
            "ALTER DEFAULT PRIVILEGES FOR ROLE \"foo\" IN SCHEMA \"public\" REVOKE USAGE, UPDATE ON SEQUENCES FROM \"reader\"",
            "REVOKE INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA \"reports\" FROM \"reader\"",
            "ALTER DEFAULT PRIVILEGES FOR ROLE \"foo\" IN SCHEMA \"reports\" REVOKE INSERT, UPDATE, DELETE ON TABLES FROM \"reader\"",
            "REVOKE USAGE, UPDATE ON ALL SEQUENCES IN SCHEMA \"reports\" FROM \"reader\"",
            "ALTER DEFAULT PRIVILEGES FOR ROLE \"foo\" IN SCHEMA \"reports\" REVOKE USAGE, UPDATE ON SEQUENCES FROM \"reader\"",
        ]
    );
}

#[test]
fn owner_access_is_membership_and_leaving_it_revokes_membership() {
    let host = observing(host(), &Observe::converged());
    let response = reconcile(&host, &converged_request(spec(json!({"access": "owner"})))).unwrap();
    assert_eq!(statements(&response.sql), ["GRANT \"foo\" TO \"reader\""]);

    let member = Observe {
        member: true,
        ..Observe::converged()
    };
    let host = observing(crate::fixtures::host(), &member);
    let response = reconcile(&host, &converged_request(spec(json!({"access": "owner"})))).unwrap();
    assert!(response.sql.is_empty(), "converged owner");
    let response = reconcile(&host, &converged_request(spec(json!({})))).unwrap();
    assert_eq!(
        statements(&response.sql),
        ["REVOKE \"foo\" FROM \"reader\""]
    );
}

#[test]
fn missing_grants_on_an_existing_role_are_restored_as_drift() {
    let observe = Observe {
        missing: true,
        ..Observe::converged()
    };
    let host = observing(host(), &observe);
    let response = reconcile(&host, &converged_request(spec(json!({})))).unwrap();
    assert_eq!(statements(&response.sql), read_only_grants());
    assert_eq!(reasons(&response), ["DriftRepaired"]);
    assert!(
        response.events[0]
            .note
            .contains("readOnly privileges on \"app_db\" granted")
    );
}

#[test]
fn role_options_that_differ_are_altered_in_one_statement() {
    let observe = Observe {
        can_login: false,
        connection_limit: -1,
        valid_until_matches: false,
        ..Observe::converged()
    };
    let host = observing(host(), &observe);
    let spec = spec(json!({"connectionLimit": 5, "validUntil": "2030-01-01T00:00:00Z"}));
    let response = reconcile(&host, &converged_request(spec)).unwrap();
    assert_eq!(
        statements(&response.sql),
        ["ALTER ROLE \"reader\" LOGIN CONNECTION LIMIT 5 VALID UNTIL '2030-01-01T00:00:00Z'"]
    );
    assert_eq!(
        host.queries()[0].params[6],
        SqlValue::from("2030-01-01T00:00:00Z")
    );
}

#[test]
fn wrong_password_verifier_is_reset() {
    let host = observing(server_host(), &Observe::converged()).with_query_result(
        queries::ROLE_VERIFIER,
        Ok(verifier_result("changed-by-hand")),
    );
    let response = reconcile(&host, &converged_request(spec(json!({})))).unwrap();
    let statement = &response.sql[0].statements[0];
    assert!(
        statement.sensitive
            && statement
                .statement
                .starts_with("ALTER ROLE \"reader\" PASSWORD 'SCRAM-SHA-256$")
    );
    assert_eq!(reasons(&response), ["DriftRepaired"]);
}

#[test]
fn rotation_annotation_rotates_the_user_password_once() {
    let mut object = reconciled(user(spec(json!({}))), converged_status());
    object["metadata"]["annotations"] = json!({"systems.mikemiller.tech/rotate-password": "r1"});
    let host = observing(host(), &Observe::converged());
    let request = Request::new(object.clone())
        .with_server(SERVER)
        .with_child(secret("reader-user-credentials"));
    let response = reconcile(&host, &request).unwrap();
    assert_ne!(secret_value(&response.children[0], "password"), PASSWORD);
    assert_eq!(reasons(&response), ["PasswordRotated"]);
    assert_eq!(
        response.status.as_ref().unwrap()["password"]["lastRequest"],
        "r1"
    );

    object["status"]["password"]["lastRequest"] = json!("r1");
    let request = Request::new(object)
        .with_server(SERVER)
        .with_child(secret("reader-user-credentials"));
    assert!(
        reconcile(&host, &request).unwrap().sql.is_empty(),
        "acted upon once"
    );
}

#[test]
fn username_rules_are_checked_before_any_sql() {
    let cases = [
        (
            json!({"username": "pg_read_all_data"}),
            "spec.username: \"pg_read_all_data\" is reserved",
        ),
        (
            json!({"username": "public"}),
            "spec.username: \"public\" is reserved",
        ),
        (json!({"username": "u".repeat(64)}), "spec.username: "),
        (
            json!({"username": "foo"}),
            "spec.username: \"foo\" is the owner role of Database \"app\"",
        ),
        (
            json!({"validUntil": "next year"}),
            "spec.validUntil: \"next year\" is not an RFC 3339 time",
        ),
    ];
    for (extra, expected) in cases {
        let host = observing(host(), &Observe::converged());
        let error = reconcile(&host, &converged_request(spec(extra.clone()))).unwrap_err();
        assert_eq!(error.reason, "InvalidSpec", "{extra}");
        assert!(
            error.message.starts_with(expected),
            "{extra}: {}",
            error.message
        );
        assert!(host.queries().is_empty());
    }
}

#[test]
fn hostile_user_name_is_quoted_in_grants() {
    let host = observing(host(), &Observe::fresh());
    let spec = spec(json!({"username": "a\"b;drop table x;--"}));
    let response = reconcile(&host, &Request::new(user(spec)).with_server(SERVER)).unwrap();
    assert!(
        statements(&response.sql)[0].starts_with("CREATE ROLE \"a\"\"b;drop table x;--\" LOGIN")
    );
    assert_eq!(
        statements(&response.sql)[1],
        "COMMENT ON ROLE \"a\"\"b;drop table x;--\" IS 'wasm-operator: created for DatabaseUser infra/reader (uid uid-1)'",
        "the new role is marked as this DatabaseUser's"
    );
    assert_eq!(
        statements(&response.sql)[2],
        "GRANT CONNECT ON DATABASE \"app_db\" TO \"a\"\"b;drop table x;--\""
    );
}

#[test]
fn server_not_granted_is_server_not_allowed() {
    let host = observing(host(), &Observe::converged());
    let request = Request::new(user(spec(json!({}))));
    let response = reconcile(&host, &request).unwrap();
    assert_eq!(ready(&response)["reason"], "ServerNotAllowed");
    assert!(host.queries().is_empty());
}

fn finalize(host: &TestHost, request: &Request) -> Result<FinalizeResponse, PluginError> {
    DatabaseUserPlugin::finalize(&Context::new(host), request)
}

fn finalize_host(role_exists: bool, owner: Option<&str>) -> TestHost {
    finalize_marked(role_exists, owner, mine())
}

fn finalize_marked(role_exists: bool, owner: Option<&str>, mark: Option<String>) -> TestHost {
    TestHost::new().with_query_result(
        queries::USER_FINALIZE,
        Ok(row(&[
            ("role_exists", SqlValue::Boolean(role_exists)),
            ("role_mark", mark.map_or(SqlValue::Null, SqlValue::Text)),
            ("owner", owner.map_or(SqlValue::Null, SqlValue::from)),
        ])),
    )
}

#[test]
fn finalize_reassigns_and_drops_owned_objects_then_drops_the_role() {
    let host = finalize_host(true, Some("foo"));
    let response = finalize(&host, &converged_request(spec(json!({})))).unwrap();
    assert!(response.done);
    assert_eq!(response.sql[0].database.as_deref(), Some("app_db"));
    assert_eq!(response.sql[1].database, None);
    assert_eq!(
        statements(&response.sql),
        [
            "REASSIGN OWNED BY \"reader\" TO \"foo\"",
            "DROP OWNED BY \"reader\"",
            "DROP ROLE IF EXISTS \"reader\"",
        ]
    );
}

#[test]
fn finalize_keeps_a_role_this_user_did_not_create() {
    for mark in [
        None,
        Some("wasm-operator: adopted by DatabaseUser infra/reader (uid uid-1)".to_owned()),
        Some("wasm-operator: created for DatabaseUser infra/other (uid uid-2)".to_owned()),
    ] {
        let host = finalize_marked(true, Some("foo"), mark.clone());
        let response = finalize(&host, &converged_request(spec(json!({})))).unwrap();
        assert!(response.done);
        assert!(response.sql.is_empty(), "{mark:?}");
        assert_eq!(response.events[0].reason, "Kept");
    }
}

#[test]
fn an_existing_role_is_refused_unless_the_server_allows_adoption() {
    let unmarked = Observe {
        role_mark: None,
        ..Observe::converged()
    };
    let host = observing(host(), &unmarked);
    let error = reconcile(&host, &converged_request(spec(json!({})))).unwrap_err();
    assert_eq!(error.reason, "AlreadyExists");
    assert!(
        error
            .message
            .contains("role \"reader\" already exists on server infra/main")
    );

    let mut server = crate::fixtures::postgres_server();
    server["spec"]["adoptExisting"] = json!(true);
    let adopting = TestHost::new()
        .with_object(server)
        .with_query_result(queries::ROLE_VERIFIER, Ok(verifier_result(PASSWORD)));
    let host = observing(adopting, &unmarked);
    let response = reconcile(&host, &converged_request(spec(json!({})))).unwrap();
    assert_eq!(
        statements(&response.sql)[0],
        "COMMENT ON ROLE \"reader\" IS 'wasm-operator: adopted by DatabaseUser infra/reader (uid uid-1)'"
    );
}

#[test]
fn finalize_without_the_database_only_drops_the_role() {
    let host = finalize_host(true, None);
    let response = finalize(&host, &converged_request(spec(json!({})))).unwrap();
    assert_eq!(
        statements(&response.sql),
        ["DROP ROLE IF EXISTS \"reader\""]
    );
}

#[test]
fn finalize_with_retain_or_without_a_role_plans_nothing() {
    let host = TestHost::new();
    let retain = converged_request(spec(json!({"reclaimPolicy": "Retain"})));
    let response = finalize(&host, &retain).unwrap();
    assert!(response.done && response.sql.is_empty() && host.queries().is_empty());

    let host = finalize_host(false, Some("foo"));
    let response = finalize(&host, &converged_request(spec(json!({})))).unwrap();
    assert!(response.done && response.sql.is_empty());
}

#[test]
fn finalize_of_a_never_reconciled_user_is_done() {
    let host = TestHost::new();
    let response = finalize(&host, &Request::new(user(spec(json!({}))))).unwrap();
    assert!(response.done && response.sql.is_empty());
}

#[test]
fn finalize_with_server_not_granted_is_retryable() {
    let request = Request::new(reconciled(user(spec(json!({}))), converged_status()));
    let error = finalize(&TestHost::new(), &request).unwrap_err();
    assert!(error.retryable);
    assert!(
        error
            .message
            .contains("plugins.systems.mikemiller.tech/postgres-user")
    );
}

#[test]
fn describe_reads_databases_and_servers() {
    let info = DatabaseUserPlugin::describe();
    assert_eq!(info.name, "postgres-user");
    assert_eq!(info.read_kinds, [database_kind(), postgres_server_kind()]);
    assert_eq!(info.child_kinds, [secret_kind()]);
    assert!(info.sql);
}
