//! End to end: the real `wasm-operator` binary stopped by SIGTERM and SIGINT
//! as a kubelet or a terminal stops it, with leader election on.

mod support;

use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::Client;
use kube::api::{Api, DynamicObject, Patch, PatchParams};
use serde_json::{Value, json};
use support::cluster::{Cluster, Operator, OperatorLog, eventually};
use support::fixtures::{self, Binding, greetings};

const OPERATOR_NAMESPACE: &str = "wasm-operator";
/// Long, so that a takeover by expiry cannot pass for a handover.
const LEASE_SECONDS: &str = "15";
const WAIT: Duration = Duration::from_secs(30);

/// A cluster with the example plugin bound as `greeting`.
async fn greeting_cluster(name: &str) -> Cluster {
    let cluster = Cluster::with_greetings(name, &[OPERATOR_NAMESPACE, "default"]).await;
    let client = cluster.client();
    fixtures::put_component(
        &client,
        OPERATOR_NAMESPACE,
        "example-plugin",
        "plugin.wasm",
        &support::component("example-plugin"),
    )
    .await;
    Binding::named("greeting")
        .source_config_map(OPERATOR_NAMESPACE, "example-plugin", "plugin.wasm")
        .settings(json!({"defaultAudience": "operators"}))
        .grants(json!({"read": [{"version": "v1", "kind": "ConfigMap"}], "children": [{"version": "v1", "kind": "ConfigMap"}]}))
        .create(&client)
        .await;
    cluster
}

/// Starts a replica named `identity` campaigning for the default Lease.
fn replica(cluster: &Cluster, identity: &str) -> (Operator, OperatorLog) {
    cluster.start_operator_logged(&[
        "--identity",
        identity,
        "--lease-seconds",
        LEASE_SECONDS,
        "--resync-seconds",
        "3600",
    ])
}

async fn holder(client: &Client) -> Option<String> {
    Api::<Lease>::namespaced(client.clone(), OPERATOR_NAMESPACE)
        .get_opt("wasm-operator")
        .await
        .ok()??
        .spec?
        .holder_identity
}

/// Waits until Greeting `name` is Ready for `generation` with its child
/// saying `message`.
async fn wait_reconciled(client: &Client, name: &str, generation: i64, message: &str) {
    let api = greetings(client, "default");
    let config_maps = Api::<ConfigMap>::namespaced(client.clone(), "default");
    eventually(
        &format!("Greeting {name} reconciled at generation {generation}"),
        WAIT,
        || async {
            let greeting = api.get(name).await.ok()?;
            let child = config_maps
                .get_opt(&format!("{name}-greeting"))
                .await
                .ok()??;
            (is_reconciled(&greeting, generation)
                && child.data.as_ref()?.get("message")? == message)
                .then_some(())
        },
    )
    .await;
}

