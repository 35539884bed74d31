//! A binding whose plugin version can be replaced while its controller runs.
//!
//! Whoever loads versions holds a [`BindingPublisher`]; the controller holds
//! the [`LiveBinding`]. Each reconcile takes the version in service when it
//! starts and keeps it to the end, so calls in flight finish on the old
//! version while new calls use the new one; after a swap every object of
//! the kind is reconciled again, and the first of those reconciles records
//! how long the swap took to take effect.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use arc_swap::ArcSwap;
use futures::Stream;
use kube::api::DynamicObject;
use kube::runtime::controller::Action;
use tokio::sync::watch;

use super::{Context, PluginBinding, ReconcileError};

/// A version of a binding as published to its controller.
#[derive(Debug, Clone)]
struct Published {
    binding: PluginBinding,
    /// When the change that produced this version was seen; `None` for the
    /// version a controller starts with when none ran before.
    changed_at: Option<Instant>,
}

/// Creates the link between the loader of a binding's versions and the
/// controller that runs them, starting with `binding`. `name` is the
/// `ReconcilerPlugin`'s name, for metrics and logs. `changed_at` is when the
/// change that produced `binding` was seen, when the controller replaces
/// another one (its first reconcile is then timed as a swap).
pub fn channel(
    name: &str,
    binding: PluginBinding,
    changed_at: Option<Instant>,
) -> (BindingPublisher, LiveBinding) {
    let (tx, rx) = watch::channel(Published {
        binding,
        changed_at,
    });
    (
        BindingPublisher { tx },
        LiveBinding {
            name: name.to_owned(),
            rx,
        },
    )
}

/// Publishes new versions of a binding to its running controller.
#[derive(Debug)]
pub struct BindingPublisher {
    tx: watch::Sender<Published>,
}

impl BindingPublisher {
    /// Puts `binding` in service: reconciles in flight finish on the version
    /// they started with, later ones use `binding`, and every object of the
    /// kind is reconciled again. `changed_at` is when the change that
    /// produced it was seen, to measure how long the swap takes to take
    /// effect.
    ///
    /// The controller must reconcile the same kind with the same children
    /// and concurrency: restart it for other changes.
    pub fn publish(&self, binding: PluginBinding, changed_at: Instant) {
        self.tx.send_replace(Published {
            binding,
            changed_at: Some(changed_at),
        });
    }
}

/// The controller's side of a binding: the version to start with and the
/// versions published later.
#[derive(Debug)]
pub struct LiveBinding {
    name: String,
    rx: watch::Receiver<Published>,
}

impl LiveBinding {
    /// The name of the `ReconcilerPlugin`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The version in service, marked as seen.
    pub(super) fn current(&mut self) -> PluginBinding {
        self.rx.borrow_and_update().binding.clone()
    }
}

/// The controller context of the version in service.
pub(super) struct Versions {
    current: ArcSwap<Version>,
    binding: String,
}

struct Version {
    context: Arc<Context>,
    changed_at: Option<Instant>,
    reconciled: AtomicBool,
}

impl Versions {
    /// Starts with `context`, the context of the live binding's current version.
    pub(super) fn new(context: Context, live: &LiveBinding) -> Arc<Self> {
        let changed_at = live.rx.borrow().changed_at;
        Arc::new(Self {
            current: ArcSwap::from_pointee(Version {
                context: Arc::new(context),
                changed_at,
                reconciled: AtomicBool::new(false),
            }),
            binding: live.name.clone(),
        })
    }

    /// The context of the version in service.
    pub(super) fn context(&self) -> Arc<Context> {
        Arc::clone(&self.current.load().context)
    }

    /// Swaps in each version published on `live` and then yields once, for
    /// `Controller::reconcile_all_on`.
    pub(super) fn swaps(
        self: &Arc<Self>,
        live: LiveBinding,
    ) -> impl Stream<Item = ()> + Send + use<> {
        futures::stream::unfold(
            (Arc::clone(self), live.rx),
            |(versions, mut rx)| async move {
                rx.changed().await.ok()?;
                let published = rx.borrow_and_update().clone();
                versions.swap(published);
                Some(((), (versions, rx)))
            },
        )
    }

    fn swap(&self, published: Published) {
        let previous = self.current.load_full();
        let digest = published.binding.plugin.digest().to_string();
        let context = Context {
            binding: published.binding,
            ..Context::clone(&previous.context)
        };
        self.current.store(Arc::new(Version {
            context: Arc::new(context),
            changed_at: published.changed_at,
            reconciled: AtomicBool::new(false),
        }));
        tracing::info!(binding = %self.binding, from = %previous.context.binding.plugin.digest(), to = %digest, "plugin version swapped in: reconciling every object again");
    }

    /// Reconciles `object` with the version in service when it starts.
    pub(super) async fn reconcile(
        self: Arc<Self>,
        object: Arc<DynamicObject>,
    ) -> Result<Action, ReconcileError> {
        let version = self.current.load_full();
        let result = super::reconcile(object, Arc::clone(&version.context)).await;
        if let Some(changed_at) = version.changed_at
            && !version.reconciled.swap(true, Ordering::Relaxed)
        {
            let latency = changed_at.elapsed();
            version
                .context
                .metrics
                .record_swap_latency(&self.binding, latency);
            tracing::info!(binding = %self.binding, digest = %version.context.binding.plugin.digest(), latency_ms = latency.as_millis() as u64, "first reconcile by the new plugin version");
        }
        result
    }
}
