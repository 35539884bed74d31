//! Services on the node: the endpoints controller (EndpointSlices that follow the Pods a
//! Service selects) and kube-proxy (a TCP forwarder on every `clusterIP:port`, to a ready
//! endpoint of that port, round-robin).
//!
//! Both follow the API, as their real counterparts do: the controller writes slices from
//! the Services and Pods it watches, and the proxy forwards from the slices it watches (not
//! from the Pods), so a test sees what a client on a real cluster would: a Service whose
//! slices hold no ready endpoint refuses connections (kube-proxy's `REJECT` rule), one
//! with ready endpoints forwards to them, and connections already open stay open when the
//! endpoints change.

use std::collections::{BTreeMap, HashMap};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::Shared;
use crate::faults::AbortOnDrop;
use futures::{FutureExt, StreamExt};
use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointPort, EndpointSlice};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::{Api, DeleteParams, PostParams};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, ResourceExt};
use serde_json::json;
use tokio::net::{TcpListener, TcpStream};

/// The label that ties a slice to its Service.
const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";
/// The label naming the controller that manages a slice.
const MANAGED_BY_LABEL: &str = "endpointslice.kubernetes.io/managed-by";
/// The real endpoints controller's name, so that clients filtering on it find the slices.
const MANAGED_BY: &str = "endpointslice-controller.k8s.io";

/// How long the loop waits after a change for more changes before acting on them.
const SETTLE: Duration = Duration::from_millis(20);

/// Runs the endpoints controller and kube-proxy for as long as the node runs.
pub(crate) async fn run(shared: Arc<Shared>) {
    let client = shared.client.clone();
    let (services, services_writer) = reflector::store::<Service>();
    let (pods, pods_writer) = reflector::store::<Pod>();
    let (slices, slices_writer) = reflector::store::<EndpointSlice>();
    let config = watcher::Config::default;
    let streams = vec![
        reflector::reflector(
            services_writer,
            watcher(Api::<Service>::all(client.clone()), config()),
        )
        .default_backoff()
        .map(|_| ())
        .boxed(),
        reflector::reflector(
            pods_writer,
            watcher(Api::<Pod>::all(client.clone()), config()),
        )
        .default_backoff()
        .map(|_| ())
        .boxed(),
        reflector::reflector(
            slices_writer,
            watcher(Api::<EndpointSlice>::all(client.clone()), config()),
        )
        .default_backoff()
        .map(|_| ())
        .boxed(),
    ];
    let mut changes = futures::stream::select_all(streams);
    let mut proxy = Proxy::default();
    while changes.next().await.is_some() {
        tokio::time::sleep(SETTLE).await;
        while let Some(Some(())) = changes.next().now_or_never() {}
        if let Err(error) = write_slices(&client, &shared.name, &services, &pods, &slices).await {
            tracing::debug!(%error, "writing EndpointSlices");
        }
        proxy.follow(&services, &slices).await;
    }
}

/// The endpoints controller: one pass over every Service with a selector.
async fn write_slices(
    client: &Client,
    node: &str,
    services: &Store<Service>,
    pods: &Store<Pod>,
    slices: &Store<EndpointSlice>,
) -> Result<(), kube::Error> {
    let pods = pods.state();
    let slices = slices.state();
    for service in services.state() {
        let Some(selector) = service
            .spec
            .as_ref()
            .and_then(|s| s.selector.clone())
            .filter(|s| !s.is_empty())
        else {
            continue;
        };
        let namespace = service.namespace().unwrap_or_default();
        let name = service.name_any();
        let selected = pods.iter().filter(|p| {
            p.namespace().as_deref() == Some(&namespace)
                && selector
                    .iter()
                    .all(|(k, v)| p.labels().get(k).is_some_and(|l| l == v))
        });
        let desired = desired_slices(&service, selected, node);
        let existing: Vec<&Arc<EndpointSlice>> = slices
            .iter()
            .filter(|s| {
                s.namespace().as_deref() == Some(&namespace)
                    && s.labels().get(SERVICE_NAME_LABEL) == Some(&name)
                    && s.labels().get(MANAGED_BY_LABEL).map(String::as_str) == Some(MANAGED_BY)
            })
            .collect();
        reconcile_slices(client, &service, desired, &existing).await?;
    }
    Ok(())
}

