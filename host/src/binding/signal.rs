//! Stop signals, and how a binding's controller is started.

use std::sync::Arc;

use futures::FutureExt;
use futures::future::{BoxFuture, Shared};
use tokio::sync::watch;

use super::live::LiveBinding;

/// A stop signal every task can hold a copy of.
pub type Shutdown = Shared<BoxFuture<'static, ()>>;

/// A stop signal that fires once `rx` holds `true` or its sender is gone.
pub fn shutdown_signal(mut rx: watch::Receiver<bool>) -> Shutdown {
    async move {
        let _ = rx.wait_for(|stop| *stop).await;
    }
    .boxed()
    .shared()
}

/// Runs the controller of a binding until the signal fires.
pub type StartController =
    Arc<dyn Fn(LiveBinding, Shutdown) -> BoxFuture<'static, ()> + Send + Sync>;
