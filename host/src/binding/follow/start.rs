//! What the follower does with its controller's start report: a
//! controller that could not start makes the binding not ready (with a
//! Warning event and a count), and is started again with a back-off until
//! it can; then the binding serves again, without any change to it.

use std::time::Instant;

use kube::runtime::events::EventType;

use super::state::{Followed, Serving};
use crate::binding::bound::BoundPlugin;
use crate::binding::controller::{Controller, ControllerStartError, NotStarted};
use crate::binding::status::CONTROLLER_NOT_STARTED;
use crate::crd::ReconcilerPlugin;

/// What happened to the controller of the version in service.
pub(super) enum Step {
    /// It said whether it started.
    Reported(Result<(), ControllerStartError>),
    /// It could not start, and it is time to start it again.
    Retry,
}

/// The next [`Step`] of the controller of `serving`; never resolves while
/// there is none to wait for.
pub(super) async fn next_step(serving: &mut Option<Serving>) -> Step {
    let Some(serving) = serving else {
        return std::future::pending().await;
    };
    match (&mut serving.controller, &serving.not_started) {
        (Some(controller), _) if controller.is_starting() => {
            Step::Reported(controller.started().await)
        }
        (None, Some(not_started)) => {
            tokio::time::sleep_until(not_started.retry_at).await;
            Step::Retry
        }
        _ => std::future::pending().await,
    }
}

impl Followed {
    /// Follows `step` of the controller of the version in service of
    /// `binding`.
    pub(super) async fn on_step(&mut self, binding: &ReconcilerPlugin, step: Step) {
        let Some(mut serving) = self.serving.take() else {
            return;
        };
        match step {
            Step::Retry => {
                tracing::info!(binding = %self.name, "starting the controller again");
                serving.controller = self.start_controller(&serving.binding, None);
            }
            Step::Reported(Ok(())) => {
                if let Some(not_started) = serving.not_started.take() {
                    let note = format!(
                        "the controller started after {} failed start(s): {} is served now",
                        not_started.failures,
                        serving.binding.plugin.description().target
                    );
                    tracing::info!(binding = %self.name, %note);
                    self.event(binding, EventType::Normal, "ControllerStarted", note)
                        .await;
                }
            }
            Step::Reported(Err(error)) => {
                if let Some(controller) = serving.controller.take() {
                    controller.stop().await;
                }
                let previous = serving.not_started.take();
                let failures = previous.as_ref().map_or(0, |p| p.failures) + 1;
                let labels = self.labels(Some(&serving.binding));
                self.loader.metrics.record_controller_start_failure(
                    &labels,
                    error.kind(),
                    error.reason(),
                );
                let not_started = NotStarted::after(failures, error);
                let retry_in = not_started
                    .retry_at
                    .saturating_duration_since(tokio::time::Instant::now());
                tracing::warn!(binding = %self.name, error = %not_started.error, failures, retry_in_ms = retry_in.as_millis() as u64, "the controller could not start; it is started again");
                // One event per cause, not one per retry.
                let message = not_started.error.to_string();
                if previous.is_none_or(|p| p.error.to_string() != message) {
                    self.event(binding, EventType::Warning, CONTROLLER_NOT_STARTED, message)
                        .await;
                }
                serving.not_started = Some(not_started);
            }
        }
        self.serving = Some(serving);
        if let Some(serving) = &self.serving
            && let Some(state) = serving.state()
            && let Some(status) = self.write_status(binding, state).await
        {
            self.status = status;
        }
    }

    /// Follows a change of leadership: starts the controller of the version
    /// in service on becoming leader, stops it on losing leadership (the
    /// version keeps serving admission). Returns whether this replica now
    /// leads and should report the binding's state again.
    pub(super) async fn lead(&mut self, leading: bool) -> bool {
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
                serving.not_started = None;
            }
            (false, None) => serving.not_started = None,
            (_, kept) => serving.controller = kept,
        }
        self.serving = Some(serving);
        leading
    }
    /// Starts the controller of `binding`; none for a plugin that only
    /// admits (no controller, no watch of its kind).
    pub(super) fn start_controller(
        &self,
        binding: &BoundPlugin,
        changed_at: Option<Instant>,
    ) -> Option<Controller> {
        if binding.plugin.description().is_admission_only() {
            return None;
        }
        Some(Controller::spawn(
            &self.loader.start,
            &self.name,
            binding,
            changed_at,
        ))
    }
}
