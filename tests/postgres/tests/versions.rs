//! Every discovered PostgreSQL install starts, serves its own major version
//! over scram-sha-256, logs statements and (when shipped) preloads
//! pg_stat_statements.
//!
//! `WASM_OPERATOR_PG_REQUIRE="14 16"` makes the test fail when one of those
//! major versions is not installed (scripts/test.sh sets it).

use test_postgres::{ADMIN_USER, PgInstall, PgServer, installs};
use tokio_postgres::NoTls;

async fn connect(url: &str) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
    let (client, connection) = tokio_postgres::connect(url, NoTls).await?;
    tokio::spawn(connection);
    Ok(client)
}

fn required_majors() -> Vec<u32> {
    std::env::var("WASM_OPERATOR_PG_REQUIRE")
        .unwrap_or_default()
        .split([' ', ','])
        .filter(|w| !w.is_empty())
        .map(|w| {
            w.parse()
                .unwrap_or_else(|_| panic!("WASM_OPERATOR_PG_REQUIRE: {w:?} is not a major"))
        })
        .collect()
}

async fn check(install: &PgInstall) {
    let started = std::time::Instant::now();
    let server = PgServer::start(install).unwrap_or_else(|e| panic!("starting {install}: {e}"));
    let start_time = started.elapsed();
    let client = connect(&server.admin_url())
        .await
        .unwrap_or_else(|e| panic!("connecting to {install}: {e:?}"));
    let num: String = client
        .query_one("SELECT current_setting('server_version_num')", &[])
        .await
        .unwrap()
        .get(0);
    let num: u32 = num.parse().unwrap();
    assert_eq!(num / 10000, install.major, "{install} serves {num}");
    assert_eq!(server.major(), install.major);

    // Every statement is logged.
    assert!(
        server
            .log()
            .contains("SELECT current_setting('server_version_num')"),
        "{install}: statement not in the log:\n{}",
        server.log()
    );

    // TCP needs the password.
    let wrong = format!(
        "postgresql://{ADMIN_USER}:wrong@127.0.0.1:{}/postgres",
        server.port()
    );
    let Err(error) = connect(&wrong).await else {
        panic!("{install}: a wrong password is accepted");
    };
    let code = error.as_db_error().map(|e| e.code().code().to_owned());
    assert_eq!(code.as_deref(), Some("28P01"), "{install}: {error:?}");

    // pg_stat_statements is preloaded when the install ships it.
    let preload: String = client
        .query_one("SHOW shared_preload_libraries", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        preload.contains("pg_stat_statements"),
        install.pg_stat_statements,
        "{install}: shared_preload_libraries = {preload:?}"
    );
    if install.pg_stat_statements {
        client
            .batch_execute("CREATE EXTENSION pg_stat_statements")
            .await
            .unwrap();
        let calls: i64 = client
            .query_one("SELECT count(*) FROM pg_stat_statements", &[])
            .await
            .unwrap()
            .get(0);
        assert!(calls > 0, "{install}: pg_stat_statements is empty");
    }

    // UTF8, C locale.
    let row = client
        .query_one(
            "SELECT pg_encoding_to_char(encoding), datcollate FROM pg_database \
             WHERE datname = 'postgres'",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "UTF8");
    assert_eq!(row.get::<_, String>(1), "C");

    let data = server.data_dir();
    assert!(data.join("PG_VERSION").exists());
    drop(client);
    drop(server);
    assert!(!data.exists(), "{install}: the data directory is deleted");
    println!(
        "ok: {install}, pg_stat_statements: {}, started in {start_time:.2?}",
        install.pg_stat_statements
    );
}

#[tokio::test]
async fn every_install_starts_and_serves_its_major_version() {
    let all = installs().unwrap_or_else(|e| panic!("{e}"));
    println!("PostgreSQL installs found: {}", all.len());
    for install in &all {
        println!("  {install}");
    }
    assert!(
        !all.is_empty(),
        "no PostgreSQL install found; run scripts/install-postgres.sh"
    );
    for major in required_majors() {
        assert!(
            all.iter().any(|i| i.major == major),
            "PostgreSQL {major} is required (WASM_OPERATOR_PG_REQUIRE) but not installed; \
             run scripts/install-postgres.sh"
        );
    }
    for install in &all {
        check(install).await;
    }
}

#[tokio::test]
async fn the_default_server_starts_under_a_given_directory() {
    let parent = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"));
    let server = PgServer::start_default_in(parent).unwrap_or_else(|e| panic!("{e}"));
    assert!(server.data_dir().starts_with(parent));
    let client = connect(&server.admin_url()).await.unwrap();
    let one: i32 = client.query_one("SELECT 1", &[]).await.unwrap().get(0);
    assert_eq!(one, 1);
}

#[test]
fn a_missing_major_is_a_clear_error() {
    let error = test_postgres::install_of_major(9).unwrap_err().to_string();
    assert!(
        error.starts_with("no PostgreSQL 9 install (found: "),
        "{error}"
    );
}

#[tokio::test]
async fn a_deep_directory_moves_the_socket_to_the_temp_dir() {
    let parent = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("d".repeat(100));
    std::fs::create_dir_all(&parent).unwrap();
    let server = PgServer::start_default_in(&parent).unwrap_or_else(|e| panic!("{e}"));
    assert!(server.socket_dir().starts_with(std::env::temp_dir()));
    assert!(server.data_dir().starts_with(&parent));
    let socket_dir = server.socket_dir().to_owned();
    let client = connect(&server.admin_url()).await.unwrap();
    client.query_one("SELECT 1", &[]).await.unwrap();
    drop(server);
    assert!(!socket_dir.exists());
    std::fs::remove_dir_all(&parent).unwrap();
}