/// Endpoints grouped by the port numbers they resolve to, as the real controller groups
/// them (Pods whose named target ports differ land in different slices).
type Desired = BTreeMap<String, (Vec<EndpointPort>, Vec<Endpoint>)>;

fn desired_slices<'a>(
    service: &Service,
    pods: impl Iterator<Item = &'a Arc<Pod>>,
    node: &str,
) -> Desired {
    let spec = service.spec.clone().unwrap_or_default();
    let publish_not_ready = spec.publish_not_ready_addresses.unwrap_or(false);
    let mut desired = Desired::new();
    for pod in pods {
        let status = pod.status.as_ref();
        let Some(ip) = status.and_then(|s| s.pod_ip.clone()) else {
            continue;
        };
        let phase = status.and_then(|s| s.phase.as_deref());
        if matches!(phase, Some("Succeeded" | "Failed")) {
            continue;
        }
        let ports: Vec<EndpointPort> = spec
            .ports
            .iter()
            .flatten()
            .filter_map(|port| {
                let number = match port.target_port.as_ref() {
                    None => port.port,
                    Some(IntOrString::Int(n)) => *n,
                    Some(IntOrString::String(named)) => named_port(pod, named)?,
                };
                Some(EndpointPort {
                    name: Some(port.name.clone().unwrap_or_default()),
                    port: Some(number),
                    protocol: Some(port.protocol.clone().unwrap_or_else(|| "TCP".into())),
                    app_protocol: port.app_protocol.clone(),
                })
            })
            .collect();
        let pod_ready = status
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
        let terminating = pod.metadata.deletion_timestamp.is_some();
        let endpoint: Endpoint = serde_json::from_value(json!({
            "addresses": [ip],
            "conditions": {
                "ready": !terminating && (pod_ready || publish_not_ready),
                "serving": pod_ready || publish_not_ready,
                "terminating": terminating,
            },
            "nodeName": pod.spec.as_ref().and_then(|s| s.node_name.clone()).unwrap_or_else(|| node.to_owned()),
            "targetRef": {
                "kind": "Pod",
                "namespace": pod.namespace(),
                "name": pod.name_any(),
                "uid": pod.metadata.uid,
            },
        }))
        .expect("a valid endpoint");
        let key = serde_json::to_string(&ports).unwrap_or_default();
        desired
            .entry(key)
            .or_insert_with(|| (ports, Vec::new()))
            .1
            .push(endpoint);
    }
    if desired.is_empty() {
        // The real controller keeps one slice without endpoints for a Service selecting
        // nothing (its "placeholder").
        desired.insert(String::new(), (Vec::new(), Vec::new()));
    }
    desired
}

/// A container port of `pod` by name.
fn named_port(pod: &Pod, name: &str) -> Option<i32> {
    pod.spec
        .as_ref()?
        .containers
        .iter()
        .flat_map(|c| c.ports.iter().flatten())
        .find(|p| p.name.as_deref() == Some(name))
        .map(|p| p.container_port)
}

/// Makes the Service's slices the desired ones: updates those whose ports match, creates
/// the missing ones, deletes the rest.
async fn reconcile_slices(
    client: &Client,
    service: &Service,
    desired: Desired,
    existing: &[&Arc<EndpointSlice>],
) -> Result<(), kube::Error> {
    let namespace = service.namespace().unwrap_or_default();
    let name = service.name_any();
    let api: Api<EndpointSlice> = Api::namespaced(client.clone(), &namespace);
    let key_of = |ports: &Option<Vec<EndpointPort>>| {
        serde_json::to_string(ports.as_deref().unwrap_or_default()).unwrap_or_default()
    };
    let mut unused: Vec<&Arc<EndpointSlice>> = existing.to_vec();
    for (key, (ports, endpoints)) in desired {
        let found = unused.iter().position(|s| key_of(&s.ports) == key);
        let slice = found.map(|i| unused.remove(i));
        let body = json!({
            "apiVersion": "discovery.k8s.io/v1",
            "kind": "EndpointSlice",
            "metadata": {
                "generateName": format!("{name}-"),
                "namespace": namespace,
                "labels": {SERVICE_NAME_LABEL: name, MANAGED_BY_LABEL: MANAGED_BY},
                "ownerReferences": [{
                    "apiVersion": "v1",
                    "kind": "Service",
                    "name": name,
                    "uid": service.metadata.uid,
                    "controller": true,
                    "blockOwnerDeletion": true,
                }],
            },
            "addressType": "IPv4",
            "endpoints": endpoints,
            "ports": ports,
        });
        let mut wanted: EndpointSlice = serde_json::from_value(body).expect("a valid slice");
        match slice {
            Some(slice) if slice.endpoints == wanted.endpoints && slice.ports == wanted.ports => {}
            Some(slice) => {
                wanted.metadata.name = slice.metadata.name.clone();
                wanted.metadata.generate_name = slice.metadata.generate_name.clone();
                wanted.metadata.resource_version = slice.metadata.resource_version.clone();
                api.replace(&slice.name_any(), &PostParams::default(), &wanted)
                    .await?;
            }
            None => {
                api.create(&PostParams::default(), &wanted).await?;
            }
        }
    }
    for slice in unused {
        match api
            .delete(&slice.name_any(), &DeleteParams::default())
            .await
        {
            Ok(_) => {}
            Err(kube::Error::Api(status)) if status.code == 404 => {}
            Err(error) => return Err(error),
        }
    }
    Ok(())
}

