//! Histogram buckets of the operator's series, sized for what each times.

use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};

/// A family of histograms built by a bucket function.
pub(super) type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

/// Buckets of a whole reconcile: 5 ms to about 20 s.
pub(super) fn reconcile_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.005, 2.0, 13))
}

/// Buckets of one plugin call: 0.25 ms to about 4 s (the default deadline is well inside).
pub(super) fn plugin_call_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.000_25, 2.0, 15))
}

/// Buckets of a plugin swap or load: 10 ms to about 40 s.
pub(super) fn lifecycle_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.01, 2.0, 13))
}

/// controller-runtime's buckets of `controller_runtime_reconcile_time_seconds`
/// (`pkg/internal/controller/metrics`), kept as they are so that its
/// dashboards' quantiles read the same: 5 ms to 60 s.
pub(super) fn controller_runtime_reconcile_histogram() -> Histogram {
    Histogram::new([
        0.005, 0.01, 0.025, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5, 0.6, 0.7, 0.8,
        0.9, 1.0, 1.25, 1.5, 1.75, 2.0, 2.5, 3.0, 3.5, 4.0, 4.5, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0,
        15.0, 20.0, 25.0, 30.0, 40.0, 50.0, 60.0,
    ])
}

/// client-go's workqueue buckets (`ExponentialBuckets(10e-9, 10, 12)`):
/// 10 ns to 1000 s, written out so that float noise does not shift them.
pub(super) fn workqueue_histogram() -> Histogram {
    Histogram::new([
        1e-8, 1e-7, 1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0, 1000.0,
    ])
}
