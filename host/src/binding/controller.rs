//! A binding's controller as its follower sees it: a task of its own that
//! reports once whether it could start (its kinds served, its target
//! listable). One that could not is started again with a growing back-off
//! until it can, so that a binding created before its CRD starts serving
//! by itself once the CRD is applied.

use std::fmt::Display;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;

use super::bound::BoundPlugin;
use super::live::LiveBinding;
use super::live::{self, BindingPublisher};
use super::signal::{Shutdown, shutdown_signal};

/// Runs the controller of a binding until the signal fires. It says
/// through the [`StartReport`] whether it could start (and ends when it
/// could not), so that the binding reports it and starts it again.
pub type StartController =
    Arc<dyn Fn(LiveBinding, Shutdown, StartReport) -> BoxFuture<'static, ()> + Send + Sync>;

/// The first retry of a controller that could not start comes this soon.
const FIRST_RETRY: Duration = Duration::from_secs(1);

/// Retries of a controller that could not start come at least this often.
const MAX_RETRY: Duration = Duration::from_secs(60);

/// Why a binding's controller could not start. It is started again with a
/// back-off: fixing the cause is enough, the binding need not change.
#[derive(Debug, thiserror::Error)]
pub enum ControllerStartError {
    /// The API server does not serve a kind the plugin reconciles, writes
    /// or reads.
    #[error(
        "the API server does not serve {kind} ({source}): apply its CustomResourceDefinition; the controller starts by itself once the kind is served"
    )]
    KindNotServed {
        /// `apiVersion/kind`.
        kind: String,
        /// What discovery said.
        #[source]
        source: kube::Error,
    },
    /// The operator may not list or discover a kind it needs.
    #[error(
        "the operator may not list {kind} ({source}): grant its ServiceAccount get, list and watch on that kind; the controller starts by itself once it may"
    )]
    Forbidden {
        /// `apiVersion/kind`.
        kind: String,
        /// The API server's refusal.
        #[source]
        source: kube::Error,
    },
    /// Discovering or listing a kind failed otherwise.
    #[error(
        "discovering {kind} failed ({source}); check that the API server is reachable: the controller is started again"
    )]
    Discovery {
        /// `apiVersion/kind`.
        kind: String,
        /// The client's error.
        #[source]
        source: kube::Error,
    },
    /// The controller's task ended before it said whether it started.
    #[error("the controller ended before it started (see the operator's log); it is started again")]
    Ended,
}

impl ControllerStartError {
    /// Classifies `source`, an error discovering or listing `kind`.
    pub fn new(kind: impl Display, source: kube::Error) -> Self {
        let kind = kind.to_string();
        match &source {
            kube::Error::Discovery(_) => Self::KindNotServed { kind, source },
            kube::Error::Api(status) if status.code == 404 => Self::KindNotServed { kind, source },
            kube::Error::Api(status) if status.code == 401 || status.code == 403 => {
                Self::Forbidden { kind, source }
            }
            _ => Self::Discovery { kind, source },
        }
    }

    /// A bounded reason, for metrics and logs.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::KindNotServed { .. } => "KindNotServed",
            Self::Forbidden { .. } => "Forbidden",
            Self::Discovery { .. } => "DiscoveryFailed",
            Self::Ended => "Ended",
        }
    }

    /// The kind that could not be used (`apiVersion/kind`), empty when the
    /// controller ended before saying.
    pub fn kind(&self) -> &str {
        match self {
            Self::KindNotServed { kind, .. }
            | Self::Forbidden { kind, .. }
            | Self::Discovery { kind, .. } => kind,
            Self::Ended => "",
        }
    }
}

/// How a controller tells its binding's follower whether it started: once,
/// before it reconciles anything. Dropping it unsent reads as
/// [`ControllerStartError::Ended`].
#[derive(Debug)]
pub struct StartReport(oneshot::Sender<Result<(), ControllerStartError>>);

impl StartReport {
    /// The controller's watches are set up: it reconciles from now on.
    pub fn started(self) {
        let _ = self.0.send(Ok(()));
    }

