//! Faults a test injects: a killed container, a frozen Pod, a failed node.

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::Api;
use serde_json::{Value, json};
use support::{Cluster, condition, eventually, image};
use tokio::io::AsyncReadExt;

fn sleeper(name: &str) -> Value {
    json!({
        "metadata": {"name": name},
        "spec": {"terminationGracePeriodSeconds": 1, "containers": [{
            "name": "main", "image": image(), "command": ["sleep", "600"],
        }]},
    })
}

fn main_status(pod: &Pod) -> Option<&k8s_openapi::api::core::v1::ContainerStatus> {
    pod.status
        .as_ref()?
        .container_statuses
        .as_ref()?
        .iter()
        .find(|c| c.name == "main")
}

#[tokio::test]
async fn a_killed_container_is_restarted_and_counted() {
    let cluster = Cluster::start("fault-kill").await;
    cluster.create::<Pod>(sleeper("victim")).await;
    cluster
        .pod_when("victim", "running", |p| condition(p, "Ready"))
        .await;
    assert!(cluster.node.kill_container("default", "victim", "main"));
    let pod = cluster
        .pod_when("victim", "restarted", |p| {
            main_status(p).is_some_and(|c| {
                c.restart_count == 1 && c.state.as_ref().is_some_and(|s| s.running.is_some())
            })
        })
        .await;
    let last = main_status(&pod)
        .unwrap()
        .last_state
        .clone()
        .unwrap()
        .terminated
        .unwrap();
    assert_eq!((last.exit_code, last.signal), (137, Some(9)));
    assert!(!cluster.node.kill_container("default", "victim", "nope"));
}

#[tokio::test]
async fn a_frozen_pod_answers_nothing_until_thawed() {
    let cluster = Cluster::start("fault-freeze").await;
    let server = "import os, socket\ns = socket.socket()\ns.bind((os.environ['POD_IP'], 8080))\ns.listen()\nwhile True:\n    c, _ = s.accept()\n    c.sendall(b'hello')\n    c.close()\n";
    cluster
        .create::<Pod>(json!({
            "metadata": {"name": "server"},
            "spec": {"terminationGracePeriodSeconds": 1, "containers": [{
                "name": "main", "image": image(), "command": ["python3", "-c", server],
                "env": [{"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}],
                "readinessProbe": {"tcpSocket": {"port": 8080}, "periodSeconds": 1},
            }]},
        }))
        .await;
    let pod = cluster
        .pod_when("server", "Ready", |p| condition(p, "Ready"))
        .await;
    let ip: std::net::Ipv4Addr = pod.status.unwrap().pod_ip.unwrap().parse().unwrap();
    let address = SocketAddr::from((ip, 8080));
    let ask = || async move {
        let mut stream = tokio::net::TcpStream::connect(address).await.ok()?;
        let mut answer = String::new();
        tokio::time::timeout(
            Duration::from_millis(500),
            stream.read_to_string(&mut answer),
        )
        .await
        .ok()?
        .ok()?;
        Some(answer)
    };
    assert_eq!(ask().await.as_deref(), Some("hello"));
    assert!(cluster.node.freeze_pod("default", "server"));
    assert_eq!(ask().await, None, "a frozen server does not answer");
    assert!(cluster.node.thaw_pod("default", "server"));
    let answer = eventually("the thawed server", Duration::from_secs(5), ask).await;
    assert_eq!(answer, "hello");
}

#[tokio::test]
async fn a_failed_node_marks_its_pods_not_ready_evicts_them_and_ends_them_on_recovery() {
    let config = test_node::Config {
        pod_eviction_timeout: Duration::from_secs(1),
        ..test_node::Config::default()
    };
    let cluster = Cluster::start_with("fault-node", config).await;
    cluster.create::<Pod>(sleeper("resident")).await;
    cluster
        .pod_when("resident", "Ready", |p| condition(p, "Ready"))
        .await;
    let groups = cluster.node.process_groups();
    assert!(!groups.is_empty());

    cluster.node.fail().await;
    let nodes: Api<Node> = Api::all(cluster.client.clone());
    let node = nodes.get(cluster.node.name()).await.unwrap();
    let ready = node
        .status
        .unwrap()
        .conditions
        .unwrap()
        .into_iter()
        .find(|c| c.type_ == "Ready")
        .unwrap();
    assert_eq!(
        (ready.status.as_str(), ready.reason.as_deref()),
        ("Unknown", Some("NodeStatusUnknown"))
    );
    eventually("the processes gone", Duration::from_secs(5), || async {
        test_node::running_in_groups(&groups)
            .is_empty()
            .then_some(())
    })
    .await;
    let pod = cluster
        .pod_when("resident", "evicted, Terminating", |p| {
            p.metadata.deletion_timestamp.is_some()
        })
        .await;
    assert!(!condition(&pod, "Ready"), "not ready once its node failed");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        cluster.pods().get_opt("resident").await.unwrap().is_some(),
        "a Pod of an unreachable node stays Terminating"
    );

    cluster.node.recover().await;
    let pods = cluster.pods();
    eventually(
        "the Pod gone after recovery",
        Duration::from_secs(10),
        || async {
            pods.get_opt("resident")
                .await
                .unwrap()
                .is_none()
                .then_some(())
        },
    )
    .await;
}
