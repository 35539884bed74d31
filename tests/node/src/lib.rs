//! A test-only Kubernetes node for wasm-operator's tests (never shipped): the scheduler,
//! the kubelet and a volume provisioner of one node, running in-process as tokio tasks
//! against an API server (the test API server) through the real `kube` client, and running
//! Pods as real processes — PostgreSQL images as the PostgreSQL binaries installed here.
//!
//! ```no_run
//! # async fn demo(client: kube::Client) -> Result<(), test_node::Error> {
//! let workdir = std::env::temp_dir().join("my-test");
//! let node = test_node::TestNode::start(client, &workdir, test_node::Config::default()).await?;
//! // create Pods and PersistentVolumeClaims with the client: they are bound, provisioned
//! // and run; dropping `node` kills every process it started.
//! # drop(node); Ok(()) }
//! ```
//!
//! Modules: `kubelet` (binding Pods, one worker per Pod), `pod` (a Pod's lifecycle),
//! `container` (starting one container), `services` (EndpointSlices and the kube-proxy
//! forwarder), `faults` (what a test injects),
//! `sandbox` (a container's root, mounts and user), `env`, `probe`, `status`, `volumes`
//! (the StorageClass, the provisioner, Pod volumes), `images`, `processes`.

mod container;
mod env;
mod error;
mod faults;
mod images;
mod kubelet;
mod pod;
mod probe;
mod processes;
mod sandbox;
mod services;
mod status;
mod volumes;

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Node, Pod};
use kube::Client;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::json;
use tokio::task::JoinHandle;

pub use error::Error;
pub use processes::running_in_groups;
pub use volumes::PROVISIONER;

/// The finalizer the node puts on the Pods it runs, so that a deleted Pod stays, terminating,
/// until its processes have ended (on a real cluster the API server's graceful deletion does
/// this; the test API server deletes at once).
pub const FINALIZER: &str = "test-node.wasm-operator.dev/kubelet";

/// How long dropping the node waits for killed processes to be gone.
const KILL_WAIT: Duration = Duration::from_secs(5);

/// Pod IPs handed out in this process, across nodes: tests of one binary run side by side
/// and each Pod must have an address of its own.
static NEXT_POD: AtomicU32 = AtomicU32::new(0);

/// How to start a [`TestNode`].
#[derive(Clone, Debug)]
pub struct Config {
    /// The `Node`'s name, written into `spec.nodeName` of the Pods it runs.
    pub node_name: String,
    /// The name of the default `StorageClass` it provisions for.
    pub storage_class: String,
    /// How long after [`TestNode::fail`] the Pods of the failed node are evicted (deleted);
    /// a real cluster's default is 300 s (the `unreachable` toleration's seconds).
    pub pod_eviction_timeout: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            node_name: "test-node".to_owned(),
            storage_class: "standard".to_owned(),
            pod_eviction_timeout: Duration::from_secs(300),
        }
    }
}

/// What the node's tasks share.
pub(crate) struct Shared {
    pub(crate) client: Client,
    pub(crate) name: String,
    pub(crate) storage_class: String,
    pub(crate) workdir: PathBuf,
    pub(crate) host_ip: Ipv4Addr,
    pub(crate) processes: processes::Processes,
    /// The running containers, for the faults a test injects.
    pub(crate) running: faults::Running,
    /// Whether the node has failed ([`TestNode::fail`]).
    failed: AtomicBool,
}

impl Shared {
    /// Whether the node is failed: its kubelet neither writes nor starts anything.
    pub(crate) fn failed(&self) -> bool {
        self.failed.load(Ordering::SeqCst)
    }

    pub(crate) fn set_failed(&self, failed: bool) {
        self.failed.store(failed, Ordering::SeqCst);
    }

    /// A fresh Pod IP: `127.<B>.<C>.<D>` with `B` chosen per test process (so parallel test
    /// binaries rarely meet) and `C.D` counting from 1.1 (`0.1` is the node).
    pub(crate) fn allocate_ip(&self) -> Ipv4Addr {
        let n = NEXT_POD.fetch_add(1, Ordering::Relaxed);
        let [_, b, _, _] = self.host_ip.octets();
        let c = 1 + (n / 254) % 255;
        let d = 1 + n % 254;
        Ipv4Addr::new(
            127,
            b,
            u8::try_from(c).unwrap_or(1),
            u8::try_from(d).unwrap_or(1),
        )
    }

