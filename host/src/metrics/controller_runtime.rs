//! The series a Go operator built on controller-runtime exports, under the
//! same names, labels and histogram buckets, so that dashboards and alerts
//! written for those operators (the kubebuilder Grafana plugin, the
//! controller-runtime mixins) work on this one unchanged.
//!
//! Names come from controller-runtime's `pkg/internal/controller/metrics`
//! and `pkg/metrics/{workqueue,leaderelection}.go`. A binding is one
//! controller: its name is the `controller` label, and the `name` (and
//! `controller`) label of the workqueue series. These series are
//! registered without the project's prefix; the plugin-specific ones keep
//! it.

use std::time::{Duration, Instant};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

use super::buckets::{
    HistogramFamily, controller_runtime_reconcile_histogram, workqueue_histogram,
};
use super::labels::{ControllerLabels, LeaseLabels, QueueLabels, ReconcileResult, ResultLabels};

/// The controller-runtime and client-go families.
#[derive(Debug)]
pub(super) struct ControllerRuntimeMetrics {
    reconcile_total: Family<ResultLabels, Counter>,
    reconcile_errors: Family<ControllerLabels, Counter>,
    terminal_reconcile_errors: Family<ControllerLabels, Counter>,
    reconcile_panics: Family<ControllerLabels, Counter>,
    reconcile_time: HistogramFamily<ControllerLabels>,
    max_concurrent_reconciles: Family<ControllerLabels, Gauge>,
    active_workers: Family<ControllerLabels, Gauge>,
    queue_depth: Family<QueueLabels, Gauge>,
    queue_adds: Family<QueueLabels, Counter>,
    queue_duration: HistogramFamily<QueueLabels>,
    work_duration: HistogramFamily<QueueLabels>,
    queue_retries: Family<QueueLabels, Counter>,
    leader: Family<LeaseLabels, Gauge>,
}

impl ControllerRuntimeMetrics {
    /// Registers every family, with controller-runtime's help texts, in
    /// `registry` (which must have no prefix).
    pub(super) fn register(registry: &mut Registry) -> Self {
        let metrics = Self {
            reconcile_total: Family::default(),
            reconcile_errors: Family::default(),
            terminal_reconcile_errors: Family::default(),
            reconcile_panics: Family::default(),
            reconcile_time: Family::new_with_constructor(controller_runtime_reconcile_histogram),
            max_concurrent_reconciles: Family::default(),
            active_workers: Family::default(),
            queue_depth: Family::default(),
            queue_adds: Family::default(),
            queue_duration: Family::new_with_constructor(workqueue_histogram),
            work_duration: Family::new_with_constructor(workqueue_histogram),
            queue_retries: Family::default(),
            leader: Family::default(),
        };
        // Counters get their `_total` suffix from the encoder.
        registry.register(
            "controller_runtime_reconcile",
            "Total number of reconciliations per controller",
            metrics.reconcile_total.clone(),
        );
        registry.register(
            "controller_runtime_reconcile_errors",
            "Total number of reconciliation errors per controller",
            metrics.reconcile_errors.clone(),
        );
        registry.register(
            "controller_runtime_terminal_reconcile_errors",
            "Total number of terminal reconciliation errors per controller (the plugin said retrying cannot help)",
            metrics.terminal_reconcile_errors.clone(),
        );
        registry.register(
            "controller_runtime_reconcile_panics",
            "Total number of reconciliation panics per controller (plugin panics, traps and stack overflows)",
            metrics.reconcile_panics.clone(),
        );
        registry.register_with_unit(
            "controller_runtime_reconcile_time",
            "Length of time per reconciliation per controller",
            Unit::Seconds,
            metrics.reconcile_time.clone(),
        );
        registry.register(
            "controller_runtime_max_concurrent_reconciles",
            "Maximum number of concurrent reconciles per controller (0: unbounded)",
            metrics.max_concurrent_reconciles.clone(),
        );
        registry.register(
            "controller_runtime_active_workers",
            "Number of currently used workers per controller",
            metrics.active_workers.clone(),
        );
        registry.register(
            "workqueue_depth",
            "Current depth of workqueue",
            metrics.queue_depth.clone(),
        );
        registry.register(
            "workqueue_adds",
            "Total number of adds handled by workqueue",
            metrics.queue_adds.clone(),
        );
        registry.register_with_unit(
            "workqueue_queue_duration",
            "How long in seconds an item stays in workqueue before being requested",
            Unit::Seconds,
            metrics.queue_duration.clone(),
        );
        registry.register_with_unit(
            "workqueue_work_duration",
            "How long in seconds processing an item from workqueue takes",
            Unit::Seconds,
            metrics.work_duration.clone(),
        );
        registry.register(
            "workqueue_retries",
            "Total number of retries handled by workqueue",
            metrics.queue_retries.clone(),
        );
        registry.register(
            "leader_election_master_status",
            "Gauge of if the reporting system is master of the relevant lease, 0 indicates backup, 1 indicates master. 'name' is the string used to identify the lease. Please make sure to group by name.",
            metrics.leader.clone(),
        );
        metrics
    }

