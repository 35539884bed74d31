//! Native tests of the Database plugin's decisions, with the SDK's `TestHost`.

use std::time::{Duration, SystemTime};

use serde_json::{Value, json};
use wasm_operator_sdk::{
    Context, EventType, Level, Plugin, PluginError, QueryResult, Request, Response, SqlValue,
    TestHost,
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
    version: i64,
    role_exists: bool,
    can_login: bool,
    database_exists: bool,
    encoding: &'static str,
    locale: &'static str,
    owner: &'static str,
    connection_limit: i64,
    unavailable: Value,
    role_mark: Option<String>,
    database_mark: Option<String>,
    superuser: bool,
}

/// The comment that marks an object as created for the fixture Database `infra/app`.
fn mine() -> Option<String> {
    Some("wasm-operator: created for Database infra/app (uid uid-1)".into())
}

impl Observe {
    /// `app` owned by `foo`, on PostgreSQL 15.
    fn converged() -> Self {
        Self {
            version: 150_008,
            role_exists: true,
            can_login: true,
            database_exists: true,
            encoding: "UTF8",
            locale: "C.UTF-8",
            owner: "foo",
            connection_limit: -1,
            unavailable: json!([]),
            role_mark: mine(),
            database_mark: mine(),
            superuser: false,
        }
    }

    /// Nothing on the server yet.
    fn fresh(version: i64) -> Self {
        Self {
            version,
            role_exists: false,
            can_login: false,
            database_exists: false,
            role_mark: None,
            database_mark: None,
            ..Self::converged()
        }
    }

    fn result(&self) -> QueryResult {
        let text = |value: &str| {
            if self.database_exists {
                SqlValue::Text(value.into())
            } else {
                SqlValue::Null
            }
        };
        row(&[
            ("server_version_num", SqlValue::Int(self.version)),
            ("role_exists", SqlValue::Boolean(self.role_exists)),
            ("role_can_login", SqlValue::Boolean(self.can_login)),
            ("role_mark", mark(self.role_exists, &self.role_mark)),
            ("role_superuser", SqlValue::Boolean(self.superuser)),
            ("role_createrole", SqlValue::Boolean(false)),
            ("role_replication", SqlValue::Boolean(false)),
            ("role_bypassrls", SqlValue::Boolean(false)),
            ("database_exists", SqlValue::Boolean(self.database_exists)),
            (
                "database_mark",
                mark(self.database_exists, &self.database_mark),
            ),
            ("encoding", text(self.encoding)),
            ("locale", text(self.locale)),
            ("owner", text(self.owner)),
            (
                "connection_limit",
                if self.database_exists {
                    SqlValue::Int(self.connection_limit)
                } else {
                    SqlValue::Null
                },
            ),
            ("unavailable_extensions", jsonb(self.unavailable.clone())),
        ])
    }
}

fn mark(exists: bool, comment: &Option<String>) -> SqlValue {
    match comment {
        Some(comment) if exists => SqlValue::Text(comment.clone()),
        _ => SqlValue::Null,
    }
}

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

/// The status a previous reconcile left on `app`.
fn converged_status() -> Value {
    json!({
        "server": SERVER, "databaseName": "app", "binding": {"name": "app-credentials"},
        "password": {"lastRotated": "2024-06-01T00:00:00Z"}
    })
}

fn converged_request(spec: Value) -> Request {
    Request::new(reconciled(database(spec), converged_status()))
        .with_server(SERVER)
        .with_child(secret("app-credentials"))
}

fn observing(host: TestHost, observe: &Observe) -> TestHost {
    host.with_query_result(queries::DATABASE_OBSERVE, Ok(observe.result()))
}

fn reconcile(host: &TestHost, request: &Request) -> Result<Response, PluginError> {
    DatabasePlugin::reconcile(&Context::new(host), request)
}

fn ready(response: &Response) -> &Value {
    &response.status.as_ref().unwrap()["conditions"][0]
}

fn reasons(response: &Response) -> Vec<&str> {
    response.events.iter().map(|e| e.reason.as_str()).collect()
}

