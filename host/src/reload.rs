//! Keeps every `ReconcilerPlugin`'s controller on the newest good version of
//! its plugin: watches the bindings and the ConfigMaps they point at, loads
//! each new version with [`registry::load`] (compiling off the async
//! threads, or reading the precompiled cache) and swaps it in only when
//! every check passes. A refused version never replaces the one in service:
//! the binding's status and a Warning event say why, and the previous
//! version keeps serving.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Instant;

use futures::future::{BoxFuture, Shared};
use futures::stream::BoxStream;
use futures::{FutureExt, StreamExt};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, ListParams};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, Resource, ResourceExt};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::controller::{self, BindingPublisher, LiveBinding, PluginBinding};
use crate::crd::{ConfigMapSource, ReconcilerPlugin, ReconcilerPluginSpec, ReconcilerPluginStatus};
use crate::metrics::Metrics;
use crate::registry::{self, BindingError, BindingState};
use crate::runtime::{PluginDigest, Runtime};

/// A stop signal every task can hold a copy of.
pub type Shutdown = Shared<BoxFuture<'static, ()>>;

/// A stop signal that fires once `rx` holds `true` or its sender is gone.
pub fn shutdown_signal(mut rx: watch::Receiver<bool>) -> Shutdown {
    async move {
        let _ = rx.wait_for(|stop| *stop).await;
    }
    .boxed()
    .shared()
}

/// Runs the controller of a binding until the signal fires.
pub type StartController =
    Arc<dyn Fn(LiveBinding, Shutdown) -> BoxFuture<'static, ()> + Send + Sync>;

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
    client: Client,
    runtime: Arc<Runtime>,
    metrics: Arc<Metrics>,
    recorder: Recorder,
    start: StartController,
}

impl Reloader {
    /// A reloader that loads with `runtime`, runs controllers with `start`
    /// and reports events on bindings as `reporter`.
    pub fn new(
        client: Client,
        runtime: Arc<Runtime>,
        metrics: Arc<Metrics>,
        reporter: &str,
        start: StartController,
    ) -> Self {
        let recorder = Recorder::new(
            client.clone(),
            Reporter {
                controller: reporter.to_owned(),
                instance: std::env::var("POD_NAME").ok(),
            },
        );
        Self {
            client,
            runtime,
            metrics,
            recorder,
            start,
        }
    }

