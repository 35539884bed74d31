//! Follows one binding: its spec and the ConfigMap it points at. Each new
//! component is loaded (compiling off the async threads, or reading the
//! precompiled cache) and put in service only when every check passes:
//! swapped into the running controller, or the controller restarted when
//! the new version watches other children. A refused version never
//! replaces the one in service.
//!
//! Every replica follows every binding, so that each serves admission
//! reviews from versions of its own; only the leader runs controllers,
//! writes statuses and records events. A replica that starts leading
//! starts the controllers of the versions it already serves (nothing is
//! loaded twice); one that stops leading stops them and keeps serving.

use std::sync::Arc;
use std::time::Instant;

use futures::StreamExt;
use futures::stream::BoxStream;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::Api;
use kube::runtime::events::EventType;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, Resource, ResourceExt};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::bound::BoundPlugin;
use super::in_service::InService;
use super::live::{self, BindingPublisher};
use super::load::{self, BindingError};
use super::signal::{Shutdown, StartController, shutdown_signal};
use super::status::{self, BindingState};
use crate::crd::{ConfigMapSource, ReconcilerPlugin, ReconcilerPluginSpec, ReconcilerPluginStatus};
use crate::events::EventRecorder;
use crate::metrics::{BindingLabels, Metrics};
use crate::runtime::{PluginDigest, Runtime};

/// What following a binding needs, shared by the tasks of every binding.
pub(super) struct Loader {
    /// The API client.
    pub(super) client: Client,
    /// Loads components.
    pub(super) runtime: Arc<Runtime>,
    /// Counts swaps, refusals and loads.
    pub(super) metrics: Arc<Metrics>,
    /// Records events on bindings.
    pub(super) events: EventRecorder,
    /// Runs a binding's controller.
    pub(super) start: StartController,
    /// Where the version in service of each binding is published by name.
    pub(super) in_service: InService,
    /// Whether this replica leads: only then do controllers run and are
    /// statuses and events written.
    pub(super) leading: watch::Receiver<bool>,
}

/// What a load was attempted from: the binding's spec and the component's
/// digest (`None` when the component could not be read).
#[derive(Debug, Clone, PartialEq)]
struct Attempt {
    spec: ReconcilerPluginSpec,
    digest: Option<PluginDigest>,
}

/// A version in service, and its controller while this replica leads.
struct Serving {
    binding: BoundPlugin,
    attempt: Attempt,
    controller: Option<Controller>,
}

/// A running controller and how to reach it.
struct Controller {
    publisher: BindingPublisher,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl Controller {
    /// Stops the controller and waits for its reconciles in flight.
    async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

impl Serving {
    /// Whether `next` can be swapped into the running controller: it must
    /// watch the same children with the same concurrency.
    fn can_swap_in(&self, next: &BoundPlugin) -> bool {
        self.controller
            .as_ref()
            .is_some_and(|c| !c.task.is_finished())
            && self.binding.grants.child_kinds == next.grants.child_kinds
            && self.binding.concurrency == next.concurrency
    }

    /// Stops the controller, if any, and waits for its reconciles in flight.
    async fn stop(self) {
        if let Some(controller) = self.controller {
            controller.stop().await;
        }
    }
}

/// One binding under supervision.
pub(super) struct Followed {
    name: String,
    loader: Arc<Loader>,
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
            Some(cm) => load::component_in(cm, source),
            None => Err(BindingError::ConfigMapNotFound {
                namespace: source.namespace.clone(),
                name: source.name.clone(),
            }),
        }),
        (None, Some(path)) if spec.source.config_map.is_none() => Some(load::read_file(path).await),
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

impl Followed {
    /// Starts following `binding` (nothing in service yet).
    pub(super) fn new(binding: &ReconcilerPlugin, loader: Arc<Loader>) -> Self {
        Self {
            name: binding.name_any(),
            status: binding.status.clone().unwrap_or_default(),
            loader,
            serving: None,
            refused: None,
        }
    }

    /// Follows the binding and its ConfigMap until `stop` fires or the
    /// binding goes away, then stops its controller.
    pub(super) async fn run(
        mut self,
        mut bindings: watch::Receiver<ReconcilerPlugin>,
        stop: Shutdown,
    ) {
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
        let mut leading = self.loader.leading.clone();
        // Converging below reads the leadership as it is now.
        leading.borrow_and_update();
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
                changed = leading.changed(), if self.loader.leading.has_changed().is_ok() => {
                    if changed.is_ok() {
                        let now_leading = *leading.borrow_and_update();
                        if self.lead(now_leading).await {
                            // Statuses and events again, from the leader.
                            converged_spec = None;
                        }
                    }
                }
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
        self.loader.in_service.remove(&self.name);
        if let Some(serving) = self.serving.take() {
            serving.stop().await;
        }
    }

    /// Whether this replica leads now.
    fn leading(&self) -> bool {
        *self.loader.leading.borrow()
    }