#[test]
fn fresh_database_creates_role_then_database_then_locks_public_schema_on_14() {
    let spec = with(
        spec(),
        json!({"extensions": ["pgcrypto"], "schemas": ["reports"], "connectionLimit": 20}),
    );
    let host = observing(host(), &Observe::fresh(140_011));
    let request = Request::new(database(spec)).with_server(SERVER);
    let response = reconcile(&host, &request).unwrap();

    assert_eq!(response.sql.len(), 2);
    let main = &response.sql[0];
    assert_eq!(
        (main.server.as_str(), main.database.as_deref()),
        (SERVER, None)
    );
    assert!(
        main.statements[0]
            .statement
            .starts_with("CREATE ROLE \"foo\" LOGIN PASSWORD 'SCRAM-SHA-256$4096:")
    );
    assert!(main.statements[0].sensitive);
    assert_eq!(main.statements[0].summary, "create role \"foo\"");
    assert_eq!(
        main.statements[1].statement,
        format!("COMMENT ON ROLE \"foo\" IS '{}'", mine().unwrap()),
        "the role is marked as this Database's in the transaction that creates it"
    );
    assert!(!main.statements[1].non_transactional);
    assert_eq!(
        main.statements[2].statement,
        "CREATE DATABASE \"app\" OWNER \"foo\" CONNECTION LIMIT 20"
    );
    assert!(main.statements[2].non_transactional && !main.statements[2].sensitive);
    assert_eq!(
        main.statements[3].statement,
        format!("COMMENT ON DATABASE \"app\" IS '{}'", mine().unwrap())
    );
    let inside = &response.sql[1];
    assert_eq!(inside.database.as_deref(), Some("app"));
    assert_eq!(
        statements(std::slice::from_ref(inside)),
        [
            "REVOKE CREATE ON SCHEMA public FROM PUBLIC",
            "ALTER SCHEMA public OWNER TO \"foo\"",
            "CREATE SCHEMA IF NOT EXISTS \"reports\" AUTHORIZATION \"foo\"",
            "CREATE EXTENSION IF NOT EXISTS \"pgcrypto\"",
        ]
    );
    let password = secret_value(&response.children[0], "password");
    assert_eq!(password.len(), crate::PASSWORD_LENGTH);
    assert!(
        !statements(&response.sql)
            .iter()
            .any(|s| s.contains(&password)),
        "only the verifier goes to PostgreSQL"
    );
    assert_eq!(
        ready(&response)["status"],
        "True",
        "ready in the same response as the plan"
    );
    assert_eq!(reasons(&response), ["Created"]);
    let queries = host.queries();
    assert_eq!(
        queries.len(),
        1,
        "nothing is queried inside a database that does not exist"
    );
    assert_eq!(
        queries[0].params,
        [
            SqlValue::from("foo"),
            SqlValue::from("app"),
            SqlValue::Json("[\"pgcrypto\"]".into())
        ]
    );
}

#[test]
fn fresh_database_on_15_keeps_the_public_schema_as_is_and_uses_template0_for_encoding() {
    let spec = with(spec(), json!({"encoding": "UTF8", "locale": "C"}));
    let host = observing(host(), &Observe::fresh(150_008));
    let response = reconcile(&host, &Request::new(database(spec)).with_server(SERVER)).unwrap();
    assert_eq!(
        statements(&response.sql)[2],
        "CREATE DATABASE \"app\" OWNER \"foo\" ENCODING 'UTF8' LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0"
    );
    assert_eq!(
        response.sql.len(),
        1,
        "no statements inside the new database"
    );
}

#[test]
fn converged_database_plans_nothing_and_reproduces_its_status_without_events() {
    let host = observing(host(), &Observe::converged());
    let request = converged_request(spec());
    let response = reconcile(&host, &request).unwrap();
    assert!(response.sql.is_empty(), "{:?}", response.sql);
    assert!(response.events.is_empty());
    assert_eq!(response.requeue_after, None);
    let status = response.status.clone().unwrap();
    assert_eq!(status["server"], SERVER);
    assert_eq!(status["databaseName"], "app");
    assert_eq!(status["binding"], json!({"name": "app-credentials"}));
    assert_eq!(
        status["password"],
        json!({"lastRotated": "2024-06-01T00:00:00Z"})
    );
    assert_eq!(
        status["conditions"][0]["lastTransitionTime"], "2024-06-01T00:00:00Z",
        "unchanged Ready keeps its time, so the host writes nothing"
    );
    assert_eq!(secret_value(&response.children[0], "password"), PASSWORD);

    let again = reconcile(&host, &request).unwrap();
    assert_eq!(again, response, "deterministic");
}

#[test]
fn converged_database_with_extensions_and_schemas_checks_inside_and_plans_nothing() {
    let spec = with(
        spec(),
        json!({"extensions": ["pgcrypto"], "schemas": ["reports"]}),
    );
    let host = observing(host(), &Observe::converged()).with_query_result(
        queries::DATABASE_INSIDE,
        Ok(row(&[
            ("missing_extensions", jsonb(json!([]))),
            ("missing_schemas", jsonb(json!([]))),
        ])),
    );
    let response = reconcile(&host, &converged_request(spec)).unwrap();
    assert!(response.sql.is_empty());
    let queries = host.queries();
    let inside = queries
        .iter()
        .find(|q| q.statement == queries::DATABASE_INSIDE)
        .unwrap();
    assert_eq!(inside.database.as_deref(), Some("app"));
}

