//! The node's control loop over Pods: it plays the scheduler for Pods nobody has placed
//! (binds them to this node) and the kubelet for Pods placed here (one worker per Pod).
//!
//! The test API server has no `binding` subresource, so binding is a patch of
//! `spec.nodeName` followed by the `PodScheduled` condition on `/status` — the same end
//! state the API server's binding handler writes.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::{WatchStreamExt, watcher};
use serde_json::json;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::status::now;
use crate::{Shared, pod};

/// The scheduler name this node schedules for.
const DEFAULT_SCHEDULER: &str = "default-scheduler";

/// Schedules and runs Pods for as long as the node runs. Dropping the future cancels every
/// Pod worker (the node's Drop then kills their processes).
pub(crate) async fn run(shared: Arc<Shared>) {
    let api: Api<Pod> = Api::all(shared.client.clone());
    let mut events = watcher(api, watcher::Config::default())
        .default_backoff()
        .boxed();
    let mut workers: HashMap<String, watch::Sender<Option<Pod>>> = HashMap::new();
    // Pods whose worker has finished: a late event for one must not start it again.
    let mut done: HashSet<String> = HashSet::new();
    let mut tasks = JoinSet::new();
    while let Some(event) = events.next().await {
        while tasks.try_join_next().is_some() {}
        workers.retain(|uid, updates| {
            let finished = updates.is_closed();
            if finished {
                done.insert(uid.clone());
            }
            !finished
        });
        let pod = match event {
            Ok(watcher::Event::Apply(pod) | watcher::Event::InitApply(pod)) => pod,
            Ok(watcher::Event::Delete(pod)) => {
                if let Some(updates) = pod.metadata.uid.as_ref().and_then(|u| workers.get(u)) {
                    updates.send_replace(None);
                }
                continue;
            }
            Ok(_) => continue,
            Err(error) => {
                tracing::debug!(%error, "watching Pods");
                continue;
            }
        };
        let Some(uid) = pod.metadata.uid.clone() else {
            continue;
        };
        let spec = pod.spec.as_ref();
        // A failed node schedules and starts nothing (its workers see their Pods' updates).
        let failed = shared.failed();
        match spec.and_then(|s| s.node_name.as_deref()) {
            None if schedulable(&pod) && !failed => {
                if let Err(error) = schedule(&shared, &pod).await {
                    tracing::debug!(%error, "binding a Pod");
                }
            }
            Some(node) if node == shared.name && !done.contains(&uid) => {
                if let Some(updates) = workers.get(&uid) {
                    updates.send_replace(Some(pod));
                } else if !failed {
                    let (updates, receiver) = watch::channel(Some(pod));
                    tasks.spawn(pod::run(shared.clone(), receiver));
                    workers.insert(uid, updates);
                }
            }
            _ => {}
        }
    }
}

/// Whether the scheduler would consider `pod`: not deleted, for the default scheduler.
fn schedulable(pod: &Pod) -> bool {
    let scheduler = pod.spec.as_ref().and_then(|s| s.scheduler_name.as_deref());
    pod.metadata.deletion_timestamp.is_none() && scheduler.is_none_or(|s| s == DEFAULT_SCHEDULER)
}

/// Binds `pod` to the node.
async fn schedule(shared: &Shared, pod: &Pod) -> Result<(), kube::Error> {
    let name = pod.metadata.name.as_deref().unwrap_or_default();
    let api: Api<Pod> = Api::namespaced(
        shared.client.clone(),
        pod.metadata.namespace.as_deref().unwrap_or("default"),
    );
    // The resourceVersion makes the bind conditional, as a binding is: a Pod changed
    // meanwhile is seen again on the next event.
    api.patch(
        name,
        &PatchParams::default(),
        &Patch::Merge(json!({
            "metadata": {"resourceVersion": pod.metadata.resource_version},
            "spec": {"nodeName": shared.name},
        })),
    )
    .await?;
    api.patch_status(
        name,
        &PatchParams::default(),
        &Patch::Merge(json!({"status": {
            "phase": "Pending",
            "conditions": [{
                "type": "PodScheduled",
                "status": "True",
                "lastProbeTime": null,
                "lastTransitionTime": now(),
            }],
        }})),
    )
    .await?;
    Ok(())
}
