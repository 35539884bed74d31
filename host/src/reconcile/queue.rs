//! How many objects wait for a reconcile, for the `queue_depth` metric.
//!
//! kube-runtime's scheduler does not expose its queue, so the controller
//! keeps its own account of when each object is next due: now when a watch
//! triggers it, later when a reconcile or the error policy asks for a
//! requeue; an object leaves the account when its reconcile starts. The
//! depth is the number of objects due now that have not started.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

/// Objects (by uid) and when each is due.
#[derive(Debug, Default, Clone)]
pub(super) struct Queue {
    due: Arc<Mutex<HashMap<String, Instant>>>,
}

impl Queue {
    /// `uid` is due now: a watch event or a plugin swap triggered it.
    pub(super) fn triggered(&self, uid: &str) {
        self.due_at(uid, Instant::now());
    }

    /// `uid` is due `after` from now, unless it is due sooner already.
    pub(super) fn requeued(&self, uid: &str, after: Duration) {
        self.due_at(uid, Instant::now() + after);
    }

    fn due_at(&self, uid: &str, at: Instant) {
        let mut due = self.lock();
        match due.get_mut(uid) {
            Some(current) if *current <= at => {}
            Some(current) => *current = at,
            None => {
                due.insert(uid.to_owned(), at);
            }
        }
    }

    /// The reconcile of `uid` started.
    pub(super) fn started(&self, uid: &str) {
        self.lock().remove(uid);
    }

    /// `uid` was deleted: nothing is due for it any more.
    pub(super) fn forget(&self, uid: &str) {
        self.lock().remove(uid);
    }

    /// How many objects are due and not started.
    pub(super) fn depth(&self) -> usize {
        let now = Instant::now();
        self.lock().values().filter(|at| **at <= now).count()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Instant>> {
        self.due.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn objects_count_while_due_and_not_started() {
        let queue = Queue::default();
        queue.triggered("a");
        queue.triggered("b");
        queue.requeued("c", Duration::from_secs(10));
        assert_eq!(queue.depth(), 2, "c is not due yet");
        queue.started("a");
        assert_eq!(queue.depth(), 1);
        tokio::time::advance(Duration::from_secs(11)).await;
        assert_eq!(queue.depth(), 2, "c is due now");
        // A trigger brings a later requeue forward; a requeue never delays a trigger.
        queue.requeued("d", Duration::from_secs(60));
        queue.triggered("d");
        queue.requeued("b", Duration::from_secs(60));
        assert_eq!(queue.depth(), 3);
        queue.forget("b");
        queue.forget("c");
        queue.started("d");
        assert_eq!(queue.depth(), 0);
    }
}