#[test]
fn missing_role_is_recreated_and_reported_as_drift() {
    let observe = Observe {
        role_exists: false,
        can_login: false,
        ..Observe::converged()
    };
    let host = observing(host(), &observe);
    let response = reconcile(&host, &converged_request(spec())).unwrap();
    let statements = statements(&response.sql);
    assert_eq!(statements.len(), 2);
    assert!(statements[0].starts_with("CREATE ROLE \"foo\" LOGIN PASSWORD 'SCRAM-SHA-256$"));
    assert!(statements[1].starts_with("COMMENT ON ROLE \"foo\""));
    assert_eq!(reasons(&response), ["DriftRepaired"]);
    assert!(
        response.events[0]
            .note
            .contains("role \"foo\" was missing and was recreated")
    );
    assert!(!response.events[0].note.contains(PASSWORD));
    assert_eq!(
        secret_value(&response.children[0], "password"),
        PASSWORD,
        "the role gets the Secret's password back"
    );
}

#[test]
fn missing_database_is_recreated_and_reported_as_drift() {
    let observe = Observe {
        database_exists: false,
        ..Observe::converged()
    };
    let host = observing(host(), &observe);
    let response = reconcile(&host, &converged_request(spec())).unwrap();
    assert_eq!(
        statements(&response.sql),
        [
            "CREATE DATABASE \"app\" OWNER \"foo\"".to_owned(),
            format!("COMMENT ON DATABASE \"app\" IS '{}'", mine().unwrap())
        ]
    );
    assert_eq!(reasons(&response), ["DriftRepaired"]);
    assert!(
        response.events[0]
            .note
            .contains("database \"app\" was missing")
    );
}

#[test]
fn wrong_password_verifier_is_reset_and_reported_as_drift() {
    let host = observing(server_host(), &Observe::converged())
        .with_query_result(queries::ROLE_VERIFIER, Ok(verifier_result("someone-else")));
    let response = reconcile(&host, &converged_request(spec())).unwrap();
    assert_eq!(response.sql.len(), 1);
    let statement = &response.sql[0].statements[0];
    assert!(
        statement
            .statement
            .starts_with("ALTER ROLE \"foo\" PASSWORD 'SCRAM-SHA-256$4096:")
    );
    assert!(statement.sensitive);
    let verifier = statement.statement.split('\'').nth(1).unwrap();
    assert_eq!(crate::verify_scram_sha_256(PASSWORD, verifier), Ok(true));
    assert_eq!(reasons(&response), ["DriftRepaired"]);
    assert!(
        response.events[0]
            .note
            .contains("password of role \"foo\" reset")
    );
}

#[test]
fn role_without_password_or_with_md5_gets_the_verifier_again() {
    for stored in [
        SqlValue::Null,
        SqlValue::Text("md5a3556571e93b0d20722ba62be61e8c2d".into()),
    ] {
        let host = observing(server_host(), &Observe::converged()).with_query_result(
            queries::ROLE_VERIFIER,
            Ok(row(&[("rolpassword", stored.clone())])),
        );
        let response = reconcile(&host, &converged_request(spec())).unwrap();
        assert!(
            statements(&response.sql)[0].starts_with("ALTER ROLE \"foo\" PASSWORD"),
            "{stored:?}"
        );
    }
}

#[test]
fn unreadable_verifier_skips_the_password_check_with_a_debug_log() {
    let host = observing(server_host(), &Observe::converged()).with_query_result(
        queries::ROLE_VERIFIER,
        Err("permission denied for table pg_authid".into()),
    );
    let response = reconcile(&host, &converged_request(spec())).unwrap();
    assert!(response.sql.is_empty());
    let logs = host.logs();
    let debug = logs.iter().find(|l| l.level == Level::Debug).unwrap();
    assert!(debug.message.contains("not checking password drift"));
}

#[test]
fn rotation_annotation_sets_a_new_password_and_records_the_request() {
    let mut object = reconciled(database(spec()), converged_status());
    object["metadata"]["annotations"] =
        json!({"systems.mikemiller.tech/rotate-password": "2025-01-01"});
    let host = observing(host(), &Observe::converged());
    let request = Request::new(object)
        .with_server(SERVER)
        .with_child(secret("app-credentials"));
    let response = reconcile(&host, &request).unwrap();
    let password = secret_value(&response.children[0], "password");
    assert_ne!(password, PASSWORD);
    let statement = &response.sql[0].statements[0];
    assert!(
        statement.sensitive
            && statement
                .statement
                .starts_with("ALTER ROLE \"foo\" PASSWORD")
    );
    let verifier = statement.statement.split('\'').nth(1).unwrap();
    assert_eq!(crate::verify_scram_sha_256(&password, verifier), Ok(true));
    assert_eq!(
        response.status.as_ref().unwrap()["password"],
        json!({"lastRotated": "2025-01-01T00:00:00Z", "lastRequest": "2025-01-01"})
    );
    assert_eq!(reasons(&response), ["PasswordRotated"]);
    assert!(
        !host
            .queries()
            .iter()
            .any(|q| q.statement == queries::ROLE_VERIFIER),
        "a rotated password is not checked against the old verifier"
    );
}