/// One `clusterIP:port` listener and the endpoints it forwards to.
struct Listener {
    backends: Arc<Mutex<Vec<SocketAddr>>>,
    _task: AbortOnDrop,
}

/// kube-proxy: the listeners of every Service port that has a ready endpoint.
#[derive(Default)]
struct Proxy {
    listeners: HashMap<SocketAddrV4, Listener>,
}

impl Proxy {
    /// Listens on every `clusterIP:port` with a ready endpoint, and only there: with no
    /// listener the kernel refuses the connection, as kube-proxy's REJECT rule does.
    async fn follow(&mut self, services: &Store<Service>, slices: &Store<EndpointSlice>) {
        let slices = slices.state();
        let mut wanted: HashMap<SocketAddrV4, Vec<SocketAddr>> = HashMap::new();
        for service in services.state() {
            let spec = service.spec.clone().unwrap_or_default();
            let Some(ip) = spec
                .cluster_ip
                .as_deref()
                .and_then(|ip| ip.parse::<Ipv4Addr>().ok())
            else {
                continue;
            };
            let namespace = service.namespace();
            let name = service.name_any();
            let own: Vec<&Arc<EndpointSlice>> = slices
                .iter()
                .filter(|s| {
                    s.namespace() == namespace && s.labels().get(SERVICE_NAME_LABEL) == Some(&name)
                })
                .collect();
            for port in spec.ports.iter().flatten() {
                if port.protocol.as_deref().is_some_and(|p| p != "TCP") {
                    continue;
                }
                let port_name = port.name.clone().unwrap_or_default();
                let backends = ready_backends(&own, &port_name);
                let Ok(number) = u16::try_from(port.port) else {
                    continue;
                };
                if !backends.is_empty() {
                    wanted.insert(SocketAddrV4::new(ip, number), backends);
                }
            }
        }
        self.listeners
            .retain(|address, _| wanted.contains_key(address));
        for (address, backends) in wanted {
            if let Some(listener) = self.listeners.get(&address) {
                *listener.backends.lock().unwrap_or_else(|e| e.into_inner()) = backends;
                continue;
            }
            match TcpListener::bind(address).await {
                Ok(socket) => {
                    let backends = Arc::new(Mutex::new(backends));
                    let task = tokio::spawn(forward(socket, backends.clone()));
                    self.listeners.insert(
                        address,
                        Listener {
                            backends,
                            _task: AbortOnDrop(task),
                        },
                    );
                }
                Err(error) => tracing::warn!(%error, %address, "listening on a Service address"),
            }
        }
    }
}

/// The ready endpoints of the slices' port `name`.
fn ready_backends(slices: &[&Arc<EndpointSlice>], name: &str) -> Vec<SocketAddr> {
    let mut backends = Vec::new();
    for slice in slices {
        let Some(port) = slice
            .ports
            .iter()
            .flatten()
            .find(|p| p.name.as_deref().unwrap_or_default() == name)
            .and_then(|p| p.port)
            .and_then(|p| u16::try_from(p).ok())
        else {
            continue;
        };
        for endpoint in slice.endpoints.iter().flatten() {
            // A missing `ready` means ready (the API's rule for consumers).
            if endpoint.conditions.as_ref().and_then(|c| c.ready) == Some(false) {
                continue;
            }
            for address in &endpoint.addresses {
                if let Ok(ip) = address.parse::<Ipv4Addr>() {
                    backends.push(SocketAddr::from((ip, port)));
                }
            }
        }
    }
    backends.sort();
    backends
}