    /// The controller cannot start, for `error`; it ends.
    pub fn failed(self, error: ControllerStartError) {
        let _ = self.0.send(Err(error));
    }
}

/// A running controller and how to reach it.
pub(super) struct Controller {
    pub(super) publisher: BindingPublisher,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
    /// Its start report, until it came.
    report: Option<oneshot::Receiver<Result<(), ControllerStartError>>>,
}

impl Controller {
    /// Starts the controller of `binding` (the `ReconcilerPlugin` `name`)
    /// with `start`. `changed_at` is when the change that made it start
    /// was seen, when it replaces another controller.
    pub(super) fn spawn(
        start: &StartController,
        name: &str,
        binding: &BoundPlugin,
        changed_at: Option<Instant>,
    ) -> Self {
        let (publisher, live) = live::channel(name, binding.clone(), changed_at);
        let (stop, stop_rx) = watch::channel(false);
        let (report, report_rx) = oneshot::channel();
        let task = tokio::spawn(start(live, shutdown_signal(stop_rx), StartReport(report)));
        Self {
            publisher,
            stop,
            task,
            report: Some(report_rx),
        }
    }

    /// Whether its task still runs.
    pub(super) fn is_running(&self) -> bool {
        !self.task.is_finished()
    }

    /// Whether it has not said yet whether it started.
    pub(super) fn is_starting(&self) -> bool {
        self.report.is_some()
    }

    /// Waits for its start report; never resolves once it came.
    pub(super) async fn started(&mut self) -> Result<(), ControllerStartError> {
        let Some(report) = &mut self.report else {
            return std::future::pending().await;
        };
        let outcome = report.await.unwrap_or(Err(ControllerStartError::Ended));
        self.report = None;
        outcome
    }

    /// Stops the controller and waits for its reconciles in flight.
    pub(super) async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

/// A controller that could not start, and when it is started again.
#[derive(Debug)]
pub(super) struct NotStarted {
    /// Why it could not start the last time.
    pub(super) error: ControllerStartError,
    /// Starts that failed in a row.
    pub(super) failures: u32,
    /// When it is started again.
    pub(super) retry_at: tokio::time::Instant,
}

impl NotStarted {
    /// After failure number `failures` in a row, for `error`.
    pub(super) fn after(failures: u32, error: ControllerStartError) -> Self {
        Self {
            error,
            failures,
            retry_at: tokio::time::Instant::now() + retry_delay(failures),
        }
    }
}

/// How long to wait before starting a controller again after `failures`
/// failed starts in a row: 1 s, doubling, at most 60 s.
fn retry_delay(failures: u32) -> Duration {
    FIRST_RETRY
        .saturating_mul(1 << failures.clamp(1, 7).saturating_sub(1))
        .min(MAX_RETRY)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_start_after_a_second_and_double_up_to_a_minute() {
        let delays: Vec<u64> = (1..=9).map(|n| retry_delay(n).as_secs()).collect();
        assert_eq!(delays, [1, 2, 4, 8, 16, 32, 60, 60, 60]);
    }

    #[test]
    fn a_missing_kind_says_to_apply_its_crd_and_a_refusal_to_grant_rbac() {
        let missing = ControllerStartError::new(
            "examples.systems.mikemiller.tech/v1alpha1/Greeting",
            kube::Error::Discovery(kube::error::DiscoveryError::MissingKind("Greeting".into())),
        );
        assert_eq!(missing.reason(), "KindNotServed");
        let message = missing.to_string();
        assert!(message.contains("v1alpha1/Greeting"), "{message}");
        assert!(message.contains("CustomResourceDefinition"), "{message}");
        let forbidden = ControllerStartError::new(
            "v1/ConfigMap",
            kube::Error::Api(
                kube::core::Status::failure("forbidden", "Forbidden")
                    .with_code(403)
                    .boxed(),
            ),
        );
        assert_eq!(forbidden.reason(), "Forbidden");
        assert!(forbidden.to_string().contains("grant"), "{forbidden}");
    }
}
