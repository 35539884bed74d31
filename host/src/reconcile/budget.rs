//! How many events the host still records for an object this minute: a
//! fixed one-minute window per object, so that a plugin cannot turn one
//! object into a stream of Event writes.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

const WINDOW: Duration = Duration::from_secs(60);

/// Events recorded per object (by uid) in the current window.
#[derive(Debug, Default, Clone)]
pub(super) struct EventBudget {
    windows: Arc<Mutex<HashMap<String, (Instant, u32)>>>,
}

impl EventBudget {
    /// Takes up to `wanted` events from `uid`'s budget of `per_minute`;
    /// returns how many may be recorded.
    pub(super) fn take(&self, uid: &str, wanted: usize, per_minute: u32) -> usize {
        let now = Instant::now();
        let mut windows = self.windows.lock().unwrap_or_else(|e| e.into_inner());
        // Forget windows that ended, so the map stays as small as the set
        // of objects with recent events.
        if windows.len() > 1024 {
            windows.retain(|_, (start, _)| now.duration_since(*start) < WINDOW);
        }
        let (start, used) = windows.entry(uid.to_owned()).or_insert((now, 0));
        if now.duration_since(*start) >= WINDOW {
            (*start, *used) = (now, 0);
        }
        let granted = wanted.min(per_minute.saturating_sub(*used) as usize);
        *used += granted as u32;
        granted
    }

    /// `uid` was deleted: its window goes.
    pub(super) fn forget(&self, uid: &str) {
        self.windows
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(uid);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn an_object_gets_its_events_per_minute_and_then_none_until_the_window_ends() {
        let budget = EventBudget::default();
        assert_eq!(budget.take("a", 20, 30), 20);
        assert_eq!(budget.take("a", 20, 30), 10);
        assert_eq!(budget.take("a", 1, 30), 0);
        assert_eq!(budget.take("b", 5, 30), 5, "each object has its own");
        tokio::time::advance(WINDOW).await;
        assert_eq!(budget.take("a", 40, 30), 30);
    }
}
