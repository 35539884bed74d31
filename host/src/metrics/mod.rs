//! Prometheus metrics of the operator, served as OpenMetrics text on `/metrics`
//! (and as the Prometheus text format by [`prometheus_text`]).
//!
//! Two sets of series. The plugin-specific ones carry the `wasm_operator_`
//! prefix and are labelled with their `binding` (the `ReconcilerPlugin`)
//! and its `plugin` (the name the component gives itself). The ones a
//! controller-runtime operator exports ([`controller_runtime`]) keep
//! controller-runtime's names and labels, with the binding's name as the
//! controller's, so dashboards and alerts made for Go operators apply.
//! Every other label comes from a bounded set: kinds (one per binding),
//! the enums in [`labels`], and `&'static str` reasons. Error messages
//! never become labels, so the number of series stays bounded however a
//! plugin misbehaves.

mod admission;
mod buckets;
mod controller_runtime;
mod labels;
mod text;

use std::time::{Duration, Instant};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

pub use controller_runtime::{ActiveWorker, WorkQueueSeries};
pub use labels::{BindingLabels, Export, Outcome, ReconcileResult, WriteVerb};
use labels::{
    ErrorLabels, ExportLabels, LoadLabels, OutcomeLabels, PluginKindLabels, ReasonLabels,
    TrapLabels, VerbLabels,
};
pub use text::{PROMETHEUS_TEXT_CONTENT_TYPE, prometheus_text};

use admission::AdmissionMetrics;
use buckets::{HistogramFamily, lifecycle_histogram, plugin_call_histogram, reconcile_histogram};
use controller_runtime::ControllerRuntimeMetrics;

use crate::runtime::{CallError, LoadSource};

/// The prefix of the plugin-specific series' names.
const PREFIX: &str = "wasm_operator";