/// Accepts connections and joins each to the next backend, round-robin; the connections
/// end with the listener.
async fn forward(socket: TcpListener, backends: Arc<Mutex<Vec<SocketAddr>>>) {
    let next = AtomicUsize::new(0);
    let mut connections = tokio::task::JoinSet::new();
    loop {
        let Ok((mut client, _)) = socket.accept().await else {
            continue;
        };
        while connections.try_join_next().is_some() {}
        let backend = {
            let list = backends.lock().unwrap_or_else(|e| e.into_inner());
            if list.is_empty() {
                continue;
            }
            list[next.fetch_add(1, Ordering::Relaxed) % list.len()]
        };
        connections.spawn(async move {
            match TcpStream::connect(backend).await {
                Ok(mut server) => {
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                }
                Err(error) => tracing::debug!(%error, %backend, "forwarding to an endpoint"),
            }
        });
    }
}

/// The variables the kubelet gives a container for the Services of its namespace (those
/// with a cluster IP), in the order the kubelet makes them (`FromServices` in
/// `pkg/kubelet/envvars`).
pub(crate) fn environment(services: &[Service]) -> Vec<(String, String)> {
    let mut env = Vec::new();
    for service in services {
        let spec = service.spec.clone().unwrap_or_default();
        let Some(ip) = spec
            .cluster_ip
            .clone()
            .filter(|ip| !ip.is_empty() && ip != "None")
        else {
            continue;
        };
        let ports = spec.ports.unwrap_or_default();
        let Some(first) = ports.first() else { continue };
        let prefix = variable_name(&service.name_any());
        env.push((format!("{prefix}_SERVICE_HOST"), ip.clone()));
        env.push((format!("{prefix}_SERVICE_PORT"), first.port.to_string()));
        for port in &ports {
            if let Some(name) = port.name.as_deref().filter(|n| !n.is_empty()) {
                env.push((
                    format!("{prefix}_SERVICE_PORT_{}", variable_name(name)),
                    port.port.to_string(),
                ));
            }
        }
        for (i, port) in ports.iter().enumerate() {
            let protocol = port.protocol.clone().unwrap_or_else(|| "TCP".to_owned());
            let lower = protocol.to_lowercase();
            let url = format!("{lower}://{ip}:{}", port.port);
            if i == 0 {
                env.push((format!("{prefix}_PORT"), url.clone()));
            }
            let port_prefix = format!("{prefix}_PORT_{}_{}", port.port, protocol.to_uppercase());
            env.push((port_prefix.clone(), url));
            env.push((format!("{port_prefix}_PROTO"), lower));
            env.push((format!("{port_prefix}_PORT"), port.port.to_string()));
            env.push((format!("{port_prefix}_ADDR"), ip.clone()));
        }
    }
    env
}

/// `makeEnvVariableName`: upper case, `-` → `_`.
fn variable_name(name: &str) -> String {
    name.replace('-', "_").to_uppercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_variables_are_named_and_ordered_as_the_kubelet_makes_them() {
        let service: Service = serde_json::from_value(json!({
            "metadata": {"name": "pg-rw"},
            "spec": {"clusterIP": "127.64.0.7", "ports": [
                {"name": "postgres", "port": 5432, "protocol": "TCP"},
                {"name": "metrics-http", "port": 9187},
            ]},
        }))
        .unwrap();
        let headless: Service = serde_json::from_value(json!({
            "metadata": {"name": "pg"},
            "spec": {"clusterIP": "None", "ports": [{"port": 5432}]},
        }))
        .unwrap();
        let env = environment(&[service, headless]);
        let names: Vec<&str> = env.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            &names[..5],
            [
                "PG_RW_SERVICE_HOST",
                "PG_RW_SERVICE_PORT",
                "PG_RW_SERVICE_PORT_POSTGRES",
                "PG_RW_SERVICE_PORT_METRICS_HTTP",
                "PG_RW_PORT",
            ]
        );
        assert!(env.contains(&("PG_RW_PORT".into(), "tcp://127.64.0.7:5432".into())));
        assert!(env.contains(&("PG_RW_PORT_9187_TCP_ADDR".into(), "127.64.0.7".into())));
        assert!(
            names.iter().all(|n| n.starts_with("PG_RW_")),
            "headless is skipped"
        );
    }
}
