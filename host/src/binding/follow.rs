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

use k8s_openapi::api::core::v1::ConfigMap;
use kube::runtime::events::EventType;
use kube::runtime::watcher;
use kube::{Resource, ResourceExt};
use tokio::sync::watch;

use super::bound::BoundPlugin;
use super::load::{self, BindingError};
use super::signal::Shutdown;
use super::status::{self, BindingState};
use crate::crd::{ConfigMapSource, ReconcilerPlugin, ReconcilerPluginSpec, ReconcilerPluginStatus};
use crate::metrics::BindingLabels;
use crate::runtime::PluginDigest;

mod source;
mod start;
mod state;

use source::{ConfigMapEvents, component, config_map_source, next_event};
use state::{Attempt, Serving};
pub(super) use state::{Followed, Loader};

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
                step = start::next_step(&mut self.serving) => {
                    let binding = bindings.borrow().clone();
                    self.on_step(&binding, step).await;
                }
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
                && let Some(state) = serving.state()
                && let Some(status) = self.write_status(binding, state).await
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
                not_started: None,
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
                    not_started: None,
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
                    not_started: None,
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
        // A controller just started reports first (see `start`).
        if let Some(serving) = &self.serving
            && let Some(state) = serving.state()
            && let Some(status) = self.write_status(binding, state).await
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