/// The operator's metrics; share it in an `Arc`.
///
/// Every method takes `&self`: the series are atomics behind the registry.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    reconciles: Family<OutcomeLabels, Counter>,
    reconcile_errors: Family<ErrorLabels, Counter>,
    reconcile_duration: HistogramFamily<PluginKindLabels>,
    plugin_call_duration: HistogramFamily<ExportLabels>,
    plugin_traps: Family<TrapLabels, Counter>,
    refused_outputs: Family<BindingLabels, Counter>,
    queue_depth: Family<BindingLabels, Gauge>,
    plugin_swaps: Family<BindingLabels, Counter>,
    plugin_rejections: Family<ReasonLabels, Counter>,
    controller_start_failures: Family<ErrorLabels, Counter>,
    plugin_swap_latency: HistogramFamily<BindingLabels>,
    plugin_load_duration: HistogramFamily<LoadLabels>,
    writes: Family<VerbLabels, Counter>,
    events_dropped: Family<ReasonLabels, Counter>,
    plugin_queries: Family<ReasonLabels, Counter>,
    admission: AdmissionMetrics,
    controller_runtime: ControllerRuntimeMetrics,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Creates every series family, empty, in a registry of its own.
    pub fn new() -> Self {
        let mut root = Registry::default();
        let controller_runtime = ControllerRuntimeMetrics::register(&mut root);
        let registry = root.sub_registry_with_prefix(PREFIX);
        let reconciles = Family::default();
        registry.register(
            "reconciles",
            "Reconciles by binding, kind and outcome (success, error, refused)",
            reconciles.clone(),
        );
        let reconcile_errors = Family::default();
        registry.register(
            "reconcile_errors",
            "Failed reconciles by binding, kind and reason",
            reconcile_errors.clone(),
        );
        let reconcile_duration: HistogramFamily<_> =
            Family::new_with_constructor(reconcile_histogram);
        registry.register_with_unit(
            "reconcile_duration",
            "Duration of whole reconciles: gathering inputs, the plugin call and the writes",
            Unit::Seconds,
            reconcile_duration.clone(),
        );
        let plugin_call_duration: HistogramFamily<_> =
            Family::new_with_constructor(plugin_call_histogram);
        registry.register_with_unit(
            "plugin_call_duration",
            "Duration of calls into plugins by export",
            Unit::Seconds,
            plugin_call_duration.clone(),
        );
        let plugin_traps = Family::default();
        registry.register(
            "plugin_traps",
            "Plugin calls stopped by the sandbox, by kind (DeadlineExceeded, MemoryLimit, StackOverflow, Panic, Trap)",
            plugin_traps.clone(),
        );
        let refused_outputs = Family::default();
        registry.register(
            "refused_outputs",
            "Plugin responses refused because they went beyond the plugin's grants",
            refused_outputs.clone(),
        );
        let queue_depth = Family::default();
        registry.register(
            "queue_depth",
            "Objects waiting in a binding's work queue",
            queue_depth.clone(),
        );
        let plugin_swaps = Family::default();
        registry.register(
            "plugin_swaps",
            "New plugin versions swapped in, by binding",
            plugin_swaps.clone(),
        );
        let plugin_rejections = Family::default();
        registry.register(
            "plugin_rejections",
            "Plugin versions refused at load, by binding and reason; the previous version stays",
            plugin_rejections.clone(),
        );
        let controller_start_failures = Family::default();
        registry.register(
            "controller_start_failures",
            "Binding controllers that could not start, by binding, kind and reason (KindNotServed, Forbidden, DiscoveryFailed, Ended); each is started again",
            controller_start_failures.clone(),
        );
        let plugin_swap_latency: HistogramFamily<_> =
            Family::new_with_constructor(lifecycle_histogram);
        registry.register_with_unit(
            "plugin_swap_latency",
            "From a binding's change (its ConfigMap or its spec) being seen to the first reconcile finished by the version swapped in",
            Unit::Seconds,
            plugin_swap_latency.clone(),
        );
        let plugin_load_duration: HistogramFamily<_> =
            Family::new_with_constructor(lifecycle_histogram);
        registry.register_with_unit(
            "plugin_load_duration",
            "Loading a plugin version, by binding and by where its compiled code came from (compiled, cached)",
            Unit::Seconds,
            plugin_load_duration.clone(),
        );
        let writes = Family::default();
        registry.register(
            "writes",
            "Writes to the Kubernetes API made for a plugin, by verb (apply, delete, status, event)",
            writes.clone(),
        );
        let events_dropped = Family::default();
        registry.register(
            "events_dropped",
            "Plugin events not recorded, by reason (cap: over the events of one decision; rate: over the events per object per minute)",
            events_dropped.clone(),
        );
        let plugin_queries = Family::default();
        registry.register(
            "plugin_queries",
            "Read-only queries plugins ran through the sql import, by outcome (reason: ok, error)",
            plugin_queries.clone(),
        );
        let admission = AdmissionMetrics::register(registry);
        Self {
            registry: root,
            reconciles,
            reconcile_errors,
            reconcile_duration,
            plugin_call_duration,
            plugin_traps,
            refused_outputs,
            queue_depth,
            plugin_swaps,
            plugin_rejections,
            controller_start_failures,
            plugin_swap_latency,
            plugin_load_duration,
            writes,
            events_dropped,
            plugin_queries,
            admission,
            controller_runtime,
        }
    }

    /// Counts and times an answered admission review of `operation`
    /// (`CREATE`, `UPDATE`, `DELETE`, `CONNECT` or `other`).
    pub fn record_admission(
        &self,
        who: &BindingLabels,
        operation: &'static str,
        allowed: bool,
        duration: Duration,
    ) {
        self.admission.record(who, operation, allowed, duration);
    }

    /// Counts an admission review denied because no decision could be
    /// made, by a bounded `reason`.
    pub fn record_admission_failure(&self, who: &BindingLabels, reason: &'static str) {
        self.admission.record_failure(who, reason);
    }

    /// Counts a read-only query a plugin ran, by `outcome` (`ok`, `error`).
    pub fn record_plugin_query(&self, who: &BindingLabels, outcome: &'static str) {
        self.plugin_queries
            .get_or_create(&ReasonLabels {
                binding: who.clone(),
                reason: outcome,
            })
            .inc();
    }

    /// Counts `count` plugin events not recorded, for a bounded `reason`
    /// (`cap` or `rate`).
    pub fn record_events_dropped(&self, who: &BindingLabels, reason: &'static str, count: u64) {
        self.events_dropped
            .get_or_create(&ReasonLabels {
                binding: who.clone(),
                reason,
            })
            .inc_by(count);
    }

    /// Records a finished reconcile: its outcome and how long it took.
    pub fn record_reconcile(
        &self,
        who: &BindingLabels,
        kind: &str,
        outcome: Outcome,
        duration: Duration,
    ) {
        self.reconciles
            .get_or_create(&OutcomeLabels {
                binding: who.clone(),
                kind: kind.to_owned(),
                outcome: outcome.as_str(),
            })
            .inc();
        self.reconcile_duration
            .get_or_create(&PluginKindLabels {
                binding: who.clone(),
                kind: kind.to_owned(),
            })
            .observe(duration.as_secs_f64());
    }

    /// Counts a failed reconcile under a bounded reason, such as
    /// [`CallError::reason`] or a name of the host step that failed.
    pub fn record_reconcile_error(&self, who: &BindingLabels, kind: &str, reason: &'static str) {
        self.reconcile_errors
            .get_or_create(&ErrorLabels {
                binding: who.clone(),
                kind: kind.to_owned(),
                reason,
            })
            .inc();
    }

    /// Records how long one call into a plugin took.
    pub fn record_plugin_call(&self, who: &BindingLabels, export: Export, duration: Duration) {
        self.plugin_call_histogram(who, export)
            .observe(duration.as_secs_f64());
    }

    /// Starts timing a call into a plugin; the duration is recorded when the
    /// returned timer is dropped, however the call ends.
    #[must_use = "the call is timed until the timer is dropped"]
    pub fn time_plugin_call(&self, who: &BindingLabels, export: Export) -> CallTimer {
        CallTimer {
            histogram: self.plugin_call_histogram(who, export),
            started: Instant::now(),
        }
    }

    fn plugin_call_histogram(&self, who: &BindingLabels, export: Export) -> Histogram {
        self.plugin_call_duration
            .get_or_create_owned(&ExportLabels {
                binding: who.clone(),
                export: export.as_str(),
            })
    }

    /// Counts a failed plugin call in `plugin_traps_total` when the sandbox
    /// stopped it (deadline, memory limit, panic or trap). Other failures
    /// (the plugin's own errors, bad output) are not traps and are not counted
    /// here. Returns whether it was a trap.
    pub fn record_call_failure(&self, who: &BindingLabels, error: &CallError) -> bool {
        let is_trap = matches!(
            error,
            CallError::DeadlineExceeded { .. }
                | CallError::MemoryLimit { .. }
                | CallError::StackOverflow
                | CallError::Panic { .. }
                | CallError::Trap { .. }
        );
        if is_trap {
            self.plugin_traps
                .get_or_create(&TrapLabels {
                    binding: who.clone(),
                    kind: error.reason(),
                })
                .inc();
        }
        is_trap
    }

    /// Counts a plugin response refused for going beyond the plugin's grants.
    pub fn record_refused_output(&self, who: &BindingLabels) {
        self.refused_outputs.get_or_create(who).inc();
    }

    /// Sets how many objects wait in a plugin's work queue.
    pub fn set_queue_depth(&self, who: &BindingLabels, depth: usize) {
        self.queue_depth
            .get_or_create(who)
            .set(i64::try_from(depth).unwrap_or(i64::MAX));
    }

    /// Counts a new plugin version swapped in.
    pub fn record_plugin_swap(&self, who: &BindingLabels) {
        self.plugin_swaps.get_or_create(who).inc();
    }

    /// Counts a plugin version refused, under a bounded reason such as
    /// [`BindingError::reason`](crate::binding::BindingError::reason). The
    /// `plugin` label is the version in service (empty when none serves):
    /// a refused component's own name is not to be trusted (nor bounded).
    pub fn record_plugin_rejection(&self, who: &BindingLabels, reason: &'static str) {
        self.plugin_rejections
            .get_or_create(&ReasonLabels {
                binding: who.clone(),
                reason,
            })
            .inc();
    }

    /// Counts a binding's controller that could not start because of
    /// `kind` (`apiVersion/kind`, one the plugin declares), for a bounded
    /// `reason` such as
    /// [`ControllerStartError::reason`](crate::binding::ControllerStartError::reason).
    pub fn record_controller_start_failure(
        &self,
        who: &BindingLabels,
        kind: &str,
        reason: &'static str,
    ) {
        self.controller_start_failures
            .get_or_create(&ErrorLabels {
                binding: who.clone(),
                kind: kind.to_owned(),
                reason,
            })
            .inc();
    }

    /// Records how long the version swapped in took to take effect: from the change being seen to its first
    /// reconcile.
    pub fn record_swap_latency(&self, who: &BindingLabels, latency: Duration) {
        self.plugin_swap_latency
            .get_or_create(who)
            .observe(latency.as_secs_f64());
    }

    /// Records the load of a plugin version: how long it took and whether it was compiled or read from the cache.
    pub fn record_plugin_load(&self, who: &BindingLabels, source: LoadSource, duration: Duration) {
        self.plugin_load_duration
            .get_or_create(&LoadLabels {
                binding: who.clone(),
                source: match source {
                    LoadSource::Compiled => "compiled",
                    LoadSource::Cached => "cached",
                },
            })
            .observe(duration.as_secs_f64());
    }

    /// Counts a write to the Kubernetes API made for a plugin.
    pub fn record_write(&self, who: &BindingLabels, verb: WriteVerb) {
        self.writes
            .get_or_create(&VerbLabels {
                binding: who.clone(),
                verb: verb.as_str(),
            })
            .inc();
    }

    /// How many writes of `verb` were made for `who` so far: lets tests
    /// check that a reconcile with nothing to change wrote nothing.
    pub fn write_count(&self, who: &BindingLabels, verb: WriteVerb) -> u64 {
        self.writes
            .get(&VerbLabels {
                binding: who.clone(),
                verb: verb.as_str(),
            })
            .map_or(0, |counter| counter.get())
    }

    /// Records a finished reconcile of the binding `controller` under
    /// controller-runtime's names: `controller_runtime_reconcile_total` by
    /// result, `controller_runtime_reconcile_errors_total` for an error,
    /// and `controller_runtime_reconcile_time_seconds`.
    pub fn record_controller_reconcile(
        &self,
        controller: &str,
        result: ReconcileResult,
        duration: Duration,
    ) {
        self.controller_runtime
            .reconciled(controller, result, duration);
    }

    /// Counts a reconcile error the plugin said retrying cannot fix
    /// (controller-runtime's terminal error): it waits for a change or the
    /// resync instead of the backoff.
    pub fn record_terminal_reconcile_error(&self, controller: &str) {
        self.controller_runtime.terminal_error(controller);
    }

    /// Counts a reconcile whose plugin panicked, trapped or overflowed its
    /// stack (controller-runtime's recovered panic).
    pub fn record_reconcile_panic(&self, controller: &str) {
        self.controller_runtime.panicked(controller);
    }

    /// Sets how many reconciles of `controller` may run at once (0: no bound).
    pub fn set_max_concurrent_reconciles(&self, controller: &str, max: u16) {
        self.controller_runtime.set_max_concurrent(controller, max);
    }

    /// Counts a reconcile of `controller` as active until the returned
    /// worker is dropped, and then times it as the work on its queue item.
    pub fn start_worker(&self, controller: &str) -> ActiveWorker {
        self.controller_runtime.start_worker(controller)
    }

    /// The workqueue series (`workqueue_*{name,controller}`) of the
    /// controller `name`.
    pub fn work_queue(&self, name: &str) -> WorkQueueSeries {
        self.controller_runtime.work_queue(name)
    }

    /// Sets `leader_election_master_status{name=lease}`: 1 while this
    /// replica holds the Lease, 0 while it stands by.
    pub fn set_leader(&self, lease: &str, leading: bool) {
        self.controller_runtime.set_leader(lease, leading);
    }

    /// Every series in the OpenMetrics text format, ending with `# EOF`.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        // Writing to a String cannot fail, and every label value above encodes
        // without error, so an error here would be a bug in the encoder.
        prometheus_client::encoding::text::encode(&mut text, &self.registry)
            .expect("encoding metrics into a String cannot fail");
        text
    }

    /// Every series in the Prometheus text format 0.0.4
    /// ([`PROMETHEUS_TEXT_CONTENT_TYPE`]).
    pub fn encode_prometheus_text(&self) -> String {
        prometheus_text(&self.encode())
    }
}

