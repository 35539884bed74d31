//! The version of a binding in service, swapped while its controller runs.
//!
//! Each reconcile takes the version in service when it starts and keeps it
//! to the end, so calls in flight finish on the old version while new calls
//! use the new one; after a swap every object of the kind is reconciled
//! again, and the first of those reconciles records how long the swap took
//! to take effect.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use futures::{Stream, StreamExt};

use super::context::Context;
use crate::binding::{LiveBinding, Published};

/// The controller context of the version in service.
pub(super) struct Versions {
    current: ArcSwap<Version>,
}

/// One version in service.
pub(super) struct Version {
    /// Its controller context.
    pub(super) context: Arc<Context>,
    changed_at: Option<Instant>,
    reconciled: AtomicBool,
}

impl Version {
    fn new(context: Context, changed_at: Option<Instant>) -> Self {
        Self {
            context: Arc::new(context),
            changed_at,
            reconciled: AtomicBool::new(false),
        }
    }

    /// Marks a reconcile by this version finished; the first one after a
    /// swap returns how long the swap took to take effect.
    pub(super) fn reconciled(&self) -> Option<Duration> {
        let changed_at = self.changed_at?;
        (!self.reconciled.swap(true, Ordering::Relaxed)).then(|| changed_at.elapsed())
    }
}

impl Versions {
    /// Starts with `context`, the context of the version first published,
    /// and shows its concurrency in `controller_runtime_max_concurrent_reconciles`
    /// (a change of concurrency restarts the controller, so it holds for
    /// every version swapped in later).
    pub(super) fn new(context: Context, first: &Published) -> Arc<Self> {
        context
            .metrics
            .set_max_concurrent_reconciles(&context.labels.binding, context.plugin.concurrency);
        Arc::new(Self {
            current: ArcSwap::from_pointee(Version::new(context, first.changed_at)),
        })
    }

    /// The version in service.
    pub(super) fn current(&self) -> Arc<Version> {
        self.current.load_full()
    }

    /// Swaps in each version published on `live` and then yields once, for
    /// `Controller::reconcile_all_on`.
    pub(super) fn swaps(
        self: &Arc<Self>,
        live: LiveBinding,
    ) -> impl Stream<Item = ()> + Send + use<> {
        let versions = Arc::clone(self);
        live.versions()
            .map(move |published| versions.swap(published))
    }

    fn swap(&self, published: Published) {
        let previous = self.current.load_full();
        let from = previous.context.plugin.plugin.digest().to_string();
        let to = published.binding.plugin.digest().to_string();
        // A new version keeps the plugin's name (the loader refuses a
        // rename), so the labels stay those of the previous version.
        let context = Context {
            plugin: published.binding,
            ..Context::clone(&previous.context)
        };
        self.current
            .store(Arc::new(Version::new(context, published.changed_at)));
        tracing::info!(binding = %previous.context.labels.binding, %from, %to, "plugin version swapped in: reconciling every object again");
    }
}