    /// The log of one container of `pod` (stdout and stderr, appended across restarts and
    /// across Pods of the same name, as `/var/log/containers` would keep them).
    pub(crate) fn open_log(&self, pod: &Pod, container: &str) -> std::io::Result<std::fs::File> {
        let path = self.log_path(
            pod.metadata.namespace.as_deref().unwrap_or("default"),
            pod.metadata.name.as_deref().unwrap_or_default(),
            container,
        );
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
    }

    fn log_path(&self, namespace: &str, pod: &str, container: &str) -> PathBuf {
        self.workdir
            .join("logs")
            .join(format!("{namespace}_{pod}_{container}.log"))
    }
}

/// One node: its scheduler, kubelet and provisioner tasks, and every process they started.
///
/// # Guarantees
/// Dropping it (also while a test panics) cancels its tasks, SIGKILLs every process group
/// it started and waits (up to 5 s) until none of their processes runs.
pub struct TestNode {
    shared: Arc<Shared>,
    tasks: Vec<JoinHandle<()>>,
    eviction_timeout: Duration,
    /// The pending eviction of a failed node's Pods.
    eviction: Mutex<Option<faults::AbortOnDrop>>,
}

impl TestNode {
    /// Registers the node and its `StorageClass` (where the API server serves them) and
    /// starts binding, provisioning and running Pods. Volumes, Pod files and container logs
    /// live under `workdir`.
    ///
    /// # Errors
    /// The work directory cannot be created, or the `Node` or `StorageClass` cannot be
    /// written (other than for not being served).
    pub async fn start(client: Client, workdir: &Path, config: Config) -> Result<Self, Error> {
        for dir in ["volumes", "pods", "logs"] {
            let path = workdir.join(dir);
            std::fs::create_dir_all(&path).map_err(|source| Error::Workdir { path, source })?;
        }
        let b = 100 + u8::try_from(std::process::id() % 100).unwrap_or(0);
        let shared = Arc::new(Shared {
            client,
            name: config.node_name,
            storage_class: config.storage_class,
            workdir: workdir.to_owned(),
            host_ip: Ipv4Addr::new(127, b, 0, 1),
            processes: processes::Processes::new(),
            running: faults::Running::default(),
            failed: AtomicBool::new(false),
        });
        register_node(&shared)
            .await
            .map_err(|source| Error::Register {
                what: "Node",
                source,
            })?;
        volumes::register_class(&shared)
            .await
            .map_err(|source| Error::Register {
                what: "StorageClass",
                source,
            })?;
        let tasks = vec![
            tokio::spawn(kubelet::run(shared.clone())),
            tokio::spawn(volumes::provision(shared.clone())),
            tokio::spawn(services::run(shared.clone())),
        ];
        Ok(Self {
            shared,
            tasks,
            eviction_timeout: config.pod_eviction_timeout,
            eviction: Mutex::new(None),
        })
    }

    /// The node's name.
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// The node's address (`status.hostIP` of its Pods).
    pub fn host_ip(&self) -> Ipv4Addr {
        self.shared.host_ip
    }

    /// The name of its default `StorageClass`.
    pub fn storage_class(&self) -> &str {
        &self.shared.storage_class
    }

    /// The directory backing the volume `volume_name` (a bound claim's `spec.volumeName`).
    pub fn volume_dir(&self, volume_name: &str) -> PathBuf {
        volumes::volume_dir(&self.shared.workdir, volume_name)
    }

    /// What one container of a Pod has written to stdout and stderr so far.
    pub fn container_log(&self, namespace: &str, pod: &str, container: &str) -> String {
        std::fs::read_to_string(self.shared.log_path(namespace, pod, container)).unwrap_or_default()
    }

    /// The process groups of the containers and probes running now.
    pub fn process_groups(&self) -> Vec<i32> {
        self.shared.processes.groups()
    }