    /// Follows a change of leadership: starts the controller of the version
    /// in service on becoming leader, stops it on losing leadership (the
    /// version keeps serving admission). Returns whether this replica now
    /// leads and should report the binding's state again.
    async fn lead(&mut self, leading: bool) -> bool {
        // Whatever was refused is tried again, so the new leader reports it.
        if leading {
            self.refused = None;
        }
        let Some(mut serving) = self.serving.take() else {
            return leading;
        };
        match (leading, serving.controller.take()) {
            (true, None) => {
                tracing::info!(binding = %self.name, "leading: starting the controller of the version in service");
                serving.controller = self.start_controller(&serving.binding, None);
            }
            (false, Some(controller)) => {
                tracing::info!(binding = %self.name, "not leading: stopping the controller; admission keeps being served");
                controller.stop().await;
            }
            (_, kept) => serving.controller = kept,
        }
        self.serving = Some(serving);
        leading
    }

    fn watch_config_map(&self, source: &ConfigMapSource) -> ConfigMapEvents {
        let api: Api<ConfigMap> = Api::namespaced(self.loader.client.clone(), &source.namespace);
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
            if self.leading()
                && let Some(status) = self
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
            Ok(bytes) => load::load(&self.loader.runtime, &binding.spec, &bytes, serving).await,
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
        next: BoundPlugin,
        attempt: Attempt,
        changed_at: Instant,
    ) {
        let metrics = &self.loader.metrics;
        let previous = self
            .serving
            .as_ref()
            .map(|s| s.binding.plugin.digest().clone());
        if previous.as_ref() != Some(next.plugin.digest()) {
            let (source, elapsed) = next.plugin.load_report();
            metrics.record_plugin_load(&self.labels(Some(&next)), source, elapsed);
        }
        let d = next.plugin.description();
        let summary = format!("{} {} ({})", d.name, d.version, next.plugin.digest());
        if !self.leading() {
            // A follower: the version serves admission only.
            tracing::info!(binding = %self.name, plugin = %summary, "plugin in service for admission (not leading: no controller)");
            let controller = match self.serving.take() {
                Some(serving) => serving.controller,
                None => None,
            };
            let serving = Serving {
                binding: next,
                attempt,
                controller: None,
            };
            if let Some(controller) = controller {
                controller.stop().await;
            }
            self.refused = None;
            self.loader
                .in_service
                .put(&self.name, serving.binding.clone());
            self.serving = Some(serving);
            return;
        }
        match self.serving.take() {
            None => {
                tracing::info!(binding = %self.name, plugin = %summary, "plugin in service: starting its controller");
                let controller = self.start_controller(&next, None);
                self.serving = Some(Serving {
                    binding: next,
                    attempt,
                    controller,
                });
            }
            Some(mut serving) if serving.can_swap_in(&next) => {
                if let Some(controller) = &serving.controller {
                    controller.publisher.publish(next.clone(), changed_at);
                }
                serving.binding = next;
                serving.attempt = attempt;
                self.serving = Some(serving);
                metrics.record_plugin_swap(&self.labels(self.serving.as_ref().map(|s| &s.binding)));
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
                let controller = self.start_controller(&next, Some(changed_at));
                self.serving = Some(Serving {
                    binding: next,
                    attempt,
                    controller,
                });
                metrics.record_plugin_swap(&self.labels(self.serving.as_ref().map(|s| &s.binding)));
                self.event(binding, EventType::Normal, "PluginSwapped", format!("{summary} in service; its controller restarted for new children or concurrency")).await;
            }
        }
        self.refused = None;
        if let Some(serving) = &self.serving {
            // With the controller's swap, so that admission reviews from
            // now on use the new version too.
            self.loader
                .in_service
                .put(&self.name, serving.binding.clone());
        }
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
        self.loader.metrics.record_plugin_rejection(
            &self.labels(self.serving.as_ref().map(|s| &s.binding)),
            reason,
        );
        let serving = self.serving.as_ref().map(|s| &s.binding);
        if !self.leading() {
            tracing::warn!(binding = %self.name, reason, %error, "plugin version refused (not leading: the leader reports it)");
            self.refused = Some(attempt);
            return;
        }
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

    /// The labels of this binding's series while `serving` serves.
    fn labels(&self, serving: Option<&BoundPlugin>) -> BindingLabels {
        BindingLabels::new(&self.name, serving.map_or("", BoundPlugin::plugin_name))
    }

    /// Starts the controller of `binding`; none for a plugin that only
    /// admits (no controller, no watch of its kind).
    fn start_controller(
        &self,
        binding: &BoundPlugin,
        changed_at: Option<Instant>,
    ) -> Option<Controller> {
        if binding.plugin.description().is_admission_only() {
            return None;
        }
        let (publisher, live) = live::channel(&self.name, binding.clone(), changed_at);
        let (stop, stop_rx) = watch::channel(false);
        let task = tokio::spawn((self.loader.start)(live, shutdown_signal(stop_rx)));
        Some(Controller {
            publisher,
            stop,
            task,
        })
    }

    /// Writes the binding's status for `state` when it says something new,
    /// and returns the status now in place (`None` when the write failed).
    async fn write_status(
        &self,
        binding: &ReconcilerPlugin,
        state: BindingState<'_>,
    ) -> Option<ReconcilerPluginStatus> {
        status::record_status(&self.loader.client, binding, &self.status, state)
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
        let reference = binding.object_ref(&());
        if let Err(error) = self
            .loader
            .events
            .publish(&reference, type_, reason, &note, "Load")
            .await
        {
            tracing::warn!(binding = %self.name, %error, reason, "could not record an event");
        }
    }
}