    /// Checks that the bindings can be listed, then watches them in a task
    /// of its own until `stop` fires; the task then stops every controller
    /// and ends once their reconciles in flight have finished.
    ///
    /// # Errors
    /// [`ReloadError::ListBindings`], typically when the CRD is missing.
    pub async fn start(self, stop: Shutdown) -> Result<JoinHandle<()>, ReloadError> {
        let api: Api<ReconcilerPlugin> = Api::all(self.client.clone());
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
                    Supervisor::spawn(Arc::clone(self), binding),
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
    fn spawn(reloader: Arc<Reloader>, binding: ReconcilerPlugin) -> Self {
        let state = SupervisedBinding {
            name: binding.name_any(),
            status: binding.status.clone().unwrap_or_default(),
            reloader,
            serving: None,
            refused: None,
        };
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

/// What a load was attempted from: the binding's spec and the component's
/// digest (`None` when the component could not be read).
#[derive(Debug, Clone, PartialEq)]
struct Attempt {
    spec: ReconcilerPluginSpec,
    digest: Option<PluginDigest>,
}

/// A version in service and its controller.
struct Serving {
    binding: PluginBinding,
    attempt: Attempt,
    publisher: BindingPublisher,
    stop: watch::Sender<bool>,
    controller: JoinHandle<()>,
}

impl Serving {
    /// Whether `next` can be swapped into the running controller: it must
    /// watch the same children with the same concurrency.
    fn can_swap_in(&self, next: &PluginBinding) -> bool {
        !self.controller.is_finished()
            && self.binding.grants.child_kinds == next.grants.child_kinds
            && self.binding.concurrency == next.concurrency
    }

    /// Stops the controller and waits for its reconciles in flight.
    async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.controller.await;
    }
}

/// One binding under supervision.
struct SupervisedBinding {
    name: String,
    reloader: Arc<Reloader>,
    serving: Option<Serving>,
    /// The last attempt refused: not tried again until the spec or the
    /// component changes.
    refused: Option<Attempt>,
    /// The status last written (or found on the binding).
    status: ReconcilerPluginStatus,
}

/// The ConfigMap a spec loads from, when it names exactly that source.
fn config_map_source(spec: &ReconcilerPluginSpec) -> Option<&ConfigMapSource> {
    match (&spec.source.config_map, &spec.source.file) {
        (Some(source), None) => Some(source),
        _ => None,
    }
}

/// The component a binding points at, given what its ConfigMap watch has
/// seen (`None` before its first list is complete; then `None` inside while
/// the ConfigMap does not exist), or `None` while that is not known yet.
async fn component(
    spec: &ReconcilerPluginSpec,
    config_map: Option<&Option<ConfigMap>>,
) -> Option<Result<Vec<u8>, BindingError>> {
    match (config_map_source(spec), &spec.source.file) {
        (Some(source), _) => config_map.map(|cm| match cm {
            Some(cm) => registry::component_in(cm, source),
            None => Err(BindingError::ConfigMapNotFound {
                namespace: source.namespace.clone(),
                name: source.name.clone(),
            }),
        }),
        (None, Some(path)) if spec.source.config_map.is_none() => {
            Some(registry::read_file(path).await)
        }
        (None, _) => Some(Err(BindingError::Source)),
    }
}

type ConfigMapEvents = BoxStream<'static, Result<watcher::Event<ConfigMap>, watcher::Error>>;

/// The next event of the ConfigMap watch, or never when there is none.
async fn next_event(
    events: &mut Option<ConfigMapEvents>,
) -> Option<Result<watcher::Event<ConfigMap>, watcher::Error>> {
    match events {
        Some(events) => events.next().await,
        None => std::future::pending().await,
    }
}

impl SupervisedBinding {
    /// Follows the binding and its ConfigMap until `stop` fires or the
    /// binding goes away, then stops its controller.
    async fn run(mut self, mut bindings: watch::Receiver<ReconcilerPlugin>, stop: Shutdown) {
        // The ConfigMap followed, its watch, and what it holds: `None` until
        // the watch's first list is complete, then `Some(None)` while the
        // ConfigMap does not exist.
        let mut followed: Option<ConfigMapSource> = None;
        let mut events: Option<ConfigMapEvents> = None;
        let mut listing: Option<ConfigMap> = None;
        let mut config_map: Option<Option<ConfigMap>> = None;
        let mut converged_spec: Option<ReconcilerPluginSpec> = None;
        let mut component_changed = false;
        let mut changed_at = Instant::now();
        loop {
            let binding = bindings.borrow_and_update().clone();
            let source = config_map_source(&binding.spec);
            if source != followed.as_ref() {
                followed = source.cloned();
                events = followed.as_ref().map(|s| self.watch_config_map(s));
                config_map = None;
            }
            let spec_changed = converged_spec.as_ref() != Some(&binding.spec);
            if spec_changed || component_changed {
                // Without the ConfigMap's first list, wait for it.
                if let Some(component) = component(&binding.spec, config_map.as_ref()).await {
                    self.converge(&binding, component, changed_at).await;
                    converged_spec = Some(binding.spec.clone());
                    component_changed = false;
                }
            }
            tokio::select! {
                () = stop.clone() => break,
                changed = bindings.changed() => {
                    if changed.is_err() {
                        break;
                    }
                    changed_at = Instant::now();
                }
                Some(event) = next_event(&mut events) => {
                    changed_at = Instant::now();
                    match event {
                        Ok(watcher::Event::Init) => listing = None,
                        Ok(watcher::Event::InitApply(cm)) => listing = Some(cm),
                        Ok(watcher::Event::InitDone) => {
                            config_map = Some(listing.take());
                            component_changed = true;
                        }
                        Ok(watcher::Event::Apply(cm)) => {
                            config_map = Some(Some(cm));
                            component_changed = true;
                        }
                        Ok(watcher::Event::Delete(_)) => {
                            config_map = Some(None);
                            component_changed = true;
                        }
                        Err(error) => {
                            tracing::warn!(binding = %self.name, %error, "watching the plugin's ConfigMap failed; retrying");
                        }
                    }
                }
            }
        }
        if let Some(serving) = self.serving.take() {
            serving.stop().await;
        }
    }

    fn watch_config_map(&self, source: &ConfigMapSource) -> ConfigMapEvents {
        let api: Api<ConfigMap> = Api::namespaced(self.reloader.client.clone(), &source.namespace);
        let config = watcher::Config::default().fields(&format!("metadata.name={}", source.name));
        watcher(api, config).default_backoff().boxed()
    }

    /// Puts the binding's component in service, unless it is already in
    /// service or was already refused.
    async fn converge(
        &mut self,
        binding: &ReconcilerPlugin,
        component: Result<Vec<u8>, BindingError>,
        changed_at: Instant,
    ) {
        let attempt = Attempt {
            spec: binding.spec.clone(),
            digest: component.as_ref().ok().map(|bytes| PluginDigest::of(bytes)),
        };
        if let Some(serving) = &self.serving
            && serving.attempt == attempt
        {
            // Back at what serves (a rollback after a refusal, or a relist).
            self.refused = None;
            if let Some(status) = self
                .write_status(binding, BindingState::Serving(&serving.binding))
                .await
            {
                self.status = status;
            }
            return;
        }
        if self.refused.as_ref() == Some(&attempt) {
            return;
        }
        let serving = self.serving.as_ref().map(|s| &s.binding);
        let loaded = match component {
            Ok(bytes) => {
                registry::load(&self.reloader.runtime, &binding.spec, &bytes, serving).await
            }
            Err(error) => Err(error),
        };
        match loaded {
            Ok(next) => {
                self.put_in_service(binding, next, attempt, changed_at)
                    .await
            }
            Err(error) => self.refuse(binding, &error, attempt).await,
        }
    }

    async fn put_in_service(
        &mut self,
        binding: &ReconcilerPlugin,
        next: PluginBinding,
        attempt: Attempt,
        changed_at: Instant,
    ) {
        let metrics = &self.reloader.metrics;
        let previous = self
            .serving
            .as_ref()
            .map(|s| s.binding.plugin.digest().clone());
        if previous.as_ref() != Some(next.plugin.digest()) {
            let (source, elapsed) = next.plugin.load_report();
            metrics.record_plugin_load(&self.name, source, elapsed);
        }
        let d = next.plugin.description();
        let summary = format!("{} {} ({})", d.name, d.version, next.plugin.digest());
        match self.serving.take() {
            None => {
                tracing::info!(binding = %self.name, plugin = %summary, "plugin in service: starting its controller");
                self.serving = Some(self.start_controller(next, attempt, None));
            }
            Some(mut serving) if serving.can_swap_in(&next) => {
                serving.publisher.publish(next.clone(), changed_at);
                serving.binding = next;
                serving.attempt = attempt;
                self.serving = Some(serving);
                metrics.record_plugin_swap(&self.name);
                self.event(
                    binding,
                    EventType::Normal,
                    "PluginSwapped",
                    format!("{summary} swapped in; every object is reconciled again"),
                )
                .await;
            }
            Some(serving) => {
                // Other children or concurrency: the controller's watches
                // change, so it restarts (reconciles in flight finish first).
                tracing::info!(binding = %self.name, plugin = %summary, "restarting the controller for the new version's children or concurrency");
                serving.stop().await;
                self.serving = Some(self.start_controller(next, attempt, Some(changed_at)));
                metrics.record_plugin_swap(&self.name);
                self.event(binding, EventType::Normal, "PluginSwapped", format!("{summary} in service; its controller restarted for new children or concurrency")).await;
            }
        }
        self.refused = None;
        if let Some(serving) = &self.serving
            && let Some(status) = self
                .write_status(binding, BindingState::Serving(&serving.binding))
                .await
        {
            self.status = status;
        }
    }

    async fn refuse(&mut self, binding: &ReconcilerPlugin, error: &BindingError, attempt: Attempt) {
        let reason = error.reason();
        self.reloader
            .metrics
            .record_plugin_rejection(&self.name, reason);
        let serving = self.serving.as_ref().map(|s| &s.binding);
        let note = match serving {
            Some(serving) => {
                tracing::warn!(binding = %self.name, reason, %error, serving = %serving.plugin.digest(), "plugin version refused: the previous version keeps serving");
                format!("{error}; {} keeps serving", serving.plugin.digest())
            }
            None => {
                tracing::error!(binding = %self.name, reason, %error, "plugin binding refused: no version serves");
                error.to_string()
            }
        };
        self.event(binding, EventType::Warning, reason, note).await;
        let state = BindingState::Refused {
            serving,
            error,
            digest: attempt.digest.as_ref(),
        };
        if let Some(status) = self.write_status(binding, state).await {
            self.status = status;
        }
        self.refused = Some(attempt);
    }

    fn start_controller(
        &self,
        binding: PluginBinding,
        attempt: Attempt,
        changed_at: Option<Instant>,
    ) -> Serving {
        let (publisher, live) = controller::channel(&self.name, binding.clone(), changed_at);
        let (stop, stop_rx) = watch::channel(false);
        let controller = tokio::spawn((self.reloader.start)(live, shutdown_signal(stop_rx)));
        Serving {
            binding,
            attempt,
            publisher,
            stop,
            controller,
        }
    }

    /// Writes the binding's status for `state` when it says something new,
    /// and returns the status now in place (`None` when the write failed).
    async fn write_status(
        &self,
        binding: &ReconcilerPlugin,
        state: BindingState<'_>,
    ) -> Option<ReconcilerPluginStatus> {
        registry::record_status(&self.reloader.client, binding, &self.status, state)
            .await
            .inspect_err(|error| {
                tracing::warn!(binding = %self.name, %error, "could not record the binding's status");
            })
            .ok()
    }

    async fn event(
        &self,
        binding: &ReconcilerPlugin,
        type_: EventType,
        reason: &str,
        note: String,
    ) {
        let event = Event {
            type_,
            reason: reason.to_owned(),
            note: Some(controller::truncate(&note, 1024)),
            action: "Load".to_owned(),
            secondary: None,
        };
        let reference = binding.object_ref(&());
        if let Err(error) = self.reloader.recorder.publish(&event, &reference).await {
            tracing::warn!(binding = %self.name, %error, reason, "could not record an event");
        }
    }
}