#[test]
fn elapsed_rotation_interval_rotates_and_a_rotation_due_soon_is_requeued() {
    let spec = with(
        spec(),
        json!({"credentials": {"username": "foo", "passwordRotation": {"interval": "720h"}}}),
    );
    let host = observing(host(), &Observe::converged());
    let response = reconcile(&host, &converged_request(spec.clone())).unwrap();
    assert_eq!(
        reasons(&response),
        ["PasswordRotated"],
        "2024-06-01 + 30 days is past"
    );
    assert_eq!(
        response.requeue_after, None,
        "the next rotation is 30 days away: the host's resync comes first"
    );

    let last_rotated = 1_717_200_000; // 2024-06-01T00:00:00Z
    let soon =
        host_at(SystemTime::UNIX_EPOCH + Duration::from_secs(last_rotated + 720 * 3600 - 60));
    let response = reconcile(&soon, &converged_request(spec.clone())).unwrap();
    assert!(response.sql.is_empty());
    assert_eq!(
        response.requeue_after,
        Some(Duration::from_secs(60)),
        "requeued when due"
    );

    let early = host_at(SystemTime::UNIX_EPOCH + Duration::from_secs(last_rotated + 3600));
    let response = reconcile(&early, &converged_request(spec)).unwrap();
    assert_eq!(response.requeue_after, None);
}

fn host_at(now: SystemTime) -> TestHost {
    observing(host().with_now(now), &Observe::converged())
}

#[test]
fn reserved_and_overlong_names_are_refused_before_any_sql() {
    let cases = [
        (
            json!({"credentials": {"username": "pg_monitor"}}),
            "spec.credentials.username: \"pg_monitor\" is reserved",
        ),
        (
            json!({"credentials": {"username": "postgres"}}),
            "spec.credentials.username: \"postgres\" is reserved",
        ),
        (
            json!({"databaseName": "template1"}),
            "spec.databaseName: \"template1\" is reserved",
        ),
        (
            json!({"databaseName": "d".repeat(64)}),
            "spec.databaseName: ",
        ),
        (
            json!({"schemas": ["ok", "pg_temp"]}),
            "spec.schemas[1]: \"pg_temp\" is reserved",
        ),
        (
            json!({"extensions": [""]}),
            "spec.extensions[0]: must not be empty",
        ),
        (
            json!({"credentials": {"username": "foo", "passwordRotation": {"interval": "soon"}}}),
            "spec.credentials.passwordRotation.interval: \"soon\" is not a duration",
        ),
    ];
    for (extra, expected) in cases {
        let host = host();
        let request = Request::new(database(with(spec(), extra.clone()))).with_server(SERVER);
        let error = reconcile(&host, &request).unwrap_err();
        assert_eq!(error.reason, "InvalidSpec", "{extra}");
        assert!(!error.retryable);
        assert!(
            error.message.starts_with(expected),
            "{extra}: {}",
            error.message
        );
        assert!(
            host.queries().is_empty(),
            "{extra}: validated before any SQL"
        );
    }
}

#[test]
fn overlong_metadata_name_asks_for_spec_database_name() {
    let object = object("Database", &"n".repeat(70), spec());
    let error = reconcile(&host(), &Request::new(object).with_server(SERVER)).unwrap_err();
    assert!(
        error.message.starts_with("metadata.name: "),
        "{}",
        error.message
    );
    assert!(error.message.contains("set spec.databaseName"));
}

#[test]
fn unavailable_extension_is_refused_naming_its_index_and_server() {
    let spec = with(spec(), json!({"extensions": ["pgcrypto", "foo"]}));
    let observe = Observe {
        unavailable: json!(["foo"]),
        ..Observe::fresh(150_008)
    };
    let host = observing(host(), &observe);
    let error = reconcile(&host, &Request::new(database(spec)).with_server(SERVER)).unwrap_err();
    assert_eq!(error.reason, "InvalidSpec");
    assert_eq!(
        error.message,
        "spec.extensions[1]: \"foo\" is not available on server infra/main"
    );
}

#[test]
fn encoding_and_locale_cannot_change_after_creation() {
    let cases = [
        (
            json!({"encoding": "LATIN1"}),
            "spec.encoding: \"LATIN1\" cannot change after creation (is \"UTF8\")",
        ),
        (
            json!({"locale": "de_DE.UTF-8"}),
            "spec.locale: \"de_DE.UTF-8\" cannot change after creation (is \"C.UTF-8\")",
        ),
    ];
    for (extra, expected) in cases {
        let host = observing(host(), &Observe::converged());
        let error = reconcile(&host, &converged_request(with(spec(), extra))).unwrap_err();
        assert_eq!(error.reason, "InvalidSpec");
        assert_eq!(error.message, expected);
    }
    let host = observing(host(), &Observe::converged());
    let same = with(spec(), json!({"encoding": "utf-8", "locale": "C.utf8"}));
    assert!(
        reconcile(&host, &converged_request(same))
            .unwrap()
            .sql
            .is_empty(),
        "spelling variants PostgreSQL treats as equal are not a change"
    );
}