    /// Counts and times a finished reconcile of `controller`.
    pub(super) fn reconciled(&self, controller: &str, result: ReconcileResult, took: Duration) {
        let labels = controller_labels(controller);
        self.reconcile_total
            .get_or_create(&ResultLabels {
                controller: controller.to_owned(),
                result: result.as_str(),
            })
            .inc();
        if result == ReconcileResult::Error {
            self.reconcile_errors.get_or_create(&labels).inc();
        }
        self.reconcile_time
            .get_or_create(&labels)
            .observe(took.as_secs_f64());
    }

    pub(super) fn terminal_error(&self, controller: &str) {
        self.terminal_reconcile_errors
            .get_or_create(&controller_labels(controller))
            .inc();
    }

    pub(super) fn panicked(&self, controller: &str) {
        self.reconcile_panics
            .get_or_create(&controller_labels(controller))
            .inc();
    }

    pub(super) fn set_max_concurrent(&self, controller: &str, max: u16) {
        self.max_concurrent_reconciles
            .get_or_create(&controller_labels(controller))
            .set(i64::from(max));
    }

    pub(super) fn start_worker(&self, controller: &str) -> ActiveWorker {
        let workers = self
            .active_workers
            .get_or_create_owned(&controller_labels(controller));
        workers.inc();
        ActiveWorker {
            workers,
            work_duration: self
                .work_duration
                .get_or_create_owned(&queue_labels(controller)),
            started: Instant::now(),
        }
    }

    pub(super) fn work_queue(&self, name: &str) -> WorkQueueSeries {
        let labels = queue_labels(name);
        WorkQueueSeries {
            depth: self.queue_depth.get_or_create_owned(&labels),
            adds: self.queue_adds.get_or_create_owned(&labels),
            queue_duration: self.queue_duration.get_or_create_owned(&labels),
            retries: self.queue_retries.get_or_create_owned(&labels),
        }
    }

    pub(super) fn set_leader(&self, lease: &str, leading: bool) {
        self.leader
            .get_or_create(&LeaseLabels {
                name: lease.to_owned(),
            })
            .set(i64::from(leading));
    }
}

fn controller_labels(controller: &str) -> ControllerLabels {
    ControllerLabels {
        controller: controller.to_owned(),
    }
}

fn queue_labels(name: &str) -> QueueLabels {
    QueueLabels {
        name: name.to_owned(),
        controller: name.to_owned(),
    }
}

/// One reconcile being worked on: counted in
/// `controller_runtime_active_workers` while it lives, and timed into
/// `workqueue_work_duration_seconds` when dropped, however it ends (also
/// when a shutdown cuts it).
#[derive(Debug)]
#[must_use = "the worker counts as active until dropped"]
pub struct ActiveWorker {
    workers: Gauge,
    work_duration: Histogram,
    started: Instant,
}

impl Drop for ActiveWorker {
    fn drop(&mut self) {
        self.workers.dec();
        self.work_duration
            .observe(self.started.elapsed().as_secs_f64());
    }
}

/// The workqueue series of one controller, shared with the series in the
/// registry (clones count into the same series).
#[derive(Debug, Clone)]
pub struct WorkQueueSeries {
    depth: Gauge,
    adds: Counter,
    queue_duration: Histogram,
    retries: Counter,
}

impl WorkQueueSeries {
    /// An object entered the queue (it was not waiting already).
    pub fn added(&self) {
        self.adds.inc();
    }

    /// How many objects wait now.
    pub fn set_depth(&self, depth: usize) {
        self.depth.set(i64::try_from(depth).unwrap_or(i64::MAX));
    }

    /// An object left the queue for its reconcile after waiting `waited`.
    pub fn taken(&self, waited: Duration) {
        self.queue_duration.observe(waited.as_secs_f64());
    }

    /// A failed object was put back with the backoff.
    pub fn retried(&self) {
        self.retries.inc();
    }
}
