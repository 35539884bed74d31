//! End to end: the operator's start-up with the three Postgres plugins
//! bound, whose controllers all wait for the one PostgresServer list.

mod support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use support::cluster::{Cluster, OperatorLog, eventually};
use support::pg_cluster;

const PLUGINS: [&str; 3] = ["postgres-server", "postgres-database", "postgres-user"];
/// Longer than the 30 s a stalled controller used to wait, so that a stall
/// shows as a measured delay rather than a timeout.
const WAIT: Duration = Duration::from_secs(40);

/// When each binding logged `message`.
fn times(log: &OperatorLog, message: &str) -> BTreeMap<String, Instant> {
    log.find(message)
        .into_iter()
        .map(|(at, line)| (line["fields"]["binding"].as_str().unwrap().to_owned(), at))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_20_starts_every_controller_starts_within_2_s_of_the_server_list_and_its_caches() {
    let cluster = Cluster::with_operator_crds("startup", &["db"]).await;
    pg_cluster::bind_plugins(&cluster.client(), &PLUGINS, None).await;
    let mut slowest = Duration::ZERO;
    for start in 1..=20 {
        let (mut operator, log) =
            cluster.start_operator_logged(&["--leader-election=false", "--resync-seconds", "3600"]);
        eventually("every controller's caches to sync", WAIT, || async {
            (times(&log, "caches synced").len() == PLUGINS.len()).then_some(())
        })
        .await;
        let listed = log.find("PostgreSQL servers listed")[0].0;
        let started = times(&log, "controller started");
        let synced = times(&log, "caches synced");
        for plugin in PLUGINS {
            // From the list every controller waits for to the controller's
            // start, and from its start to its own caches' sync.
            let waits = [
                started[plugin].saturating_duration_since(listed),
                synced[plugin].saturating_duration_since(started[plugin]),
            ];
            for wait in waits {
                assert!(
                    wait < Duration::from_secs(2),
                    "start {start}: {plugin} waited {wait:?}"
                );
                slowest = slowest.max(wait);
            }
        }
        operator.signal("TERM");
        assert_eq!(operator.wait_exit(WAIT).code(), Some(0));
    }
    eprintln!("slowest wait in 20 starts: {} ms", slowest.as_millis());
}