#[test]
fn database_name_cannot_change_after_creation() {
    let error = reconcile(
        &host(),
        &converged_request(with(spec(), json!({"databaseName": "renamed"}))),
    )
    .unwrap_err();
    assert_eq!(
        error.message,
        "spec.databaseName: \"renamed\" cannot change after creation (is \"app\")"
    );
}

#[test]
fn hostile_names_are_quoted_everywhere() {
    let spec = json!({
        "serverRef": {"name": "main"},
        "databaseName": "a\"b;drop table x;--",
        "credentials": {"username": "$$"},
        "schemas": ["s'; drop schema public; --"],
        "extensions": ["ext\"x"]
    });
    let observe = Observe::fresh(140_000);
    let host = observing(host(), &observe);
    let response = reconcile(&host, &Request::new(database(spec)).with_server(SERVER)).unwrap();
    let statements = statements(&response.sql);
    assert!(statements[0].starts_with("CREATE ROLE \"$$\" LOGIN PASSWORD '"));
    assert_eq!(
        statements[2],
        "CREATE DATABASE \"a\"\"b;drop table x;--\" OWNER \"$$\""
    );
    assert_eq!(
        statements[3],
        "COMMENT ON DATABASE \"a\"\"b;drop table x;--\" IS 'wasm-operator: created for Database infra/app (uid uid-1)'"
    );
    assert_eq!(statements[5], "ALTER SCHEMA public OWNER TO \"$$\"");
    assert_eq!(
        statements[6],
        "CREATE SCHEMA IF NOT EXISTS \"s'; drop schema public; --\" AUTHORIZATION \"$$\""
    );
    assert_eq!(statements[7], "CREATE EXTENSION IF NOT EXISTS \"ext\"\"x\"");
    assert_eq!(
        response.sql[1].database.as_deref(),
        Some("a\"b;drop table x;--")
    );
    let uri = secret_value(&response.children[0], "uri");
    assert!(
        uri.starts_with("postgresql://%24%24:")
            && uri.ends_with("/a%22b%3Bdrop%20table%20x%3B--?sslmode=disable"),
        "{uri}"
    );
}

#[test]
fn credentials_secret_has_every_key_from_the_server_spec() {
    let host = observing(host(), &Observe::converged());
    let response = reconcile(&host, &converged_request(spec())).unwrap();
    let secret = &response.children[0];
    assert_eq!(
        secret["metadata"],
        json!({"name": "app-credentials", "namespace": "infra",
               "annotations": {"systems.mikemiller.tech/retain-on-delete": "true"}}),
        "with the default reclaimPolicy Retain the Secret outlives the Database"
    );
    let deleting = reconcile(
        &host,
        &converged_request(with(spec(), json!({"reclaimPolicy": "Delete"}))),
    )
    .unwrap();
    assert!(
        deleting.children[0]["metadata"]
            .get("annotations")
            .is_none()
    );
    assert_eq!(secret["type"], "kubernetes.io/basic-auth");
    let expect = [
        ("username", "foo".to_owned()),
        ("password", PASSWORD.to_owned()),
        ("dbname", "app".to_owned()),
        ("host", "pg.infra.svc".to_owned()),
        ("port", "5432".to_owned()),
        (
            "uri",
            format!("postgresql://foo:{PASSWORD}@pg.infra.svc:5432/app?sslmode=disable"),
        ),
        (
            "jdbc-uri",
            format!("jdbc:postgresql://pg.infra.svc:5432/app?user=foo&password={PASSWORD}"),
        ),
        ("pgpass", format!("pg.infra.svc:5432:app:foo:{PASSWORD}")),
        ("type", "postgresql".to_owned()),
        ("provider", "wasm-operator".to_owned()),
    ];
    for (key, value) in expect {
        assert_eq!(secret_value(secret, key), value, "{key}");
    }
    assert_eq!(secret["data"].as_object().unwrap().len(), 10);
}

