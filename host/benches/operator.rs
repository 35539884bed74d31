//! Operator benchmarks, end to end (release operator binary, test API
//! server, real plugins, real PostgreSQL):
//!
//! - `noop`: N Greetings converged, then the rate of no-op reconciles the
//!   operator sustains (every object is re-queued every second) and its RSS.
//!   N = 1,000 and 10,000 (`BENCH_NOOP_OBJECTS=1000,10000`).
//! - `postgres`: time to converge 1,000 Databases on one server beside the
//!   same DDL sent by a plain `psql` script, in the same run
//!   (`BENCH_DATABASES=1000`).
//!
//! Run with `scripts/bench.sh` (`cargo bench -p wasm-operator --bench
//! operator [-- noop|postgres]`). Numbers are printed, not asserted: these
//! machines are noisy. With `BENCH_BASELINE_BIN=<another wasm-operator
//! build>`, `noop` runs that build too, on the same objects right after
//! this one, and prints both lines side by side.

#[path = "../tests/support/mod.rs"]
mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use kube::api::{Api, DynamicObject, ListParams, PostParams};
use kube::core::{ApiResource, GroupVersionKind};
use serde_json::{Value, json};
use support::cluster::{Cluster, eventually, metric, scrape};
use support::fixtures::{self, Binding};
use support::pg_cluster;
use test_postgres::PgServer;

fn resource(group: &str, kind: &str) -> ApiResource {
    ApiResource::from_gvk(&GroupVersionKind::gvk(group, "v1alpha1", kind))
}

fn plugin(name: &str) -> String {
    let path = support::plugin_dir().join(format!("{name}.wasm"));
    assert!(
        path.exists(),
        "{} is missing: run scripts/build-plugins.sh",
        path.display()
    );
    path.canonicalize().unwrap().display().to_string()
}

async fn create_all(api: &Api<DynamicObject>, objects: Vec<Value>) {
    // A few writers in parallel, as `kubectl apply` of a large manifest would.
    let chunks: Vec<Vec<Value>> = objects.chunks(64).map(<[Value]>::to_vec).collect();
    for chunk in chunks {
        let writes = chunk.into_iter().map(|object| {
            let api = api.clone();
            async move {
                api.create(
                    &PostParams::default(),
                    &serde_json::from_value(object).unwrap(),
                )
                .await
                .unwrap();
            }
        });
        futures::future::join_all(writes).await;
    }
}

fn ready_count(list: &[DynamicObject]) -> usize {
    list.iter()
        .filter(|o| {
            o.data["status"]["conditions"].as_array().is_some_and(|c| {
                c.iter()
                    .any(|c| c["type"] == "Ready" && c["status"] == "True")
            })
        })
        .count()
}

async fn wait_all_ready(api: &Api<DynamicObject>, n: usize, limit: Duration) {
    eventually(&format!("{n} objects Ready"), limit, || async {
        // Listing thousands of objects is not free: look once a second.
        tokio::time::sleep(Duration::from_secs(1)).await;
        let list = api.list(&ListParams::default()).await.ok()?;
        (ready_count(&list.items) >= n).then_some(())
    })
    .await;
}

