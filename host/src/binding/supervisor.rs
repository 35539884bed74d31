//! Keeps every `ReconcilerPlugin`'s controller on the newest good version of
//! its plugin: watches the bindings and runs one task per binding (see
//! [`follow`](super::follow)) that follows it and the ConfigMap it points at.
//! A refused version never replaces the one in service: the binding's
//! status and a Warning event say why, and the previous version keeps
//! serving. Every replica runs one reloader for its whole life; only the
//! leader's runs controllers (see [`follow`](super::follow)).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use futures::StreamExt;
use kube::api::{Api, ListParams};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, ResourceExt};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::controller::StartController;
use super::follow::{Followed, Loader};
use super::in_service::InService;
use super::signal::{Shutdown, shutdown_signal};
use crate::crd::ReconcilerPlugin;
use crate::events::EventRecorder;
use crate::metrics::Metrics;
use crate::runtime::Runtime;

/// Why reloading could not start.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// The bindings cannot be listed.
    #[error("cannot list ReconcilerPlugins: {0}; is the CRD installed (kubectl apply -f crds/)?")]
    ListBindings(#[source] kube::Error),
}

/// Watches the bindings and keeps one controller per binding that has a
/// version in service.
pub struct Reloader {
    loader: Arc<Loader>,
}

impl Reloader {
    /// A reloader that loads with `runtime`, runs controllers with `start`,
    /// reports events on bindings as `reporter` and keeps `in_service` on
    /// the version each binding serves. Controllers run, and statuses and
    /// events are written, only while `leading` says this replica leads;
    /// versions are put in service either way, for admission.
    pub fn new(
        client: Client,
        runtime: Arc<Runtime>,
        metrics: Arc<Metrics>,
        reporter: &str,
        start: StartController,
        in_service: InService,
        leading: watch::Receiver<bool>,
    ) -> Self {
        let events = EventRecorder::new(client.clone(), reporter);
        Self {
            loader: Arc::new(Loader {
                client,
                runtime,
                metrics,
                events,
                start,
                in_service,
                leading,
            }),
        }
    }

    /// Checks that the bindings can be listed, then watches them in a task
    /// of its own until `stop` fires; the task then stops every controller
    /// and ends once their reconciles in flight have finished.
    ///
    /// # Errors
    /// [`ReloadError::ListBindings`], typically when the CRD is missing.
    pub async fn start(self, stop: Shutdown) -> Result<JoinHandle<()>, ReloadError> {
        let api: Api<ReconcilerPlugin> = Api::all(self.loader.client.clone());
        api.list(&ListParams::default().limit(1))
            .await
            .map_err(ReloadError::ListBindings)?;
        Ok(tokio::spawn(Arc::new(self).watch_bindings(api, stop)))
    }

    async fn watch_bindings(self: Arc<Self>, api: Api<ReconcilerPlugin>, stop: Shutdown) {
        let mut supervisors: HashMap<String, Supervisor> = HashMap::new();
        // The names seen since the watch (re)started its initial list: the
        // others were deleted while it was not watching.
        let mut listed: Option<HashSet<String>> = None;
        let mut events = watcher(api, watcher::Config::default())
            .default_backoff()
            .boxed();
        loop {
            let event = tokio::select! {
                () = stop.clone() => break,
                event = events.next() => event,
            };
            match event {
                None => break,
                Some(Err(error)) => {
                    tracing::warn!(%error, "watching ReconcilerPlugins failed; retrying");
                }
                Some(Ok(watcher::Event::Init)) => listed = Some(HashSet::new()),
                Some(Ok(watcher::Event::InitApply(binding))) => {
                    if let Some(seen) = &mut listed {
                        seen.insert(binding.name_any());
                    }
                    self.upsert(&mut supervisors, binding);
                }
                Some(Ok(watcher::Event::Apply(binding))) => self.upsert(&mut supervisors, binding),
                Some(Ok(watcher::Event::InitDone)) => {
                    let seen = listed.take().unwrap_or_default();
                    let gone: Vec<String> = supervisors
                        .keys()
                        .filter(|name| !seen.contains(*name))
                        .cloned()
                        .collect();
                    for name in gone {
                        if let Some(supervisor) = supervisors.remove(&name) {
                            supervisor.stop().await;
                        }
                    }
                }
                Some(Ok(watcher::Event::Delete(binding))) => {
                    if let Some(supervisor) = supervisors.remove(&binding.name_any()) {
                        tracing::info!(binding = %binding.name_any(), "binding deleted: stopping its controller");
                        supervisor.stop().await;
                    }
                }
            }
        }
        futures::future::join_all(supervisors.into_values().map(Supervisor::stop)).await;
    }

    fn upsert(
        self: &Arc<Self>,
        supervisors: &mut HashMap<String, Supervisor>,
        binding: ReconcilerPlugin,
    ) {
        match supervisors.get(&binding.name_any()) {
            Some(supervisor) => {
                supervisor.binding.send_replace(binding);
            }
            None => {
                supervisors.insert(
                    binding.name_any(),
                    Supervisor::spawn(Arc::clone(&self.loader), binding),
                );
            }
        }
    }
}

/// The task that keeps one binding's controller on its newest good version.
struct Supervisor {
    binding: watch::Sender<ReconcilerPlugin>,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl Supervisor {
    fn spawn(loader: Arc<Loader>, binding: ReconcilerPlugin) -> Self {
        let state = Followed::new(&binding, loader);
        let (binding, bindings) = watch::channel(binding);
        let (stop, stop_rx) = watch::channel(false);
        let task = tokio::spawn(state.run(bindings, shutdown_signal(stop_rx)));
        Self {
            binding,
            stop,
            task,
        }
    }

    /// Stops the binding's controller and waits for its reconciles in flight.
    async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}