/// Ready, for this generation: the reconcile that saw it finished.
fn is_reconciled(greeting: &DynamicObject, generation: i64) -> bool {
    let status = &greeting.data["status"];
    let ready = status["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|c: &Value| c["type"] == "Ready" && c["status"] == "True");
    ready && status["observedGeneration"] == generation
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_to_the_leader_hands_the_lease_to_the_other_replica_within_two_seconds_and_exits_0()
{
    let cluster = greeting_cluster("handover").await;
    let client = cluster.client();
    let (mut a, a_log) = replica(&cluster, "replica-a");
    let (mut b, b_log) = replica(&cluster, "replica-b");
    fixtures::create_greeting(&client, "before", "Hello").await;
    wait_reconciled(&client, "before", 1, "Hello, operators!").await;
    let leader = holder(&client).await.expect("a replica leads");
    let (leader, leader_log, next) = if leader == "replica-a" {
        (&mut a, &a_log, "replica-b")
    } else {
        (&mut b, &b_log, "replica-a")
    };

    let signalled = Instant::now();
    leader.signal("TERM");
    eventually("the other replica to hold the Lease", WAIT, || async {
        (holder(&client).await.as_deref() == Some(next)).then_some(())
    })
    .await;
    let takeover = signalled.elapsed();
    eprintln!("takeover {} ms after SIGTERM", takeover.as_millis());
    assert!(
        takeover < Duration::from_secs(2),
        "took {takeover:?}: the Lease was not handed over but expired"
    );
    let status = leader.wait_exit(WAIT);
    leader_log.wait_closed();
    assert_eq!(status.code(), Some(0), "{status}");
    // The order that keeps two replicas from reconciling at once.
    let at = |message: &str| {
        leader_log
            .find(message)
            .first()
            .unwrap_or_else(|| panic!("no {message:?} in the leader's log"))
            .0
    };
    assert!(at("controller stopped") < at("released the Lease"));

    // The new leader reconciles.
    fixtures::create_greeting(&client, "after", "Hi").await;
    wait_reconciled(&client, "after", 1, "Hi, operators!").await;
}

/// Greeting `name` made to change (generation 2) while every API request
/// takes `latency`, so that its reconcile is in flight for a while; returns
/// once that reconcile has surely started.
async fn change_slowly(cluster: &Cluster, name: &str, latency: Duration) {
    cluster.server.faults().set_latency(latency);
    greetings(&cluster.client(), "default")
        .patch(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"greeting": "Bonjour"}})),
        )
        .await
        .unwrap();
    // The watch delivered the change as the patch returned; the reconcile's
    // first write now waits on the latency.
    tokio::time::sleep(latency / 3).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reconcile_in_flight_at_sigterm_finishes_before_the_lease_is_released_and_the_exit_is_0()
{
    let cluster = greeting_cluster("in-flight").await;
    let client = cluster.client();
    let (mut operator, log) = replica(&cluster, "replica-a");
    fixtures::create_greeting(&client, "busy", "Hello").await;
    wait_reconciled(&client, "busy", 1, "Hello, operators!").await;

    change_slowly(&cluster, "busy", Duration::from_millis(600)).await;
    let signalled = Instant::now();
    operator.signal("TERM");
    let status = operator.wait_exit(WAIT);
    let stopped_after = signalled.elapsed();
    log.wait_closed();
    cluster.server.faults().set_latency(Duration::ZERO);
    assert_eq!(status.code(), Some(0), "{status}");

    let stopping = log.find("controller stopping: reconciles in flight finish first");
    let in_flight =
        stopping.first().expect("the controller says it stops").1["fields"]["in_flight"].as_u64();
    assert_eq!(in_flight, Some(1), "the reconcile was in flight at SIGTERM");
    // Nothing half-done: the child and the status both say generation 2,
    // written by the replica that was stopped (no other one runs).
    let greeting = greetings(&client, "default").get("busy").await.unwrap();
    assert!(is_reconciled(&greeting, 2), "{:?}", greeting.data["status"]);
    let child = Api::<ConfigMap>::namespaced(client.clone(), "default")
        .get("busy-greeting")
        .await
        .unwrap();
    assert_eq!(child.data.unwrap()["message"], "Bonjour, operators!");
    assert_eq!(holder(&client).await, None, "the Lease is released");
    eprintln!("stopped {} ms after SIGTERM", stopped_after.as_millis());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigint_stops_like_sigterm_and_a_second_signal_stops_at_once_with_a_failure() {
    let cluster = greeting_cluster("sigint").await;
    let client = cluster.client();

    // One Ctrl-C: a clean stop that hands the Lease back.
    let (mut operator, _log) = replica(&cluster, "replica-a");
    fixtures::create_greeting(&client, "first", "Hello").await;
    wait_reconciled(&client, "first", 1, "Hello, operators!").await;
    operator.signal("INT");
    assert_eq!(operator.wait_exit(WAIT).code(), Some(0));
    assert_eq!(holder(&client).await, None, "the Lease is released");

    // Two: the reconcile in flight is cut, the exit says so.
    let (mut operator, log) = replica(&cluster, "replica-b");
    wait_reconciled(&client, "first", 1, "Hello, operators!").await;
    eventually("replica-b to lead", WAIT, || async {
        (holder(&client).await.as_deref() == Some("replica-b")).then_some(())
    })
    .await;
    let latency = Duration::from_secs(3);
    change_slowly(&cluster, "first", latency).await;
    operator.signal("INT");
    tokio::time::sleep(Duration::from_millis(200)).await;
    let signalled = Instant::now();
    operator.signal("INT");
    let status = operator.wait_exit(WAIT);
    log.wait_closed();
    assert!(
        signalled.elapsed() < latency,
        "exited {:?} after the second signal",
        signalled.elapsed()
    );
    assert_eq!(status.code(), Some(1), "{status}");
    assert!(
        !log.find("controller stopping: reconciles in flight finish first")
            .is_empty()
    );
    cluster.server.faults().set_latency(Duration::ZERO);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reconcile_longer_than_the_grace_is_cut_and_the_operator_still_exits_0_in_time() {
    let cluster = greeting_cluster("grace").await;
    let client = cluster.client();
    let (mut operator, log) = cluster.start_operator_logged(&[
        "--identity",
        "replica-a",
        "--lease-seconds",
        LEASE_SECONDS,
        "--shutdown-grace-seconds",
        "0.5",
    ]);
    fixtures::create_greeting(&client, "slow", "Hello").await;
    wait_reconciled(&client, "slow", 1, "Hello, operators!").await;

    // Each write of the reconcile now takes 2 s: far past the grace.
    change_slowly(&cluster, "slow", Duration::from_secs(2)).await;
    let signalled = Instant::now();
    operator.signal("TERM");
    let status = operator.wait_exit(WAIT);
    let stopped_after = signalled.elapsed();
    log.wait_closed();
    cluster.server.faults().set_latency(Duration::ZERO);
    assert_eq!(status.code(), Some(0), "{status}");
    assert!(
        !log.find("the shutdown grace period ran out: cutting reconciles still in flight")
            .is_empty()
    );
    // The grace, then the Lease release (two requests of 2 s each).
    assert!(
        stopped_after < Duration::from_millis(500 + 5_000 + 1_000),
        "stopped {stopped_after:?} after SIGTERM"
    );
    assert_eq!(holder(&client).await, None, "the Lease is released");
}