#[test]
fn wrong_owner_and_connection_limit_are_altered_as_spec_changes_or_drift() {
    let observe = Observe {
        owner: "someone",
        connection_limit: 3,
        can_login: false,
        ..Observe::converged()
    };
    let host = observing(host(), &observe);
    let response = reconcile(&host, &converged_request(spec())).unwrap();
    assert_eq!(
        statements(&response.sql),
        [
            "ALTER ROLE \"foo\" LOGIN",
            "ALTER DATABASE \"app\" OWNER TO \"foo\"",
            "ALTER DATABASE \"app\" CONNECTION LIMIT -1",
        ]
    );
    assert_eq!(
        reasons(&response),
        ["DriftRepaired"],
        "status was current: drift"
    );

    let mut changed = reconciled(
        database(with(spec(), json!({"connectionLimit": 3}))),
        converged_status(),
    );
    changed["metadata"]["generation"] = json!(2);
    let observe = Observe {
        connection_limit: -1,
        ..Observe::converged()
    };
    let host = observing(crate::fixtures::host(), &observe);
    let request = Request::new(changed)
        .with_server(SERVER)
        .with_child(secret("app-credentials"));
    let response = reconcile(&host, &request).unwrap();
    assert_eq!(
        statements(&response.sql),
        ["ALTER DATABASE \"app\" CONNECTION LIMIT 3"]
    );
    assert_eq!(
        reasons(&response),
        ["Updated"],
        "a new generation: a spec change"
    );
}

#[test]
fn missing_schema_and_extension_are_created_inside_the_database() {
    let spec = with(
        spec(),
        json!({"extensions": ["pgcrypto"], "schemas": ["reports"]}),
    );
    let host = observing(host(), &Observe::converged()).with_query_result(
        queries::DATABASE_INSIDE,
        Ok(row(&[
            ("missing_extensions", jsonb(json!(["pgcrypto"]))),
            ("missing_schemas", jsonb(json!(["reports"]))),
        ])),
    );
    let response = reconcile(&host, &converged_request(spec)).unwrap();
    assert_eq!(response.sql.len(), 1);
    assert_eq!(response.sql[0].database.as_deref(), Some("app"));
    assert_eq!(
        statements(&response.sql),
        [
            "CREATE SCHEMA IF NOT EXISTS \"reports\" AUTHORIZATION \"foo\"",
            "CREATE EXTENSION IF NOT EXISTS \"pgcrypto\"",
        ]
    );
    assert_eq!(reasons(&response), ["DriftRepaired"]);
}

#[test]
fn server_not_granted_is_server_not_allowed_and_keeps_the_secret() {
    let host = host();
    let request = Request::new(reconciled(database(spec()), converged_status()))
        .with_child(secret("app-credentials"));
    let response = reconcile(&host, &request).unwrap();
    assert!(response.sql.is_empty() && host.queries().is_empty());
    let ready = ready(&response);
    assert_eq!(
        (ready["status"].as_str(), ready["reason"].as_str()),
        (Some("False"), Some("ServerNotAllowed"))
    );
    let message = ready["message"].as_str().unwrap();
    assert!(
        message.contains("infra/main")
            && message.contains("does not exist")
            && message.contains("spec.allowedNamespaces")
            && message.contains("not granted"),
        "{message}"
    );
    assert_eq!(response.children.len(), 1, "the Secret is not pruned");
    assert_eq!(secret_value(&response.children[0], "password"), PASSWORD);
    assert_eq!(response.status.as_ref().unwrap()["databaseName"], "app");
}

#[test]
fn failed_observe_query_is_a_retryable_error() {
    let host =
        host().with_query_result(queries::DATABASE_OBSERVE, Err("connection refused".into()));
    let error = reconcile(&host, &converged_request(spec())).unwrap_err();
    assert_eq!(error.reason, "SqlQueryFailed");
    assert!(error.retryable);
    assert!(error.message.contains("infra/main") && error.message.contains("connection refused"));
}

fn finalize(host: &TestHost, request: &Request) -> Result<FinalizeResponse, PluginError> {
    DatabasePlugin::finalize(&Context::new(host), request)
}

fn finalize_result(version: i64, owns_other: bool) -> QueryResult {
    finalize_marked(version, owns_other, mine(), mine())
}

fn finalize_marked(
    version: i64,
    owns_other: bool,
    role_mark: Option<String>,
    database_mark: Option<String>,
) -> QueryResult {
    row(&[
        ("server_version_num", SqlValue::Int(version)),
        ("role_mark", mark(true, &role_mark)),
        ("database_mark", mark(true, &database_mark)),
        ("owns_other_databases", SqlValue::Boolean(owns_other)),
    ])
}

#[test]
fn finalize_drops_only_what_this_database_created() {
    let spec = with(spec(), json!({"reclaimPolicy": "Delete"}));
    let adopted = Some("wasm-operator: adopted by Database infra/app (uid uid-1)".to_owned());
    let another = Some("wasm-operator: created for Database other/app (uid uid-2)".to_owned());
    for (role_mark, database_mark, expected) in [
        (None, None, vec![]),
        (adopted.clone(), adopted.clone(), vec![]),
        (another.clone(), another, vec![]),
        (
            Some("hand-made".to_owned()),
            mine(),
            vec!["DROP DATABASE IF EXISTS \"app\" WITH (FORCE)"],
        ),
        (mine(), adopted, vec!["DROP ROLE IF EXISTS \"foo\""]),
    ] {
        let host = TestHost::new().with_query_result(
            queries::DATABASE_FINALIZE,
            Ok(finalize_marked(
                150_008,
                false,
                role_mark.clone(),
                database_mark.clone(),
            )),
        );
        let response = finalize(&host, &converged_request(spec.clone())).unwrap();
        assert!(response.done);
        assert_eq!(
            statements(&response.sql),
            expected,
            "{role_mark:?} {database_mark:?}"
        );
        if expected.len() < 2 {
            let kept = response.events.iter().find(|e| e.reason == "Kept").unwrap();
            assert_eq!(kept.event_type, EventType::Warning);
        }
    }
}

