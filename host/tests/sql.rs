//! The SQL executor against a real, throwaway PostgreSQL server.

mod support;

use std::time::Duration;

use support::postgres::PgServer;
use wasm_operator::postgres::{self as sql, SqlError};
use wasm_operator::runtime::{SqlPlan, SqlStatement, SqlValue};
use wasm_operator::vocabulary::ServerKey;

/// Result limits generous enough for these tests' small results.
const LIMITS: sql::ResultLimits = sql::ResultLimits {
    max_rows: 1000,
    max_bytes: 1 << 20,
};

fn statement(text: &str) -> SqlStatement {
    SqlStatement {
        statement: text.to_owned(),
        params: Vec::new(),
        non_transactional: false,
        sensitive: false,
        summary: text.to_owned(),
    }
}

fn plan(statements: Vec<SqlStatement>) -> SqlPlan {
    SqlPlan {
        server: ServerKey::new("default", "test"),
        database: None,
        statements,
    }
}

async fn exists(client: &tokio_postgres::Client, query: &str, name: &str) -> bool {
    client.query_opt(query, &[&name]).await.unwrap().is_some()
}

#[tokio::test]
async fn a_plan_runs_create_database_alone_and_groups_the_rest_in_transactions() {
    let server = PgServer::start();
    let mut client = sql::connect(&server.connection(), None).await.unwrap();
    let mut create_database = statement(r#"CREATE DATABASE "app-db" OWNER "app""#);
    create_database.non_transactional = true;
    let report = sql::run_plan(
        &mut client,
        &plan(vec![
            statement(r#"CREATE ROLE "app" LOGIN"#),
            statement(r#"COMMENT ON ROLE "app" IS 'managed'"#),
            create_database,
            statement(r#"GRANT CONNECT ON DATABASE "app-db" TO "app""#),
        ]),
    )
    .await
    .expect("the plan runs");
    assert_eq!(report.executed, 4);
    assert_eq!(report.transactions, 2);
    assert!(exists(&client, "SELECT 1 FROM pg_roles WHERE rolname = $1", "app").await);
    assert!(
        exists(
            &client,
            "SELECT 1 FROM pg_database WHERE datname = $1",
            "app-db"
        )
        .await
    );
}

#[tokio::test]
async fn a_failing_statement_rolls_back_its_group_and_stops_the_plan() {
    let server = PgServer::start();
    let mut client = sql::connect(&server.connection(), None).await.unwrap();
    let error = sql::run_plan(
        &mut client,
        &plan(vec![
            statement("CREATE TABLE kept (id int)"),
            {
                let mut s = statement("CREATE DATABASE separate");
                s.non_transactional = true;
                s
            },
            statement("CREATE TABLE rolled_back (id int)"),
            statement("INSERT INTO missing_table VALUES (1)"),
            statement("CREATE TABLE never_run (id int)"),
        ]),
    )
    .await
    .expect_err("the insert fails");
    match &error {
        SqlError::Statement {
            index,
            code,
            message,
            ..
        } => {
            assert_eq!(*index, 3);
            assert_eq!(code, "42P01");
            assert!(message.contains("missing_table"), "{message}");
        }
        other => panic!("unexpected error {other:?}"),
    }
    let table = "SELECT 1 FROM pg_tables WHERE tablename = $1";
    assert!(
        exists(&client, table, "kept").await,
        "an earlier group stays applied"
    );
    assert!(
        !exists(&client, table, "rolled_back").await,
        "the failing group is rolled back"
    );
    assert!(
        !exists(&client, table, "never_run").await,
        "the plan stops at the failure"
    );
}

#[tokio::test]
async fn errors_of_sensitive_statements_never_repeat_their_text() {
    let server = PgServer::start();
    let mut client = sql::connect(&server.connection(), None).await.unwrap();
    let mut secret = statement("ALTER ROLE nobody_here PASSWORD 'SCRAM-SHA-256$4096:TOPSECRET'");
    secret.sensitive = true;
    secret.summary = "set the password of role nobody_here".into();
    let error = sql::run_plan(&mut client, &plan(vec![secret]))
        .await
        .expect_err("no such role");
    let shown = format!("{error} {error:?}");
    assert!(!shown.contains("TOPSECRET"), "{shown}");
    assert!(
        shown.contains("set the password of role nobody_here"),
        "{shown}"
    );
    assert!(shown.contains("42704"), "the SQLSTATE is kept: {shown}");
}

#[tokio::test]
async fn parameters_are_bound_never_spliced() {
    let server = PgServer::start();
    let mut client = sql::connect(&server.connection(), None).await.unwrap();
    let hostile = r#"x'); DROP TABLE victims; --"#;
    let mut insert = statement("INSERT INTO victims (name, n) VALUES ($1, $2)");
    insert.params = vec![SqlValue::Text(hostile.into()), SqlValue::Int(7)];
    sql::run_plan(
        &mut client,
        &plan(vec![
            statement("CREATE TABLE victims (name text, n int4)"),
            insert,
        ]),
    )
    .await
    .unwrap();
    let row = client
        .query_one("SELECT name, n FROM victims", &[])
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), hostile);
    assert_eq!(row.get::<_, i32>(1), 7);
}

#[tokio::test]
async fn read_only_queries_return_typed_values_and_cannot_write() {
    let server = PgServer::start();
    let mut client = sql::connect(&server.connection(), None).await.unwrap();
    sql::prepare_reader(&client).await.unwrap();
    let result = sql::query_read_only(
        &mut client,
        "SELECT $1::int4 + 1 AS n, $2::text AS t, NULL::text AS missing, '{\"a\":1}'::jsonb AS j, true AS b",
        &[SqlValue::Int(41), SqlValue::Text("hi".into())],
        Duration::from_secs(2),
        LIMITS,
    )
    .await
    .unwrap();
    assert_eq!(result.columns, ["n", "t", "missing", "j", "b"]);
    let row = &result.rows[0];
    assert!(matches!(row[0], SqlValue::Int(42)), "{row:?}");
    assert!(matches!(&row[1], SqlValue::Text(t) if t == "hi"), "{row:?}");
    assert!(matches!(row[2], SqlValue::Null), "{row:?}");
    assert!(
        matches!(&row[3], SqlValue::Json(j) if j == r#"{"a":1}"#),
        "{row:?}"
    );
    assert!(matches!(row[4], SqlValue::Boolean(true)), "{row:?}");

    let error = sql::query_read_only(
        &mut client,
        "CREATE TABLE t (id int)",
        &[],
        Duration::from_secs(2),
        LIMITS,
    )
    .await
    .expect_err("writes are refused");
    assert!(
        matches!(&error, SqlError::Query { code, .. } if code == "25006"),
        "{error:?}"
    );

    let error = sql::query_read_only(
        &mut client,
        "SELECT pg_sleep(5)",
        &[],
        Duration::from_millis(100),
        LIMITS,
    )
    .await
    .expect_err("the statement timeout applies");
    assert!(
        matches!(&error, SqlError::Query { code, .. } if code == "57014"),
        "{error:?}"
    );
}

#[tokio::test]
async fn a_value_of_the_wrong_type_is_refused_naming_the_parameter() {
    let server = PgServer::start();
    let mut client = sql::connect(&server.connection(), None).await.unwrap();
    sql::prepare_reader(&client).await.unwrap();
    let error = sql::query_read_only(
        &mut client,
        "SELECT 1 WHERE $1::int4 > 0",
        &[SqlValue::Text("one".into())],
        Duration::from_secs(2),
        LIMITS,
    )
    .await
    .expect_err("text is not an int4");
    assert_eq!(
        error.to_string(),
        "statement 0: parameter $1 (text) cannot be bound to type int4"
    );
}

#[tokio::test]
async fn a_wrong_password_is_reported_naming_the_server() {
    let server = PgServer::start();
    let mut connection = server.connection();
    connection.password = "wrong".into();
    let error = sql::connect(&connection, None)
        .await
        .expect_err("bad password");
    let message = error.to_string();
    assert!(
        message.contains(&format!("127.0.0.1:{}", server.port)),
        "{message}"
    );
    assert!(
        message.contains("password authentication failed"),
        "{message}"
    );
    assert!(
        !message.contains("wrong"),
        "the password is not echoed: {message}"
    );
}

#[tokio::test]
async fn a_result_over_the_limits_is_cut_with_an_error_naming_the_limit() {
    let server = PgServer::start();
    let mut client = sql::connect(&server.connection(), None).await.unwrap();
    sql::prepare_reader(&client).await.unwrap();
    // 10,000 rows of 10 KiB: 100 MiB, against a 1 MiB cap.
    let started = std::time::Instant::now();
    let error = sql::query_read_only(
        &mut client,
        "SELECT repeat('x', 10240) FROM generate_series(1, 10000)",
        &[],
        Duration::from_secs(10),
        LIMITS,
    )
    .await
    .expect_err("100 MiB is over the cap");
    assert!(
        matches!(
            error,
            SqlError::QueryResultTooLarge {
                limit: 1048576,
                what: "bytes"
            }
        ),
        "{error:?}"
    );
    assert!(error.to_string().contains("1048576 bytes"), "{error}");
    println!("cut after {:?}", started.elapsed());
    let error = sql::query_read_only(
        &mut client,
        "SELECT g FROM generate_series(1, 5000) g",
        &[],
        Duration::from_secs(10),
        LIMITS,
    )
    .await
    .expect_err("5,000 rows are over the cap of 1,000");
    assert!(
        matches!(
            error,
            SqlError::QueryResultTooLarge {
                limit: 1000,
                what: "rows"
            }
        ),
        "{error:?}"
    );
}

#[tokio::test]
async fn a_query_leaves_nothing_behind_in_the_session_for_the_next_user() {
    let server = PgServer::start();
    let connection = server.connection();
    let mut client = sql::connect(&connection, None).await.unwrap();
    sql::prepare_reader(&client).await.unwrap();
    for statement in [
        "SELECT pg_advisory_lock(42)::text",
        "PREPARE s1 AS SELECT 1",
        "SELECT set_config('application_name', 'hijacked', false)",
    ] {
        let (result, reusable) = sql::query(
            &mut client,
            &connection,
            statement,
            &[],
            Duration::from_secs(2),
            LIMITS,
        )
        .await;
        result.unwrap_or_else(|e| panic!("{statement}: {e}"));
        assert!(reusable, "{statement}: the session was reset");
    }
    let row = client
        .query_one(
            "SELECT (SELECT count(*) FROM pg_prepared_statements WHERE name = 's1'), \
                    (SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()), \
                    current_setting('application_name')",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, i64>(0), 0, "no prepared statement is left");
    assert_eq!(row.get::<_, i64>(1), 0, "no advisory lock is held");
    assert_eq!(row.get::<_, String>(2), "wasm-operator");
}

#[tokio::test]
async fn a_query_abandoned_by_its_caller_is_cancelled_on_the_server() {
    let server = PgServer::start();
    let connection = server.connection();
    let mut client = sql::connect(&connection, None).await.unwrap();
    sql::prepare_reader(&client).await.unwrap();
    let abandoned = tokio::time::timeout(
        Duration::from_millis(300),
        sql::query(
            &mut client,
            &connection,
            "SELECT pg_sleep(30)",
            &[],
            Duration::from_secs(60),
            LIMITS,
        ),
    )
    .await;
    assert!(abandoned.is_err(), "the caller gave up");
    let admin = sql::connect(&connection, None).await.unwrap();
    let started = std::time::Instant::now();
    loop {
        let running: i64 = admin
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE query = 'SELECT pg_sleep(30)' AND state = 'active'",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        if running == 0 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "the abandoned query still runs on the server"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_query_runs_as_a_role_that_can_reach_no_program_file_session_or_setting() {
    let server = PgServer::start();
    let connection = server.connection();
    let mut client = sql::connect(&connection, None).await.unwrap();
    sql::prepare_reader(&client).await.unwrap();
    sql::prepare_reader(&client)
        .await
        .expect("preparing again is harmless");
    let bystander = sql::connect(&connection, None).await.unwrap();
    let pid: i32 = bystander
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0);
    let marker = std::env::temp_dir().join(format!("wasm-operator-copy-{}", std::process::id()));
    let _ = std::fs::remove_file(&marker);
    let marker_text = marker.display().to_string();
    for (statement, params) in [
        (
            format!("COPY (SELECT 1) TO PROGRAM 'touch {marker_text}'"),
            vec![],
        ),
        (format!("COPY (SELECT 1) TO '{marker_text}'"), vec![]),
        (
            "SELECT pg_terminate_backend($1)::text".to_owned(),
            vec![SqlValue::Int(pid.into())],
        ),
        ("SELECT pg_reload_conf()::text".to_owned(), vec![]),
        ("SELECT rolpassword FROM pg_authid".to_owned(), vec![]),
    ] {
        let (result, reusable) = sql::query(
            &mut client,
            &connection,
            &statement,
            &params,
            Duration::from_secs(5),
            LIMITS,
        )
        .await;
        let error = result.expect_err(&statement);
        assert!(
            matches!(&error, SqlError::Query { code, .. } if code == "42501"),
            "{statement}: {error:?}"
        );
        assert!(reusable, "{statement}");
    }
    assert!(!marker.exists(), "no program ran and no file was written");
    bystander
        .query_one("SELECT 1", &[])
        .await
        .expect("the other session is alive");
}

#[tokio::test]
async fn the_reader_sees_the_verifiers_of_plain_roles_only() {
    let server = PgServer::start();
    let connection = server.connection();
    let mut client = sql::connect(&connection, None).await.unwrap();
    sql::prepare_reader(&client).await.unwrap();
    client
        .batch_execute(
            "CREATE ROLE plain LOGIN PASSWORD 'p1'; CREATE ROLE dba LOGIN SUPERUSER PASSWORD 'p2'",
        )
        .await
        .unwrap();
    let mut verifier = async |role: &str| {
        let (result, _) = sql::query(
            &mut client,
            &connection,
            "select wasm_operator.role_verifier($1::text) as rolpassword",
            &[SqlValue::Text(role.into())],
            Duration::from_secs(5),
            LIMITS,
        )
        .await;
        result.unwrap().rows.remove(0).remove(0)
    };
    assert!(
        matches!(verifier("plain").await, SqlValue::Text(v) if v.starts_with("SCRAM-SHA-256$")),
        "a plain role's verifier is observable"
    );
    assert!(
        matches!(verifier("dba").await, SqlValue::Null),
        "a superuser's is not"
    );
}