/// Resident set size of a process in MiB, from /proc.
fn rss_mib(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

async fn noop(objects: usize) {
    let baseline = std::env::var_os("BENCH_BASELINE_BIN").map(PathBuf::from);
    let this = PathBuf::from(env!("CARGO_BIN_EXE_wasm-operator"));
    for (label, binary) in
        std::iter::once(("this build", this)).chain(baseline.map(|b| ("baseline", b)))
    {
        noop_with(objects, label, &binary).await;
    }
}

async fn noop_with(objects: usize, label: &str, binary: &Path) {
    let name = format!("bench-noop-{objects}-{}", label.replace(' ', "-"));
    let cluster = Cluster::with_greetings(&name, &["bench"]).await;
    let client = cluster.client();
    Binding::named("greeting")
        .source_file(Path::new(&plugin("example-plugin")))
        .limits(json!({"concurrency": 16}))
        .grants(json!({
            "children": [{"version": "v1", "kind": "ConfigMap"}],
            "read": [{"version": "v1", "kind": "ConfigMap"}],
        }))
        .create(&client)
        .await;
    let greetings = Api::<DynamicObject>::namespaced_with(
        client.clone(),
        "bench",
        &resource("examples.systems.mikemiller.tech", "Greeting"),
    );
    create_all(
        &greetings,
        (0..objects)
            .map(|i| {
                fixtures::greeting("bench", &format!("g-{i:05}"), json!({"greeting": "Hello"}))
            })
            .collect(),
    )
    .await;
    // Converge with the default resync first: a resync shorter than the
    // operator can serve is an overload, under which kube-runtime's scheduler
    // keeps serving the same already-converged objects and starves the rest.
    let started = Instant::now();
    let mut converging = cluster.start_operator_binary(binary, &["--leader-election=false"]);
    wait_all_ready(&greetings, objects, Duration::from_secs(1800)).await;
    let converged = started.elapsed();
    converging.kill();
    // Steady state: a fresh operator whose every reconcile is a no-op, each
    // object re-queued every 0.2 s (more than the operator can serve, so the
    // rate measured is its capacity).
    let operator = cluster.start_operator_binary(
        binary,
        &["--leader-election=false", "--resync-seconds", "0.2"],
    );
    tokio::time::sleep(Duration::from_secs(5)).await;
    let window = Duration::from_secs(10);
    let before = metric(
        &scrape(&operator.http).await,
        "wasm_operator_reconciles_total",
    );
    tokio::time::sleep(window).await;
    let after_text = scrape(&operator.http).await;
    let after = metric(&after_text, "wasm_operator_reconciles_total");
    // The restarted operator found everything converged: it writes nothing.
    let writes = metric(&after_text, "wasm_operator_writes_total") as u64;
    // Overloaded on purpose: the queue shows the work waiting.
    let depth = metric(&after_text, "wasm_operator_queue_depth") as u64;
    let rate = (after - before) / window.as_secs_f64();
    let rss = rss_mib(operator.pid());
    println!(
        "noop/{objects:<6} {label:<10} converge {:>7.2} s | no-op reconciles {:>8.0} /s (target >= 2000) | RSS {:>6.1} MiB (target <= 150) | queue depth {depth} | writes after restart {writes}",
        converged.as_secs_f64(),
        rate,
        rss
    );
}

/// The DDL of one converged Database, as a DBA would type it.
fn ddl(i: usize) -> String {
    let verifier = wasm_operator_sdk::scram_sha_256_verifier(&format!("password-{i}"));
    format!(
        "CREATE ROLE \"owner-{i:04}\" LOGIN PASSWORD '{verifier}';\nCREATE DATABASE \"db-{i:04}\" OWNER \"owner-{i:04}\";\n"
    )
}

/// Flushes dirty pages to disk, so that a phase does not pay for the
/// writeback of the one before (1,000 `CREATE DATABASE`s write gigabytes).
fn settle() -> Duration {
    let started = Instant::now();
    let status = Command::new("sync").status().expect("running sync");
    assert!(status.success(), "sync failed");
    started.elapsed()
}

/// Where the benchmark's servers keep their data: in memory (`/dev/shm`)
/// when it has room, because this machine's disk throughput swings by 3x
/// from one minute to the next and 1,000 `CREATE DATABASE`s are mostly
/// writes; else the target directory.
fn data_parent() -> PathBuf {
    const NEEDED_KIB: u64 = 12 << 20;
    let shm = Path::new("/dev/shm");
    let available = Command::new("df")
        .args(["-k", "--output=avail"])
        .arg(shm)
        .output()
        .ok()
        .and_then(|out| {
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .nth(1)?
                .trim()
                .parse::<u64>()
                .ok()
        });
    if available.is_some_and(|kib| kib >= NEEDED_KIB) {
        shm.to_path_buf()
    } else {
        PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
    }
}

async fn postgres(databases: usize) {
    let work = Path::new(env!("CARGO_TARGET_TMPDIR"));
    let data = data_parent();
    println!("postgres/{databases}: server data in {}", data.display());

    // Baseline: the same DDL from psql, on a server of its own.
    settle();
    let baseline_server = PgServer::start_default_in(&data).unwrap();
    let script = work.join("bench-ddl.sql");
    std::fs::write(&script, (0..databases).map(ddl).collect::<String>()).unwrap();
    let started = Instant::now();
    let status = Command::new("psql")
        .arg(baseline_server.admin_url())
        .args(["-q", "-v", "ON_ERROR_STOP=1", "-f"])
        .arg(&script)
        .status()
        .expect("running psql");
    assert!(status.success(), "psql failed");
    let psql = started.elapsed();
    drop(baseline_server);
    let flushed = settle();

    let pg = PgServer::start_default_in(&data).unwrap();
    let cluster = Cluster::with_operator_crds("bench-postgres", &["db"]).await;
    let client = cluster.client();
    pg_cluster::register_server(&client, "db", pg.port(), &[]).await;
    pg_cluster::bind_plugins(&client, &["postgres-server", "postgres-database"], Some(8)).await;
    let operator = cluster.start_operator(&["--leader-election=false"]);
    let servers = Api::<DynamicObject>::namespaced_with(
        client.clone(),
        "db",
        &resource("systems.mikemiller.tech", "PostgresServer"),
    );
    wait_all_ready(&servers, 1, Duration::from_secs(60)).await;
    let api = Api::<DynamicObject>::namespaced_with(
        client.clone(),
        "db",
        &resource("systems.mikemiller.tech", "Database"),
    );
    let objects = (0..databases)
        .map(|i| {
            fixtures::database(
                "db",
                &format!("db-{i:04}"),
                json!({
                    "serverRef": {"name": "main"},
                    "credentials": {"username": format!("owner-{i:04}")},
                }),
            )
        })
        .collect();
    let started = Instant::now();
    create_all(&api, objects).await;
    wait_all_ready(&api, databases, Duration::from_secs(3600)).await;
    let operator_time = started.elapsed();
    let rss = rss_mib(operator.pid());
    println!(
        "postgres/{databases}: psql script {:>7.2} s | operator converge {:>7.2} s | ratio {:.2}x (target <= 1.3x) | operator RSS {rss:.1} MiB | writeback between phases {:.1} s",
        psql.as_secs_f64(),
        operator_time.as_secs_f64(),
        operator_time.as_secs_f64() / psql.as_secs_f64(),
        flushed.as_secs_f64()
    );
    let count = api.list(&ListParams::default()).await.unwrap().items.len();
    assert_eq!(count, databases);
}

fn main() {
    let filter: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let wants = |name: &str| filter.is_empty() || filter.iter().any(|f| name.contains(f.as_str()));
    let tokio = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    if wants("noop") {
        let sizes = std::env::var("BENCH_NOOP_OBJECTS").unwrap_or_else(|_| "1000,10000".into());
        for n in sizes.split(',').filter_map(|n| n.trim().parse().ok()) {
            tokio.block_on(noop(n));
        }
    }
    if wants("postgres") {
        let n = std::env::var("BENCH_DATABASES")
            .ok()
            .and_then(|n| n.parse().ok())
            .unwrap_or(1000);
        tokio.block_on(postgres(n));
    }
}