#[test]
fn finalize_with_retain_policy_is_done_without_sql() {
    let host = TestHost::new();
    let response = finalize(&host, &converged_request(spec())).unwrap();
    assert!(response.done && response.sql.is_empty());
    assert!(host.queries().is_empty());
}

#[test]
fn finalize_with_delete_policy_drops_the_database_with_force_then_the_role() {
    let host = TestHost::new().with_query_result(
        queries::DATABASE_FINALIZE,
        Ok(finalize_result(150_008, false)),
    );
    let spec = with(spec(), json!({"reclaimPolicy": "Delete"}));
    let response = finalize(&host, &converged_request(spec)).unwrap();
    assert!(response.done);
    assert_eq!(
        statements(&response.sql),
        [
            "DROP DATABASE IF EXISTS \"app\" WITH (FORCE)",
            "DROP ROLE IF EXISTS \"foo\""
        ]
    );
    assert!(response.sql[0].statements[0].non_transactional);
    assert_eq!(response.events[0].reason, "Deleted");
}

#[test]
fn finalize_on_postgres_12_terminates_sessions_first_and_keeps_a_role_owning_other_databases() {
    let host = TestHost::new().with_query_result(
        queries::DATABASE_FINALIZE,
        Ok(finalize_result(120_000, true)),
    );
    let spec = with(spec(), json!({"reclaimPolicy": "Delete"}));
    let response = finalize(&host, &converged_request(spec)).unwrap();
    assert_eq!(
        statements(&response.sql),
        [
            "select pg_terminate_backend(pid) from pg_stat_activity where datname = $1",
            "DROP DATABASE IF EXISTS \"app\"",
        ]
    );
    assert_eq!(
        response.sql[0].statements[0].params,
        [SqlValue::from("app")]
    );
}

#[test]
fn finalize_with_unavailable_server_is_retryable_and_says_how_to_get_out() {
    let spec = with(spec(), json!({"reclaimPolicy": "Delete"}));
    let not_granted = Request::new(reconciled(database(spec.clone()), converged_status()));
    let unreachable = converged_request(spec);
    let host = TestHost::new().with_query_result(queries::DATABASE_FINALIZE, Err("timeout".into()));
    for request in [not_granted, unreachable] {
        let error = finalize(&host, &request).unwrap_err();
        assert_eq!(error.reason, "ServerUnavailable");
        assert!(error.retryable);
        assert!(
            error.message.contains("fix the server")
                && error
                    .message
                    .contains("plugins.systems.mikemiller.tech/postgres-database"),
            "{}",
            error.message
        );
    }
}

#[test]
fn finalize_never_drops_reserved_names() {
    let spec = json!({"serverRef": {"name": "main"}, "databaseName": "postgres",
                      "credentials": {"username": "postgres"}, "reclaimPolicy": "Delete"});
    let host = TestHost::new();
    let response = finalize(&host, &Request::new(database(spec)).with_server(SERVER)).unwrap();
    assert!(response.done && response.sql.is_empty());
}

#[test]
fn describe_declares_the_children_of_both_modes_server_reads_and_sql() {
    let info = DatabasePlugin::describe();
    assert_eq!(info.name, "postgres-database");
    assert_eq!(info.target, database_kind());
    let kinds: Vec<String> = info
        .child_kinds
        .iter()
        .map(|kind| format!("{} {}", kind.api_version(), kind.kind))
        .collect();
    assert_eq!(
        kinds,
        [
            "v1 Secret",
            "v1 Pod",
            "v1 PersistentVolumeClaim",
            "v1 Service",
            "v1 ConfigMap",
            "policy/v1 PodDisruptionBudget",
            "systems.mikemiller.tech/v1alpha1 PostgresServer",
        ]
    );
    assert_eq!(info.read_kinds, [postgres_server_kind()]);
    assert!(info.sql);
}

