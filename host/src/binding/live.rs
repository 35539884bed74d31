//! A binding whose plugin version can be replaced while its controller runs.
//!
//! Whoever loads versions holds a [`BindingPublisher`]; the controller holds
//! the [`LiveBinding`] and takes each version as it is published (see
//! `reconcile::versions` for how the controller swaps it in).

use std::time::Instant;

use futures::Stream;
use tokio::sync::watch;

use super::bound::BoundPlugin;

/// A version of a binding as published to its controller.
#[derive(Debug, Clone)]
pub struct Published {
    /// The version.
    pub binding: BoundPlugin,
    /// When the change that produced this version was seen; `None` for the
    /// version a controller starts with when none ran before.
    pub changed_at: Option<Instant>,
}

/// Creates the link between the loader of a binding's versions and the
/// controller that runs them, starting with `binding`. `name` is the
/// `ReconcilerPlugin`'s name, for metrics and logs. `changed_at` is when the
/// change that produced `binding` was seen, when the controller replaces
/// another one (its first reconcile is then timed as a swap).
pub fn channel(
    name: &str,
    binding: BoundPlugin,
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
    pub fn publish(&self, binding: BoundPlugin, changed_at: Instant) {
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
    pub fn current(&mut self) -> Published {
        self.rx.borrow_and_update().clone()
    }

    /// Every version published after the one [`LiveBinding::current`]
    /// returned, as it comes.
    pub fn versions(self) -> impl Stream<Item = Published> + Send + use<> {
        futures::stream::unfold(self.rx, |mut rx| async move {
            rx.changed().await.ok()?;
            let published = rx.borrow_and_update().clone();
            Some((published, rx))
        })
    }
}
