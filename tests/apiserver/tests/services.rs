//! Service `clusterIP` allocation and the kinds a node needs, checked through the real
//! `kube` client: allocation on create from the service range, headless kept, an explicit
//! address honoured once, immutability, the defaults, and EndpointSlices served.

use std::net::Ipv4Addr;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use serde_json::json;
use test_apiserver::TestApiServer;

fn service(name: &str, cluster_ip: Option<&str>) -> Service {
    let mut spec = json!({"selector": {"app": name}, "ports": [{"name": "pg", "port": 5432}]});
    if let Some(ip) = cluster_ip {
        spec["clusterIP"] = json!(ip);
    }
    serde_json::from_value(json!({"metadata": {"name": name}, "spec": spec})).unwrap()
}

fn refusal(result: Result<Service, kube::Error>) -> (u16, String) {
    match result {
        Err(kube::Error::Api(status)) => (status.code, status.message),
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[tokio::test]
async fn a_service_gets_a_cluster_ip_from_the_service_range_and_the_defaults() {
    let server = TestApiServer::start().await.unwrap();
    let api: Api<Service> = Api::namespaced(server.client(), "default");
    let a = api
        .create(&PostParams::default(), &service("a", None))
        .await
        .unwrap();
    let b = api
        .create(&PostParams::default(), &service("b", None))
        .await
        .unwrap();
    let spec = a.spec.clone().unwrap();
    let ip: Ipv4Addr = spec.cluster_ip.clone().unwrap().parse().unwrap();
    assert!(
        ip.octets()[0] == 127 && (64..80).contains(&ip.octets()[1]),
        "{ip} is in 127.64.0.0/12"
    );
    assert_eq!(spec.cluster_ips, Some(vec![ip.to_string()]));
    assert_ne!(
        b.spec.unwrap().cluster_ip,
        spec.cluster_ip,
        "addresses differ"
    );
    assert_eq!(spec.type_.as_deref(), Some("ClusterIP"));
    assert_eq!(spec.session_affinity.as_deref(), Some("None"));
    assert_eq!(spec.ip_families, Some(vec!["IPv4".to_owned()]));
    let port = &spec.ports.unwrap()[0];
    assert_eq!(port.protocol.as_deref(), Some("TCP"));
    assert_eq!(
        serde_json::to_value(&port.target_port).unwrap(),
        json!(5432),
        "targetPort defaults to the port"
    );

    let headless = api
        .create(&PostParams::default(), &service("headless", Some("None")))
        .await
        .unwrap();
    assert_eq!(
        headless.spec.unwrap().cluster_ips,
        Some(vec!["None".to_owned()])
    );
}

#[tokio::test]
async fn an_explicit_cluster_ip_is_honoured_once_and_never_changes() {
    let server = TestApiServer::start().await.unwrap();
    let api: Api<Service> = Api::namespaced(server.client(), "default");
    let chosen = "127.64.3.7";
    let first = api
        .create(&PostParams::default(), &service("first", Some(chosen)))
        .await
        .unwrap();
    assert_eq!(first.spec.unwrap().cluster_ip.as_deref(), Some(chosen));

    let (code, message) = refusal(
        api.create(&PostParams::default(), &service("second", Some(chosen)))
            .await,
    );
    assert_eq!(code, 422);
    assert_eq!(
        message,
        "Service \"second\" is invalid: spec.clusterIPs: Invalid value: []string{\"127.64.3.7\"}: \
         failed to allocate IP 127.64.3.7: provided IP is already allocated"
    );
    let (code, message) = refusal(
        api.create(
            &PostParams::default(),
            &service("outside", Some("10.0.0.1")),
        )
        .await,
    );
    assert_eq!(code, 422);
    assert_eq!(
        message,
        "Service \"outside\" is invalid: spec.clusterIPs: Invalid value: []string{\"10.0.0.1\"}: \
         failed to allocate IP 10.0.0.1: the provided IP (10.0.0.1) is not in the valid range. \
         The range of valid IPs is 127.64.0.0/12"
    );

    // Re-applying a manifest without the address keeps it; changing it is refused.
    let kept = api
        .patch(
            "first",
            &PatchParams::apply("test").force(),
            &Patch::Apply(
                json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "first"},
                    "spec": {"selector": {"app": "other"}, "ports": [{"name": "pg", "port": 5432}]}}),
            ),
        )
        .await
        .unwrap();
    assert_eq!(kept.spec.unwrap().cluster_ip.as_deref(), Some(chosen));
    let (code, message) = refusal(
        api.patch(
            "first",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"clusterIP": "127.64.3.8"}})),
        )
        .await,
    );
    assert_eq!(code, 422);
    assert_eq!(
        message,
        "Service \"first\" is invalid: spec.clusterIPs[0]: Invalid value: []string{\"127.64.3.8\"}: \
         may not change once set"
    );

    // Deleted and created again, the Service may have its address back.
    api.delete("first", &DeleteParams::default()).await.unwrap();
    let again = api
        .create(&PostParams::default(), &service("first", Some(chosen)))
        .await
        .unwrap();
    assert_eq!(again.spec.unwrap().cluster_ip.as_deref(), Some(chosen));
}

#[tokio::test]
async fn endpoint_slices_are_served_and_collected_with_their_service() {
    let server = TestApiServer::start().await.unwrap();
    let services: Api<Service> = Api::namespaced(server.client(), "default");
    let owner = services
        .create(&PostParams::default(), &service("db", None))
        .await
        .unwrap();
    let slices: Api<EndpointSlice> = Api::namespaced(server.client(), "default");
    let slice: EndpointSlice = serde_json::from_value(json!({
        "metadata": {
            "generateName": "db-",
            "labels": {"kubernetes.io/service-name": "db"},
            "ownerReferences": [{"apiVersion": "v1", "kind": "Service", "name": "db",
                "uid": owner.metadata.uid, "controller": true}],
        },
        "addressType": "IPv4",
        "endpoints": [{"addresses": ["127.100.1.1"], "conditions": {"ready": true}}],
        "ports": [{"name": "pg", "port": 5432, "protocol": "TCP"}],
    }))
    .unwrap();
    let created = slices.create(&PostParams::default(), &slice).await.unwrap();
    let name = created.metadata.name.unwrap();
    assert!(name.starts_with("db-"));
    services
        .delete("db", &DeleteParams::default())
        .await
        .unwrap();
    let mut gone = false;
    for _ in 0..50 {
        if slices.get_opt(&name).await.unwrap().is_none() {
            gone = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(gone, "the slice is collected with its Service");
}