/// Times a plugin call; records the duration when dropped.
#[derive(Debug)]
pub struct CallTimer {
    histogram: Histogram,
    started: Instant,
}

impl Drop for CallTimer {
    fn drop(&mut self) {
        self.histogram.observe(self.started.elapsed().as_secs_f64());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pg() -> BindingLabels {
        BindingLabels::new("postgres", "pg")
    }

    /// The value of the sample line that starts with `series` (name and labels).
    fn sample(text: &str, series: &str) -> Option<f64> {
        text.lines()
            .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
            .map(|value| value.parse().expect("a sample value is a number"))
    }

    #[test]
    fn a_reconcile_is_counted_by_outcome_and_timed() {
        let metrics = Metrics::new();
        metrics.record_reconcile(
            &pg(),
            "Database",
            Outcome::Success,
            Duration::from_millis(30),
        );
        metrics.record_reconcile(
            &pg(),
            "Database",
            Outcome::Success,
            Duration::from_millis(40),
        );
        metrics.record_reconcile(
            &pg(),
            "Database",
            Outcome::Refused,
            Duration::from_millis(1),
        );
        let text = metrics.encode();
        assert_eq!(
            sample(
                &text,
                r#"wasm_operator_reconciles_total{binding="postgres",plugin="pg",kind="Database",outcome="success"}"#
            ),
            Some(2.0)
        );
        assert_eq!(
            sample(
                &text,
                r#"wasm_operator_reconciles_total{binding="postgres",plugin="pg",kind="Database",outcome="refused"}"#
            ),
            Some(1.0)
        );
        assert_eq!(
            sample(
                &text,
                r#"wasm_operator_reconcile_duration_seconds_count{binding="postgres",plugin="pg",kind="Database"}"#
            ),
            Some(3.0)
        );
        assert!(text.contains("# TYPE wasm_operator_reconcile_duration_seconds histogram"));
        assert!(text.ends_with("# EOF\n"));
    }

    #[test]
    fn admission_reviews_are_counted_by_operation_and_answer_and_failures_by_reason() {
        let metrics = Metrics::new();
        metrics.record_admission(&pg(), "CREATE", false, Duration::from_millis(2));
        metrics.record_admission(&pg(), "CREATE", true, Duration::from_millis(1));
        metrics.record_admission_failure(&pg(), "MemoryLimit");
        let text = metrics.encode();
        assert_eq!(
            sample(
                &text,
                r#"wasm_operator_admission_requests_total{binding="postgres",plugin="pg",operation="CREATE",allowed="false"}"#
            ),
            Some(1.0)
        );
        assert_eq!(
            sample(
                &text,
                r#"wasm_operator_admission_duration_seconds_count{binding="postgres",plugin="pg",operation="CREATE"}"#
            ),
            Some(2.0)
        );
        assert_eq!(
            sample(
                &text,
                r#"wasm_operator_admission_failures_total{binding="postgres",plugin="pg",reason="MemoryLimit"}"#
            ),
            Some(1.0)
        );
    }

    #[test]
    fn errors_are_labelled_with_their_bounded_reason() {
        let metrics = Metrics::new();
        let error = CallError::Guest {
            reason: "Whatever".into(),
            message: "a message that must never become a label".into(),
            retryable: true,
        };
        metrics.record_reconcile_error(&pg(), "Database", error.reason());
        let text = metrics.encode();
        assert_eq!(
            sample(
                &text,
                r#"wasm_operator_reconcile_errors_total{binding="postgres",plugin="pg",kind="Database",reason="PluginError"}"#
            ),
            Some(1.0)
        );
        assert!(!text.contains("never become a label"));
    }

    #[test]
    fn only_sandbox_stops_count_as_traps() {
        let metrics = Metrics::new();
        let deadline = CallError::DeadlineExceeded {
            deadline: Duration::from_secs(1),
        };
        let panic = CallError::Panic {
            message: "index out of bounds".into(),
        };
        let bad_output = CallError::InvalidOutput {
            field: "status".into(),
            reason: "not an object".into(),
        };
        assert!(metrics.record_call_failure(&pg(), &deadline));
        assert!(metrics.record_call_failure(&pg(), &panic));
        assert!(!metrics.record_call_failure(&pg(), &bad_output));
        let text = metrics.encode();
        assert_eq!(
            sample(
                &text,
                r#"wasm_operator_plugin_traps_total{binding="postgres",plugin="pg",kind="DeadlineExceeded"}"#
            ),
            Some(1.0)
        );
        assert_eq!(
            sample(
                &text,
                r#"wasm_operator_plugin_traps_total{binding="postgres",plugin="pg",kind="Panic"}"#
            ),
            Some(1.0)
        );
        assert!(!text.contains("InvalidOutput"));
        assert!(!text.contains("index out of bounds"));
    }

    #[test]
    fn a_call_timer_records_its_call_when_dropped() {
        let metrics = Metrics::new();
        {
            let _timer = metrics.time_plugin_call(&pg(), Export::Reconcile);
        }
        metrics.record_plugin_call(&pg(), Export::Describe, Duration::from_millis(2));
        let text = metrics.encode();
        assert_eq!(
            sample(
                &text,
                r#"wasm_operator_plugin_call_duration_seconds_count{binding="postgres",plugin="pg",export="reconcile"}"#
            ),
            Some(1.0)
        );
        assert_eq!(
            sample(
                &text,
                r#"wasm_operator_plugin_call_duration_seconds_sum{binding="postgres",plugin="pg",export="describe"}"#
            ),
            Some(0.002)
        );
    }

    #[test]
    fn writes_are_counted_per_plugin_and_verb() {
        let metrics = Metrics::new();
        assert_eq!(metrics.write_count(&pg(), WriteVerb::Apply), 0);
        metrics.record_write(&pg(), WriteVerb::Apply);
        metrics.record_write(&pg(), WriteVerb::Apply);
        metrics.record_write(&pg(), WriteVerb::Event);
        assert_eq!(metrics.write_count(&pg(), WriteVerb::Apply), 2);
        assert_eq!(metrics.write_count(&pg(), WriteVerb::Delete), 0);
        assert_eq!(
            metrics.write_count(&BindingLabels::new("other", "pg"), WriteVerb::Apply),
            0
        );
        assert_eq!(
            sample(
                &metrics.encode(),
                r#"wasm_operator_writes_total{binding="postgres",plugin="pg",verb="event"}"#
            ),
            Some(1.0)
        );
    }

    #[test]
    fn plugin_lifecycle_series_carry_the_plugin_name() {
        let metrics = Metrics::new();
        metrics.set_queue_depth(&pg(), 7);
        metrics.set_queue_depth(&pg(), 3);
        metrics.record_plugin_swap(&pg());
        metrics.record_plugin_rejection(&pg(), "IncompatibleWit");
        metrics.record_refused_output(&pg());
        metrics.record_swap_latency(&pg(), Duration::from_millis(250));
        metrics.record_plugin_load(&pg(), LoadSource::Cached, Duration::from_millis(5));
        let text = metrics.encode();
        for (series, value) in [
            (
                r#"wasm_operator_queue_depth{binding="postgres",plugin="pg"}"#,
                3.0,
            ),
            (
                r#"wasm_operator_plugin_swaps_total{binding="postgres",plugin="pg"}"#,
                1.0,
            ),
            (
                r#"wasm_operator_plugin_swap_latency_seconds_sum{binding="postgres",plugin="pg"}"#,
                0.25,
            ),
            (
                r#"wasm_operator_plugin_load_duration_seconds_count{binding="postgres",plugin="pg",source="cached"}"#,
                1.0,
            ),
            (
                r#"wasm_operator_plugin_rejections_total{binding="postgres",plugin="pg",reason="IncompatibleWit"}"#,
                1.0,
            ),
            (
                r#"wasm_operator_refused_outputs_total{binding="postgres",plugin="pg"}"#,
                1.0,
            ),
        ] {
            assert_eq!(sample(&text, series), Some(value), "{series} in\n{text}");
        }
    }

    #[test]
    fn a_family_appears_only_once_it_has_a_series() {
        let metrics = Metrics::new();
        assert_eq!(metrics.encode(), "# EOF\n");
        metrics.record_plugin_swap(&pg());
        let text = metrics.encode();
        assert!(
            text.contains("# TYPE wasm_operator_plugin_swaps counter"),
            "{text}"
        );
        assert!(!text.contains("wasm_operator_writes"), "{text}");
    }
    #[test]
    fn reconciles_are_counted_under_controller_runtime_names_labels_and_buckets() {
        let metrics = Metrics::new();
        let took = Duration::from_millis(30);
        metrics.record_controller_reconcile("postgres", ReconcileResult::Success, took);
        metrics.record_controller_reconcile("postgres", ReconcileResult::RequeueAfter, took);
        metrics.record_controller_reconcile("postgres", ReconcileResult::Error, took);
        metrics.record_terminal_reconcile_error("postgres");
        metrics.record_reconcile_panic("postgres");
        metrics.set_max_concurrent_reconciles("postgres", 4);
        let text = metrics.encode();
        for (series, value) in [
            (
                r#"controller_runtime_reconcile_total{controller="postgres",result="success"}"#,
                1.0,
            ),
            (
                r#"controller_runtime_reconcile_total{controller="postgres",result="requeue_after"}"#,
                1.0,
            ),
            (
                r#"controller_runtime_reconcile_total{controller="postgres",result="error"}"#,
                1.0,
            ),
            (
                r#"controller_runtime_reconcile_errors_total{controller="postgres"}"#,
                1.0,
            ),
            (
                r#"controller_runtime_terminal_reconcile_errors_total{controller="postgres"}"#,
                1.0,
            ),
            (
                r#"controller_runtime_reconcile_panics_total{controller="postgres"}"#,
                1.0,
            ),
            (
                r#"controller_runtime_reconcile_time_seconds_count{controller="postgres"}"#,
                3.0,
            ),
            (
                r#"controller_runtime_reconcile_time_seconds_bucket{le="0.05",controller="postgres"}"#,
                3.0,
            ),
            (
                r#"controller_runtime_reconcile_time_seconds_bucket{le="0.025",controller="postgres"}"#,
                0.0,
            ),
            (
                r#"controller_runtime_max_concurrent_reconciles{controller="postgres"}"#,
                4.0,
            ),
        ] {
            assert_eq!(sample(&text, series), Some(value), "{series} in\n{text}");
        }
        // controller-runtime's 40 buckets, from 5 ms to 60 s, then +Inf.
        let buckets = text
            .lines()
            .filter(|l| l.starts_with("controller_runtime_reconcile_time_seconds_bucket"))
            .count();
        assert_eq!(buckets, 41, "{text}");
        assert!(
            text.contains(r#"le="60.0",controller="postgres""#),
            "{text}"
        );
    }

    #[test]
    fn workqueue_series_carry_name_and_controller_and_workers_count_while_they_work() {
        let metrics = Metrics::new();
        let queue = metrics.work_queue("postgres");
        queue.added();
        queue.added();
        queue.set_depth(1);
        queue.taken(Duration::from_millis(3));
        queue.retried();
        let worker = metrics.start_worker("postgres");
        let labels = r#"{name="postgres",controller="postgres"}"#;
        let text = metrics.encode();
        assert_eq!(
            sample(&text, &format!("workqueue_adds_total{labels}")),
            Some(2.0)
        );
        assert_eq!(
            sample(&text, &format!("workqueue_depth{labels}")),
            Some(1.0)
        );
        assert_eq!(
            sample(&text, &format!("workqueue_retries_total{labels}")),
            Some(1.0)
        );
        assert_eq!(
            sample(
                &text,
                &format!("workqueue_queue_duration_seconds_count{labels}")
            ),
            Some(1.0)
        );
        assert_eq!(
            sample(
                &text,
                r#"controller_runtime_active_workers{controller="postgres"}"#
            ),
            Some(1.0)
        );
        // client-go's buckets: 10 ns to 1000 s by powers of ten.
        assert!(
            text.contains(r#"workqueue_queue_duration_seconds_bucket{le="0.01",name="postgres",controller="postgres"} 1"#),
            "{text}"
        );
        drop(worker);
        let text = metrics.encode();
        assert_eq!(
            sample(
                &text,
                r#"controller_runtime_active_workers{controller="postgres"}"#
            ),
            Some(0.0)
        );
        assert_eq!(
            sample(
                &text,
                &format!("workqueue_work_duration_seconds_count{labels}")
            ),
            Some(1.0)
        );
    }

    #[test]
    fn leader_status_is_1_while_leading_and_0_after() {
        let metrics = Metrics::new();
        metrics.set_leader("wasm-operator", true);
        let series = r#"leader_election_master_status{name="wasm-operator"}"#;
        assert_eq!(sample(&metrics.encode(), series), Some(1.0));
        metrics.set_leader("wasm-operator", false);
        assert_eq!(sample(&metrics.encode(), series), Some(0.0));
    }

    #[test]
    fn the_prometheus_text_names_counters_with_total_and_keeps_the_prefixed_series() {
        let metrics = Metrics::new();
        metrics.record_plugin_swap(&pg());
        metrics.record_controller_reconcile(
            "postgres",
            ReconcileResult::Success,
            Duration::from_millis(1),
        );
        let text = metrics.encode_prometheus_text();
        assert!(
            text.contains("# TYPE wasm_operator_plugin_swaps_total counter\n"),
            "{text}"
        );
        assert!(
            text.contains("# TYPE controller_runtime_reconcile_total counter\n"),
            "{text}"
        );
        assert!(
            !text.contains("# EOF") && !text.contains("# UNIT"),
            "{text}"
        );
    }
}
