//! Admission benchmark, end to end: the release operator binary serving
//! the Postgres plugins' webhooks over HTTPS (its own CA), AdmissionReviews
//! sent straight to it at a fixed rate over keep-alive connections, as the
//! API server sends them.
//!
//! Rows, measured one after the other in one run:
//! - `fixed answer`: the same server, TLS, HTTP and review handling, for a
//!   binding it does not have, so it answers at once without a plugin;
//! - `Database validator`: `/validate/postgres-database`, a valid Database
//!   on a registered server (the plugin reads the server's consent through
//!   the `kube` import);
//! - `Database defaults`: `/mutate/postgres-database`;
//! - `Pod injector`: `/mutate/postgres-inject`, an annotated Pod (the
//!   plugin reads the Database it names).
//!
//! Latency is from when a review was due to when its answer was read, so a
//! server falling behind shows in the figures. Target: p99 ≤ 5 ms with a
//! plugin. `BENCH_ADMISSION_RATE` (default 2000/s), `BENCH_ADMISSION_SECONDS`
//! (default 30), `BENCH_ADMISSION_CONNECTIONS` (default 32). Run with
//! `scripts/bench.sh admission`.

#[path = "../tests/support/mod.rs"]
mod support;

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use support::cluster::{Cluster, eventually};
use support::fixtures::{self, Binding};
use support::pg_cluster;
use support::webhooks::{self, Connection};
use test_postgres::PgServer;

const LIMIT: Duration = Duration::from_secs(120);
const TARGET_P99: Duration = Duration::from_millis(5);

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn database() -> Value {
    fixtures::database(
        "app",
        "orders",
        json!({"serverRef": {"name": "main", "namespace": "db"}, "credentials": {"username": "orders_app"}}),
    )
}

fn annotated_pod() -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": "api",
            "namespace": "app",
            "annotations": {"systems.mikemiller.tech/inject-credentials": "orders"},
        },
        "spec": {"serviceAccountName": "default", "containers": [{"name": "app", "image": "app:1"}]},
    })
}

async fn run() {
    let rate: u32 = env_or("BENCH_ADMISSION_RATE", 2000);
    let seconds: u64 = env_or("BENCH_ADMISSION_SECONDS", 30);
    let connections: usize = env_or("BENCH_ADMISSION_CONNECTIONS", 32);

    let pg = PgServer::start_default_in(std::path::Path::new(env!("CARGO_TARGET_TMPDIR")))
        .expect("starting PostgreSQL");
    let cluster = Cluster::with_operator_crds("bench-admission", &["db", "app"]).await;
    let client = cluster.client();
    pg_cluster::register_server(&client, "db", pg.port(), &["app"]).await;
    pg_cluster::bind_plugins(&client, &["postgres-server", "postgres-database"], None).await;
    Binding::named("postgres-inject")
        .source_file(&support::plugin_dir().join("postgres-inject-plugin.wasm"))
        .grants(json!({"read": [
            {"group": "systems.mikemiller.tech", "version": "v1alpha1", "kind": "Database"},
            {"group": "systems.mikemiller.tech", "version": "v1alpha1", "kind": "DatabaseUser"},
        ]}))
        .create(&client)
        .await;
    let (_operator, addr, ca) = webhooks::serve(&cluster, LIMIT).await;
    pg_cluster::create(&client, Some("app"), database()).await;
    pg_cluster::wait_ready(&client, "app", "Database", "orders", LIMIT).await;

    let database_review = webhooks::review(
        "CREATE",
        &database(),
        ("systems.mikemiller.tech", "v1alpha1", "databases"),
    );
    let pod_review = webhooks::review("CREATE", &annotated_pod(), ("", "v1", "pods"));
    let rows: [(&str, &str, &[u8], Option<bool>); 4] = [
        (
            "fixed answer (no plugin)",
            "/validate/bench-no-such-binding",
            &database_review,
            None,
        ),
        (
            "Database validator",
            "/validate/postgres-database",
            &database_review,
            Some(true),
        ),
        (
            "Database defaults",
            "/mutate/postgres-database",
            &database_review,
            Some(true),
        ),
        (
            "Pod injector",
            "/mutate/postgres-inject",
            &pod_review,
            Some(true),
        ),
    ];
    for (_, path, body, allowed) in &rows {
        if allowed.is_none() {
            continue;
        }
        eventually(&format!("{path} answering"), LIMIT, || async {
            let mut connection = Connection::open(&addr, &ca).await.ok()?;
            let (status, answer) = connection.post(path, body).await.ok()?;
            let answer: Value = serde_json::from_slice(&answer).ok()?;
            (status == 200 && answer["response"]["allowed"] == true).then_some(())
        })
        .await;
    }

    println!(
        "admission: {rate} reviews/s for {seconds} s over {connections} HTTPS keep-alive connections (target: p99 ≤ {} ms with a plugin)",
        TARGET_P99.as_millis()
    );
    println!(
        "  {:<26} {:>8} {:>8} {:>8} {:>8} {:>9} {:>7}  p99 target",
        "row", "p50 ms", "p90 ms", "p99 ms", "max ms", "rate/s", "failed"
    );
    let mut baseline_p99 = None;
    for (name, path, body, allowed) in rows {
        // A short warm-up, then the measured run.
        let body = Arc::new(body.to_vec());
        webhooks::paced(
            &addr,
            &ca,
            path,
            body.clone(),
            rate / 4,
            Duration::from_secs(2),
            connections,
        )
        .await;
        let started = std::time::Instant::now();
        let samples = webhooks::paced(
            &addr,
            &ca,
            path,
            body,
            rate,
            Duration::from_secs(seconds),
            connections,
        )
        .await;
        let elapsed = started.elapsed();
        let failed = samples
            .iter()
            .filter(|s| match (&s.response, allowed) {
                (Err(_), _) => true,
                (Ok(response), Some(allowed)) => response["allowed"] != allowed,
                (Ok(response), None) => response["allowed"] != false,
            })
            .count();
        let mut latencies: Vec<Duration> = samples.iter().map(|s| s.latency).collect();
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        let p50 = webhooks::quantile(&mut latencies, 0.50);
        let p90 = webhooks::quantile(&mut latencies, 0.90);
        let p99 = webhooks::quantile(&mut latencies, 0.99);
        let max = webhooks::quantile(&mut latencies, 1.0);
        let verdict = match allowed {
            None => {
                baseline_p99 = Some(p99);
                "baseline".to_owned()
            }
            Some(_) => format!(
                "{} ({:.1}× the fixed answer)",
                if p99 <= TARGET_P99 { "met" } else { "not met" },
                ms(p99) / baseline_p99.map_or(f64::NAN, ms)
            ),
        };
        println!(
            "  {:<26} {:>8.2} {:>8.2} {:>8.2} {:>8.2} {:>9.0} {:>7}  {}",
            name,
            ms(p50),
            ms(p90),
            ms(p99),
            ms(max),
            samples.len() as f64 / elapsed.as_secs_f64(),
            failed,
            verdict
        );
    }
}

fn main() {
    if std::env::args().skip(1).any(|a| a == "--list") {
        return;
    }
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
        .block_on(run());
}
