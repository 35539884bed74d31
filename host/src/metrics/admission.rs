//! The admission webhooks' series: reviews answered, their duration, and
//! the ones denied because no decision could be made.

use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::{Registry, Unit};

use super::buckets::{HistogramFamily, plugin_call_histogram};
use super::labels::{AdmissionLabels, BindingLabels, OperationLabels, ReasonLabels};

/// The admission series families.
#[derive(Debug)]
pub(super) struct AdmissionMetrics {
    requests: Family<AdmissionLabels, Counter>,
    duration: HistogramFamily<OperationLabels>,
    failures: Family<ReasonLabels, Counter>,
}

impl AdmissionMetrics {
    /// Creates the families, empty, in `registry`.
    pub(super) fn register(registry: &mut Registry) -> Self {
        let requests = Family::default();
        registry.register(
            "admission_requests",
            "Admission reviews answered, by binding, operation and whether they were allowed",
            requests.clone(),
        );
        let duration: HistogramFamily<_> = Family::new_with_constructor(plugin_call_histogram);
        registry.register_with_unit(
            "admission_duration",
            "Duration of answering one admission review, the plugin call included, by binding and operation",
            Unit::Seconds,
            duration.clone(),
        );
        let failures = Family::default();
        registry.register(
            "admission_failures",
            "Admission reviews denied because no decision could be made, by binding and reason (NotInService, NotExported, a plugin call failure such as DeadlineExceeded or MemoryLimit, InvalidPatch, ...)",
            failures.clone(),
        );
        Self {
            requests,
            duration,
            failures,
        }
    }

    /// Counts and times an answered admission review of `operation`
    /// (`CREATE`, `UPDATE`, `DELETE`, `CONNECT` or `other`).
    pub(super) fn record(
        &self,
        who: &BindingLabels,
        operation: &'static str,
        allowed: bool,
        duration: Duration,
    ) {
        self.requests
            .get_or_create(&AdmissionLabels {
                binding: who.clone(),
                operation,
                allowed: if allowed { "true" } else { "false" },
            })
            .inc();
        self.duration
            .get_or_create(&OperationLabels {
                binding: who.clone(),
                operation,
            })
            .observe(duration.as_secs_f64());
    }

    /// Counts an admission review denied because no decision could be
    /// made, by a bounded `reason`.
    pub(super) fn record_failure(&self, who: &BindingLabels, reason: &'static str) {
        self.failures
            .get_or_create(&ReasonLabels {
                binding: who.clone(),
                reason,
            })
            .inc();
    }
}
