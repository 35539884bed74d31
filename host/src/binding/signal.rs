//! Stop signals shared by the tasks of a binding.
use futures::FutureExt;
use futures::future::{BoxFuture, Shared};
use tokio::sync::watch;

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
