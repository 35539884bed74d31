//! Faults a test injects into the node: a container's processes killed, a Pod frozen
//! (SIGSTOP, a hung instance) and thawed, and the whole node failing (a power loss) and
//! recovering, with what the control plane's node lifecycle controller then does.
//!
//! A failed node's kubelet is dead: its processes are gone, it writes no status and starts
//! nothing. The lifecycle controller (played here, as the node is the only one that knows)
//! marks the `Node` `Ready=Unknown` with the `unreachable` taints, marks each of its Pods
//! `Ready=False` (so their endpoints go not-ready and the Services stop forwarding to
//! them), and after the eviction timeout deletes them — they then stay `Terminating`, as
//! on a real cluster, until the kubelet comes back and confirms their end.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use serde_json::json;
use tokio::task::JoinHandle;

use crate::Shared;
use crate::status::now;

/// The running containers by process group: (namespace, Pod, container).
#[derive(Debug, Default)]
pub(crate) struct Running {
    groups: Mutex<BTreeMap<i32, (String, String, String)>>,
}

impl Running {
    /// Records a started container.
    pub(crate) fn insert(&self, pod: &Pod, container: &str, pgid: i32) {
        let namespace = pod.metadata.namespace.clone().unwrap_or_default();
        let name = pod.metadata.name.clone().unwrap_or_default();
        self.lock()
            .insert(pgid, (namespace, name, container.to_owned()));
    }

    /// Forgets a container whose process has ended.
    pub(crate) fn remove(&self, pgid: i32) {
        self.lock().remove(&pgid);
    }

    /// The groups of a Pod's running containers (one container's, when named).
    pub(crate) fn groups_of(
        &self,
        namespace: &str,
        pod: &str,
        container: Option<&str>,
    ) -> Vec<i32> {
        self.lock()
            .iter()
            .filter(|(_, (ns, p, c))| {
                ns == namespace && p == pod && container.is_none_or(|name| name == c)
            })
            .map(|(pgid, _)| *pgid)
            .collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<i32, (String, String, String)>> {
        self.groups.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A task aborted when its handle goes.
pub(crate) struct AbortOnDrop(pub(crate) JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Fails the node: kills every process, marks the Node and its Pods, and schedules the
/// eviction of its Pods after `eviction_timeout`.
pub(crate) async fn fail(shared: &Arc<Shared>, eviction_timeout: Duration) -> AbortOnDrop {
    shared.set_failed(true);
    for pgid in shared.processes.groups() {
        crate::processes::signal_group(pgid, libc::SIGKILL);
    }
    let since = now();
    let node_status = json!({
        "spec": {"taints": [
            {"key": "node.kubernetes.io/unreachable", "effect": "NoSchedule", "timeAdded": since},
            {"key": "node.kubernetes.io/unreachable", "effect": "NoExecute", "timeAdded": since},
        ]},
    });
    let ready = json!({"status": {"conditions": [{
        "type": "Ready",
        "status": "Unknown",
        "reason": "NodeStatusUnknown",
        "message": "Kubelet stopped posting node status.",
        "lastHeartbeatTime": since,
        "lastTransitionTime": since,
    }]}});
    write_node(shared, node_status, ready).await;
    for pod in pods_on(shared).await {
        if let Err(error) = mark_not_ready(shared, &pod).await {
            tracing::debug!(%error, "marking a Pod of the failed node not ready");
        }
    }
    let shared = shared.clone();
    AbortOnDrop(tokio::spawn(async move {
        tokio::time::sleep(eviction_timeout).await;
        if !shared.failed() {
            return;
        }
        for pod in pods_on(&shared).await {
            let api: Api<Pod> = Api::namespaced(
                shared.client.clone(),
                pod.metadata.namespace.as_deref().unwrap_or("default"),
            );
            let name = pod.metadata.name.as_deref().unwrap_or_default();
            if let Err(error) = api.delete(name, &DeleteParams::default()).await {
                tracing::debug!(%error, "evicting a Pod of the failed node");
            }
        }
    }))
}

/// The node is back: Ready, untainted; its kubelet writes and starts again.
pub(crate) async fn recover(shared: &Shared) {
    shared.set_failed(false);
    let since = now();
    let ready = json!({"status": {"conditions": [{
        "type": "Ready",
        "status": "True",
        "reason": "KubeletReady",
        "message": "kubelet is posting ready status",
        "lastHeartbeatTime": since,
        "lastTransitionTime": since,
    }]}});
    write_node(shared, json!({"spec": {"taints": null}}), ready).await;
}

async fn write_node(shared: &Shared, spec: serde_json::Value, status: serde_json::Value) {
    let api: Api<Node> = Api::all(shared.client.clone());
    let params = PatchParams::default();
    let result = async {
        api.patch(&shared.name, &params, &Patch::Merge(spec))
            .await?;
        api.patch_status(&shared.name, &params, &Patch::Merge(status))
            .await
    }
    .await;
    if let Err(error) = result {
        tracing::debug!(%error, "writing the Node");
    }
}

async fn pods_on(shared: &Shared) -> Vec<Pod> {
    let api: Api<Pod> = Api::all(shared.client.clone());
    match api.list(&ListParams::default()).await {
        Ok(list) => list
            .items
            .into_iter()
            .filter(|p| {
                p.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some(shared.name.as_str())
            })
            .collect(),
        Err(error) => {
            tracing::debug!(%error, "listing the Pods of the node");
            Vec::new()
        }
    }
}

/// `Ready=False` on one Pod, as the lifecycle controller's `MarkPodsNotReady` writes it.
async fn mark_not_ready(shared: &Shared, pod: &Pod) -> Result<(), kube::Error> {
    let api: Api<Pod> = Api::namespaced(
        shared.client.clone(),
        pod.metadata.namespace.as_deref().unwrap_or("default"),
    );
    let mut pod = pod.clone();
    let name = pod.metadata.name.clone().unwrap_or_default();
    let since = k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(jiff::Timestamp::now());
    for condition in pod
        .status
        .iter_mut()
        .flat_map(|s| s.conditions.iter_mut().flatten())
    {
        if condition.type_ == "Ready" && condition.status != "False" {
            condition.status = "False".to_owned();
            condition.last_transition_time = Some(since.clone());
        }
    }
    api.replace_status(&name, &PostParams::default(), &pod)
        .await
        .map(drop)
}
