//! Services: EndpointSlices that follow the ready Pods a Service selects, the forwarder on
//! `clusterIP:port` (kube-proxy), and the `<SERVICE>_SERVICE_HOST` variables.

mod support;

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, DeleteParams, ListParams};
use serde_json::{Value, json};
use support::{Cluster, condition, eventually, image};
use tokio::io::AsyncReadExt;

/// A Pod answering every TCP connection on its port 8080 with its hostname (its name).
fn echo_pod(name: &str) -> Value {
    let server = concat!(
        "import os, socket\n",
        "s = socket.socket()\n",
        "s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n",
        "s.bind((os.environ['POD_IP'], 8080))\n",
        "s.listen()\n",
        "while True:\n",
        "    c, _ = s.accept()\n",
        "    c.sendall(socket.gethostname().encode())\n",
        "    c.close()\n",
    );
    json!({
        "metadata": {"name": name, "labels": {"app": "echo"}},
        "spec": {
            "terminationGracePeriodSeconds": 2,
            "containers": [{
                "name": "echo",
                "image": image(),
                "command": ["python3", "-c", server],
                "env": [{"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}],
                "ports": [{"name": "echo", "containerPort": 8080}],
                "readinessProbe": {"tcpSocket": {"port": "echo"}, "periodSeconds": 1},
            }],
        },
    })
}

async fn ask(address: SocketAddr) -> std::io::Result<String> {
    let mut stream = tokio::net::TcpStream::connect(address).await?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await?;
    Ok(answer)
}

/// The ready endpoints of the Service's slices, as (Pod name, port).
async fn ready_endpoints(slices: &Api<EndpointSlice>, service: &str) -> Vec<(String, i32)> {
    let list = slices
        .list(&ListParams::default().labels(&format!("kubernetes.io/service-name={service}")))
        .await
        .unwrap();
    let mut ready = Vec::new();
    for slice in list.items {
        let port = slice
            .ports
            .iter()
            .flatten()
            .find(|p| p.name.as_deref() == Some("tcp"))
            .and_then(|p| p.port);
        for endpoint in slice.endpoints.iter().flatten() {
            if endpoint.conditions.as_ref().and_then(|c| c.ready) == Some(true) {
                let pod = endpoint.target_ref.as_ref().and_then(|r| r.name.clone());
                ready.push((pod.unwrap_or_default(), port.unwrap_or(0)));
            }
        }
    }
    ready.sort();
    ready
}

#[tokio::test]
async fn a_service_forwards_to_its_ready_pods_round_robin_and_refuses_without_any() {
    let cluster = Cluster::start("service-forwards").await;
    let service: Service = cluster
        .create(json!({
            "metadata": {"name": "echo"},
            "spec": {"selector": {"app": "echo"}, "ports": [{"name": "tcp", "port": 8000, "targetPort": "echo"}]},
        }))
        .await;
    let ip: Ipv4Addr = service.spec.unwrap().cluster_ip.unwrap().parse().unwrap();
    assert!(
        ip.octets()[0] == 127 && (64..80).contains(&ip.octets()[1]),
        "{ip} is from the service range 127.64.0.0/12"
    );
    let address = SocketAddr::from((ip, 8000));
    let slices: Api<EndpointSlice> = Api::namespaced(cluster.client.clone(), "default");
    eventually(
        "the Service's empty slice",
        Duration::from_secs(10),
        || async {
            let list = slices
                .list(&ListParams::default().labels("kubernetes.io/service-name=echo"))
                .await
                .unwrap();
            (list.items.len() == 1).then_some(())
        },
    )
    .await;
    assert_eq!(
        ask(address).await.map_err(|e| e.kind()),
        Err(std::io::ErrorKind::ConnectionRefused),
        "no endpoint: the connection is refused"
    );

    cluster.create::<Pod>(echo_pod("echo-a")).await;
    cluster.create::<Pod>(echo_pod("echo-b")).await;
    eventually(
        "both Pods ready in the slice",
        Duration::from_secs(20),
        || async {
            let ready = ready_endpoints(&slices, "echo").await;
            (ready == [("echo-a".to_owned(), 8080), ("echo-b".to_owned(), 8080)]).then_some(())
        },
    )
    .await;
    let answers = eventually("the forwarder", Duration::from_secs(10), || async {
        let mut answers = Vec::new();
        for _ in 0..4 {
            answers.push(ask(address).await.ok()?);
        }
        Some(answers)
    })
    .await;
    assert_eq!(
        answers.iter().filter(|a| *a == "echo-a").count(),
        2,
        "round-robin over both Pods: {answers:?}"
    );
    assert_eq!(answers.iter().filter(|a| *a == "echo-b").count(), 2);

    cluster
        .pods()
        .delete("echo-a", &DeleteParams::default())
        .await
        .unwrap();
    eventually("only echo-b ready", Duration::from_secs(20), || async {
        (ready_endpoints(&slices, "echo").await == [("echo-b".to_owned(), 8080)]).then_some(())
    })
    .await;
    let answers = eventually(
        "the forwarder following",
        Duration::from_secs(10),
        || async {
            let mut answers = Vec::new();
            for _ in 0..3 {
                answers.push(ask(address).await.ok()?);
            }
            answers.iter().all(|a| a == "echo-b").then_some(answers)
        },
    )
    .await;
    assert_eq!(answers.len(), 3);
}

#[tokio::test]
async fn containers_get_the_variables_of_the_services_existing_when_they_start() {
    let cluster = Cluster::start("service-env").await;
    let service: Service = cluster
        .create(json!({
            "metadata": {"name": "pg-rw"},
            "spec": {"selector": {"app": "none"}, "ports": [
                {"name": "postgres", "port": 5432},
                {"name": "metrics", "port": 9187},
            ]},
        }))
        .await;
    cluster
        .create::<Service>(json!({
            "metadata": {"name": "pg-headless"},
            "spec": {"clusterIP": "None", "selector": {"app": "none"}, "ports": [{"port": 5432}]},
        }))
        .await;
    let ip = service.spec.unwrap().cluster_ip.unwrap();
    cluster
        .create::<Pod>(json!({
            "metadata": {"name": "client"},
            "spec": {"containers": [{
                "name": "client",
                "image": image(),
                "command": ["sh", "-c", "env | grep -e ^PG_ | sort; echo \"arg=$1\"; exec sleep 600", "sh"],
                "args": ["$(PG_RW_SERVICE_HOST):$(PG_RW_SERVICE_PORT)"],
                "env": [{"name": "PG_RW_SERVICE_PORT_METRICS", "value": "overridden"}],
            }]},
        }))
        .await;
    cluster
        .pod_when("client", "the client running", |p| condition(p, "Ready"))
        .await;
    let log = eventually("the client's output", Duration::from_secs(10), || async {
        let log = cluster.node.container_log("default", "client", "client");
        log.contains("arg=").then_some(log)
    })
    .await;
    let lines: Vec<&str> = log.lines().collect();
    for expected in [
        format!("PG_RW_SERVICE_HOST={ip}"),
        "PG_RW_SERVICE_PORT=5432".to_owned(),
        "PG_RW_SERVICE_PORT_POSTGRES=5432".to_owned(),
        "PG_RW_SERVICE_PORT_METRICS=overridden".to_owned(),
        format!("PG_RW_PORT=tcp://{ip}:5432"),
        format!("PG_RW_PORT_5432_TCP_ADDR={ip}"),
        "PG_RW_PORT_9187_TCP_PROTO=tcp".to_owned(),
        format!("arg={ip}:5432"),
    ] {
        assert!(lines.contains(&expected.as_str()), "{expected} in {log}");
    }
    assert!(
        !log.contains("PG_HEADLESS_"),
        "a headless Service has no variables: {log}"
    );
}