#[test]
fn a_role_or_database_another_resource_owns_is_refused_naming_it_and_nothing_runs() {
    let theirs = Some("wasm-operator: created for Database other/first (uid uid-9)".to_owned());
    for observe in [
        Observe {
            role_mark: theirs.clone(),
            ..Observe::converged()
        },
        Observe {
            database_mark: theirs.clone(),
            ..Observe::converged()
        },
    ] {
        let host = observing(host(), &observe);
        let request = Request::new(database(spec())).with_server(SERVER);
        let error = reconcile(&host, &request).unwrap_err();
        assert_eq!(error.reason, "OwnedByAnother");
        assert!(!error.retryable);
        assert!(
            error
                .message
                .contains("belongs to Database other/first (uid uid-9)"),
            "{}",
            error.message
        );
        assert_eq!(host.queries().len(), 1, "only the observe query runs");
    }
}

#[test]
fn an_existing_superuser_is_never_taken_over_even_where_adoption_is_allowed() {
    let superuser = Observe {
        superuser: true,
        role_mark: None,
        database_exists: false,
        ..Observe::converged()
    };
    let mut server = crate::fixtures::postgres_server();
    server["spec"]["adoptExisting"] = json!(true);
    for host in [host(), TestHost::new().with_object(server)] {
        let host = observing(host, &superuser);
        let error =
            reconcile(&host, &Request::new(database(spec())).with_server(SERVER)).unwrap_err();
        assert_eq!(error.reason, "PrivilegedRole");
        assert!(error.message.contains("SUPERUSER"), "{}", error.message);
    }
}

#[test]
fn an_unmarked_role_is_already_exists_unless_the_server_allows_adoption() {
    let unmarked = Observe {
        role_mark: None,
        database_exists: false,
        ..Observe::converged()
    };
    let host = observing(host(), &unmarked);
    let error = reconcile(&host, &Request::new(database(spec())).with_server(SERVER)).unwrap_err();
    assert_eq!(error.reason, "AlreadyExists");
    assert!(
        error
            .message
            .contains("spec.adoptExisting: true on PostgresServer infra/main")
    );

    let mut server = crate::fixtures::postgres_server();
    server["spec"]["adoptExisting"] = json!(true);
    let host = observing(TestHost::new().with_object(server), &unmarked);
    let response = reconcile(&host, &Request::new(database(spec())).with_server(SERVER)).unwrap();
    let statements = statements(&response.sql);
    assert_eq!(
        statements[0],
        "COMMENT ON ROLE \"foo\" IS 'wasm-operator: adopted by Database infra/app (uid uid-1)'"
    );
    assert!(
        statements[1].starts_with("ALTER ROLE \"foo\" PASSWORD"),
        "a new password for the Secret"
    );
}

#[test]
fn a_database_created_but_not_yet_marked_is_marked_on_the_next_reconcile() {
    let interrupted = Observe {
        database_mark: None,
        ..Observe::converged()
    };
    let host = observing(host(), &interrupted);
    let response = reconcile(&host, &converged_request(spec())).unwrap();
    assert_eq!(
        statements(&response.sql),
        [format!(
            "COMMENT ON DATABASE \"app\" IS '{}'",
            mine().unwrap()
        )]
    );
}

#[test]
fn dedicated_instance_fields_are_validated_with_a_server_ref_before_any_query() {
    for (fields, field) in [
        (json!({"size": "-1Gi"}), "spec.size"),
        (json!({"size": "lots"}), "spec.size"),
        (json!({"version": 99}), "spec.version"),
    ] {
        let host = observing(host(), &Observe::converged());
        let error = reconcile(&host, &converged_request(with(spec(), fields.clone()))).unwrap_err();
        assert_eq!(error.reason, "InvalidSpec", "{fields}");
        assert!(
            error.message.starts_with(field),
            "{fields}: {}",
            error.message
        );
        assert!(host.queries().is_empty(), "{fields}: no SQL");
    }
}

#[test]
fn the_seeds_dedicated_fields_on_a_server_are_reported_as_ignored() {
    let seed = with(
        spec(),
        json!({"size": "120Gi", "version": 14, "replication": true}),
    );
    let host = observing(host(), &Observe::converged());
    let response = reconcile(&host, &converged_request(seed)).unwrap();
    let status = response.status.clone().unwrap();
    let ignored = status["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "SpecIgnored")
        .unwrap();
    assert_eq!(ignored["reason"], "VersionMismatch");
    assert!(
        ignored["message"]
            .as_str()
            .unwrap()
            .contains("spec.version is 14 but server infra/main runs PostgreSQL 15"),
    );
    assert_eq!(
        ready(&response)["status"],
        "True",
        "the database itself is ready"
    );
    assert!(reasons(&response).contains(&"VersionMismatch"));

    let mut again = converged_request(spec()).object.into_value();
    again["status"] = status;
    let request = Request::new(again)
        .with_server(SERVER)
        .with_child(secret("app-credentials"));
    let cleared = reconcile(&host, &request).unwrap();
    assert!(
        !cleared.status.unwrap()["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["type"] == "SpecIgnored"),
        "the condition goes once the fields go"
    );
}
