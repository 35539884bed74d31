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
