//! What following a binding keeps: the shared loader, the version in
//! service with its controller, and the last attempt refused.

use std::sync::Arc;

use kube::Client;
use tokio::sync::watch;

use crate::binding::bound::BoundPlugin;
use crate::binding::controller::{Controller, NotStarted, StartController};
use crate::binding::in_service::InService;
use crate::binding::status::BindingState;
use crate::crd::{ReconcilerPluginSpec, ReconcilerPluginStatus};
use crate::events::EventRecorder;
use crate::metrics::Metrics;
use crate::runtime::{PluginDigest, Runtime};

/// What following a binding needs, shared by the tasks of every binding.
pub(in crate::binding) struct Loader {
    /// The API client.
    pub(in crate::binding) client: Client,
    /// Loads components.
    pub(in crate::binding) runtime: Arc<Runtime>,
    /// Counts swaps, refusals and loads.
    pub(in crate::binding) metrics: Arc<Metrics>,
    /// Records events on bindings.
    pub(in crate::binding) events: EventRecorder,
    /// Runs a binding's controller.
    pub(in crate::binding) start: StartController,
    /// Where the version in service of each binding is published by name.
    pub(in crate::binding) in_service: InService,
    /// Whether this replica leads: only then do controllers run and are
    /// statuses and events written.
    pub(in crate::binding) leading: watch::Receiver<bool>,
}

/// What a load was attempted from: the binding's spec and the component's
/// digest (`None` when the component could not be read).
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Attempt {
    pub(super) spec: ReconcilerPluginSpec,
    pub(super) digest: Option<PluginDigest>,
}

/// A version in service, and its controller while this replica leads.
pub(super) struct Serving {
    pub(super) binding: BoundPlugin,
    pub(super) attempt: Attempt,
    pub(super) controller: Option<Controller>,
    /// While leading: the controller could not start, and is started again.
    pub(super) not_started: Option<NotStarted>,
}

impl Serving {
    /// Whether `next` can be swapped into the running controller: it must
    /// reconcile (an admission-only version stops the controller), and
    /// watch the same children with the same concurrency.
    pub(super) fn can_swap_in(&self, next: &BoundPlugin) -> bool {
        self.controller.as_ref().is_some_and(Controller::is_running)
            && !next.plugin.description().is_admission_only()
            && self.binding.grants.child_kinds == next.grants.child_kinds
            && self.binding.concurrency == next.concurrency
    }

    /// What the binding's status says of this version, once its controller
    /// (if it has one) said whether it started.
    pub(super) fn state(&self) -> Option<BindingState<'_>> {
        if self
            .controller
            .as_ref()
            .is_some_and(Controller::is_starting)
        {
            return None;
        }
        Some(match &self.not_started {
            Some(not_started) => BindingState::NotStarted {
                serving: &self.binding,
                error: &not_started.error,
            },
            None => BindingState::Serving(&self.binding),
        })
    }

    /// Stops the controller, if any, and waits for its reconciles in flight.
    pub(super) async fn stop(self) {
        if let Some(controller) = self.controller {
            controller.stop().await;
        }
    }
}

/// One binding under supervision.
pub(in crate::binding) struct Followed {
    pub(super) name: String,
    pub(super) loader: Arc<Loader>,
    pub(super) serving: Option<Serving>,
    /// The last attempt refused: not tried again until the spec or the
    /// component changes.
    pub(super) refused: Option<Attempt>,
    /// The status last written (or found on the binding).
    pub(super) status: ReconcilerPluginStatus,
}
