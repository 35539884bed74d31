//! The account of a controller's work queue, for the `queue_depth` and
//! client-go `workqueue_*` metrics.
//!
//! kube-runtime's scheduler does not expose its queue, so the controller
//! keeps its own account of when each object is next due: now when a watch
//! triggers it, later when a reconcile or the error policy asks for a
//! requeue; an object leaves the account when its reconcile starts. The
//! depth is the number of objects due now that have not started.
//!
//! The series follow client-go's workqueue: an object is *added* when it
//! becomes due while not already waiting (a second trigger of a waiting
//! object is no add, a requeue counts when its time comes); its *queue
//! duration* runs from becoming due to its reconcile starting; a *retry* is
//! a failed object put back with the backoff.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use crate::metrics::WorkQueueSeries;

/// Objects (by uid) and when each is due.
#[derive(Debug, Clone)]
pub(super) struct Queue {
    due: Arc<Mutex<HashMap<String, Due>>>,
    series: WorkQueueSeries,
}

/// When an object is due, and whether its becoming due was counted.
#[derive(Debug, Clone, Copy)]
struct Due {
    at: Instant,
    added: bool,
}

impl Queue {
    /// An empty account, counting into `series`.
    pub(super) fn new(series: WorkQueueSeries) -> Self {
        Self {
            due: Arc::default(),
            series,
        }
    }

    /// `uid` is due now: a watch event or a plugin swap triggered it.
    pub(super) fn triggered(&self, uid: &str) {
        self.due_at(uid, Instant::now());
    }

    /// `uid` is due `after` from now, unless it is due sooner already.
    pub(super) fn requeued(&self, uid: &str, after: Duration) {
        self.due_at(uid, Instant::now() + after);
    }

    /// `uid` failed and is due again after the backoff `after`.
    pub(super) fn retried(&self, uid: &str, after: Duration) {
        self.series.retried();
        self.requeued(uid, after);
    }

    fn due_at(&self, uid: &str, at: Instant) {
        let now = Instant::now();
        let mut due = self.lock();
        let entry = due
            .entry(uid.to_owned())
            .or_insert(Due { at, added: false });
        if at < entry.at {
            // Brought forward: a later requeue replaced by a sooner one.
            *entry = Due { at, added: false };
        }
        self.count_if_due(entry, now);
    }

    /// Counts `entry` as added once it is due.
    fn count_if_due(&self, entry: &mut Due, now: Instant) {
        if !entry.added && entry.at <= now {
            entry.added = true;
            self.series.added();
        }
    }

    /// The reconcile of `uid` started: it leaves the queue after waiting
    /// since it became due. A reconcile the account did not see coming
    /// (kube-runtime's own scheduling) counts as added and taken at once.
    pub(super) fn started(&self, uid: &str) {
        let now = Instant::now();
        let mut due = self.lock();
        match due.remove(uid) {
            Some(mut entry) if entry.at <= now => {
                self.count_if_due(&mut entry, now);
                self.series.taken(now - entry.at);
            }
            _ => {
                self.series.added();
                self.series.taken(Duration::ZERO);
            }
        }
    }

    /// `uid` was deleted: nothing is due for it any more.
    pub(super) fn forget(&self, uid: &str) {
        self.lock().remove(uid);
    }

    /// How many objects are due and not started; counts the requeues that
    /// became due since the last look, and sets `workqueue_depth`.
    pub(super) fn depth(&self) -> usize {
        let now = Instant::now();
        let mut due = self.lock();
        let mut depth = 0;
        for entry in due.values_mut() {
            self.count_if_due(entry, now);
            depth += usize::from(entry.at <= now);
        }
        self.series.set_depth(depth);
        depth
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Due>> {
        self.due.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::Metrics;

    /// The value of the sample line that starts with `series`.
    fn sample(metrics: &Metrics, series: &str) -> f64 {
        let text = metrics.encode();
        text.lines()
            .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
            .map_or(0.0, |value| value.parse().expect("a number"))
    }

    const LABELS: &str = r#"{name="greeting",controller="greeting"}"#;

    #[tokio::test(start_paused = true)]
    async fn objects_count_while_due_and_not_started() {
        let metrics = Metrics::new();
        let queue = Queue::new(metrics.work_queue("greeting"));
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
        assert_eq!(sample(&metrics, &format!("workqueue_depth{LABELS}")), 3.0);
        queue.forget("b");
        queue.forget("c");
        queue.started("d");
        assert_eq!(queue.depth(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn adds_count_objects_becoming_due_once_and_the_wait_is_timed_from_then() {
        let metrics = Metrics::new();
        let queue = Queue::new(metrics.work_queue("greeting"));
        let adds = format!("workqueue_adds_total{LABELS}");
        queue.triggered("a");
        queue.triggered("a");
        assert_eq!(
            sample(&metrics, &adds),
            1.0,
            "a waiting object is added once"
        );
        queue.requeued("b", Duration::from_secs(5));
        assert_eq!(sample(&metrics, &adds), 1.0, "b is not due yet");
        tokio::time::advance(Duration::from_secs(7)).await;
        queue.started("a");
        queue.started("b");
        assert_eq!(sample(&metrics, &adds), 2.0, "b counts once due");
        // a waited 7 s, b 2 s (since it became due).
        assert_eq!(
            sample(
                &metrics,
                &format!("workqueue_queue_duration_seconds_sum{LABELS}")
            ),
            9.0
        );
        queue.retried("a", Duration::from_secs(1));
        assert_eq!(
            sample(&metrics, &format!("workqueue_retries_total{LABELS}")),
            1.0
        );
        tokio::time::advance(Duration::from_secs(2)).await;
        assert_eq!(queue.depth(), 1);
        assert_eq!(sample(&metrics, &adds), 3.0, "the retry counts once due");
    }
}