    /// Kills (SIGKILL) every process of one running container, as an OOM kill or a crash
    /// would; the kubelet then restarts it per the Pod's `restartPolicy`. `false` when the
    /// container is not running.
    pub fn kill_container(&self, namespace: &str, pod: &str, container: &str) -> bool {
        self.signal(namespace, pod, Some(container), libc::SIGKILL)
    }

    /// Freezes (SIGSTOP) every process of a Pod: a hung instance. Its listening sockets
    /// still complete TCP handshakes, as a hung server's do. `false` when nothing runs.
    pub fn freeze_pod(&self, namespace: &str, pod: &str) -> bool {
        self.signal(namespace, pod, None, libc::SIGSTOP)
    }

    /// Resumes (SIGCONT) a frozen Pod.
    pub fn thaw_pod(&self, namespace: &str, pod: &str) -> bool {
        self.signal(namespace, pod, None, libc::SIGCONT)
    }

    fn signal(&self, namespace: &str, pod: &str, container: Option<&str>, signal: i32) -> bool {
        let groups = self.shared.running.groups_of(namespace, pod, container);
        for pgid in &groups {
            processes::signal_group(*pgid, signal);
        }
        !groups.is_empty()
    }

    /// Fails the node as a power loss does: every process it runs is killed, its kubelet
    /// writes and starts nothing; the `Node` goes `Ready=Unknown` (tainted `unreachable`),
    /// its Pods `Ready=False`, and after [`Config::pod_eviction_timeout`] they are deleted
    /// (staying `Terminating` until [`TestNode::recover`]).
    pub async fn fail(&self) {
        let eviction = faults::fail(&self.shared, self.eviction_timeout).await;
        *self.eviction.lock().unwrap_or_else(|e| e.into_inner()) = Some(eviction);
    }

    /// Brings a failed node back: `Ready` again; its kubelet restarts the containers of the
    /// Pods still bound to it (per their `restartPolicy`) and ends those deleted meanwhile.
    pub async fn recover(&self) {
        self.eviction
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        faults::recover(&self.shared).await;
    }
}

impl Drop for TestNode {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
        self.shared.processes.end_all(KILL_WAIT);
    }
}

/// Creates `object`; `Ok(false)` when the API server does not serve its kind (404), and
/// `Ok(true)` when it exists already.
pub(crate) async fn create_if_served<K>(api: &Api<K>, object: &K) -> Result<bool, kube::Error>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + serde::Serialize + std::fmt::Debug,
{
    match api.create(&PostParams::default(), object).await {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(status)) if status.code == 409 => Ok(true),
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(false),
        Err(error) => Err(error),
    }
}

/// The `Node`, Ready, with the node's address (when the API server serves Nodes).
async fn register_node(shared: &Shared) -> Result<(), kube::Error> {
    let api: Api<Node> = Api::all(shared.client.clone());
    let node: Node = serde_json::from_value(json!({
        "metadata": {"name": shared.name, "labels": {
            "kubernetes.io/hostname": shared.name,
            "kubernetes.io/os": "linux",
        }},
    }))
    .expect("a valid Node");
    if !create_if_served(&api, &node).await? {
        tracing::info!("the API server does not serve Nodes: the node is not registered");
        return Ok(());
    }
    let now = status::now();
    api.patch_status(
        &shared.name,
        &PatchParams::default(),
        &Patch::Merge(json!({"status": {
            "conditions": [{
                "type": "Ready",
                "status": "True",
                "reason": "KubeletReady",
                "message": "kubelet is posting ready status",
                "lastHeartbeatTime": now,
                "lastTransitionTime": now,
            }],
            "addresses": [
                {"type": "InternalIP", "address": shared.host_ip.to_string()},
                {"type": "Hostname", "address": shared.name},
            ],
            "nodeInfo": {
                "kubeletVersion": "test-node",
                "operatingSystem": "linux",
                "architecture": std::env::consts::ARCH,
                "containerRuntimeVersion": "test-node://processes",
                "osImage": "", "kernelVersion": "", "kubeProxyVersion": "",
                "machineID": "", "systemUUID": "", "bootID": "",
            },
        }})),
    )
    .await?;
    Ok(())
}
