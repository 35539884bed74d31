//! Fault injection for tests: expired watches, dropped watches, injected errors, latency,
//! watch lag and the bookmark interval.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use crate::error::ApiError;

/// An HTTP error answered instead of serving matching requests, a number of times.
#[derive(Debug, Clone)]
#[must_use]
pub struct Injection {
    status: u16,
    method: Option<http::Method>,
    path_contains: Option<String>,
    times: usize,
}

impl Injection {
    /// Answer with this HTTP status (409, 500, 503, …), once unless [`Injection::times`] says otherwise.
    pub fn status(status: u16) -> Self {
        Self {
            status,
            method: None,
            path_contains: None,
            times: 1,
        }
    }

    /// Only requests with this method.
    pub fn method(mut self, method: http::Method) -> Self {
        self.method = Some(method);
        self
    }

    /// Only requests whose path contains this text.
    pub fn path_contains(mut self, text: impl Into<String>) -> Self {
        self.path_contains = Some(text.into());
        self
    }

    /// How many matching requests fail.
    pub fn times(mut self, times: usize) -> Self {
        self.times = times;
        self
    }

    fn matches(&self, method: &http::Method, path: &str) -> bool {
        self.method.as_ref().is_none_or(|m| m == method)
            && self
                .path_contains
                .as_deref()
                .is_none_or(|p| path.contains(p))
    }

    fn error(&self) -> ApiError {
        let reason = match self.status {
            409 => "Conflict",
            410 => "Expired",
            429 => "TooManyRequests",
            503 => "ServiceUnavailable",
            504 => "Timeout",
            404 => "NotFound",
            _ => "InternalError",
        };
        ApiError::custom(
            self.status,
            reason,
            format!("injected fault: HTTP {}", self.status),
        )
    }
}

/// Fault settings consulted on each request.
#[derive(Debug)]
pub struct FaultState {
    expire_watches: AtomicUsize,
    latency_ms: AtomicU64,
    bookmark_ms: AtomicU64,
    injections: Mutex<Vec<Injection>>,
    watch_lag: Mutex<HashMap<String, Duration>>,
}

impl Default for FaultState {
    fn default() -> Self {
        Self {
            expire_watches: AtomicUsize::new(0),
            latency_ms: AtomicU64::new(0),
            bookmark_ms: AtomicU64::new(30_000),
            injections: Mutex::new(Vec::new()),
            watch_lag: Mutex::new(HashMap::new()),
        }
    }
}

impl FaultState {
    /// The next `n` watches that resume from a resourceVersion get `410 Expired`.
    pub fn expire_next_watches(&self, n: usize) {
        self.expire_watches.fetch_add(n, Ordering::SeqCst);
    }

    /// Consumes one forced expiry, if any is pending.
    pub fn take_expiry(&self) -> bool {
        self.expire_watches
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
    }

    /// Delay added before every request is served.
    pub fn set_latency(&self, latency: Duration) {
        self.latency_ms
            .store(latency.as_millis() as u64, Ordering::SeqCst);
    }

    /// The current added delay.
    pub fn latency(&self) -> Duration {
        Duration::from_millis(self.latency_ms.load(Ordering::SeqCst))
    }

    /// Delivers live watch events of `resource` (plural, e.g. `secrets`) this much after
    /// they happen; zero turns it off.
    pub fn set_watch_lag(&self, resource: &str, lag: Duration) {
        let mut lags = self
            .watch_lag
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if lag.is_zero() {
            lags.remove(resource);
        } else {
            lags.insert(resource.to_owned(), lag);
        }
    }

    /// The current watch lag of `resource`.
    pub fn watch_lag(&self, resource: &str) -> Duration {
        self.watch_lag
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(resource)
            .copied()
            .unwrap_or_default()
    }

    /// How often watches that asked for bookmarks get one (default 30 s).
    pub fn set_bookmark_interval(&self, interval: Duration) {
        self.bookmark_ms
            .store(interval.as_millis().max(1) as u64, Ordering::SeqCst);
    }

    /// The current bookmark interval.
    pub fn bookmark_interval(&self) -> Duration {
        Duration::from_millis(self.bookmark_ms.load(Ordering::SeqCst))
    }

    /// Adds an injected error.
    pub fn inject(&self, injection: Injection) {
        self.injections
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(injection);
    }

    /// The injected error for this request, if one matches (consuming one of its times).
    pub fn injected_error(&self, method: &http::Method, path: &str) -> Option<ApiError> {
        let mut injections = self
            .injections
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let position = injections
            .iter()
            .position(|i| i.times > 0 && i.matches(method, path))?;
        let injection = &mut injections[position];
        injection.times -= 1;
        let error = injection.error();
        if injection.times == 0 {
            drop(injections.remove(position));
        }
        Some(error)
    }
}

/// Handle for tests to break things on purpose (see [`crate::TestApiServer::faults`]).
#[derive(Clone)]
pub struct Faults {
    api: std::sync::Arc<crate::server::Api>,
}

impl Faults {
    pub(crate) fn new(api: std::sync::Arc<crate::server::Api>) -> Self {
        Self { api }
    }

    /// The next `n` watches that resume from a resourceVersion get one `410 Expired` event.
    pub fn expire_next_watches(&self, n: usize) {
        self.api.faults.expire_next_watches(n);
    }

    /// Forgets all watch history, so every resume from an older resourceVersion gets 410.
    pub fn compact_history(&self) {
        self.api.store.lock().compact();
    }

    /// Closes every open watch stream (clients see the connection end and re-watch).
    pub fn drop_watches(&self) {
        self.api.store.lock().drop_watchers();
    }

    /// Answers matching requests with an HTTP error instead of serving them.
    pub fn inject(&self, injection: Injection) {
        self.api.faults.inject(injection);
    }

    /// Delays every request by this much (zero turns it off).
    pub fn set_latency(&self, latency: Duration) {
        self.api.faults.set_latency(latency);
    }

    /// Delivers live watch events of `resource` (plural, e.g. `secrets`) to every watcher
    /// `lag` after they happen, in order, as a loaded API server or etcd would: a client's
    /// cache then trails its own writes. Zero turns it off; takes effect at once.
    pub fn set_watch_lag(&self, resource: &str, lag: Duration) {
        self.api.faults.set_watch_lag(resource, lag);
    }

    /// Sends bookmarks this often on watches that allow them (takes effect for new watches).
    pub fn set_bookmark_interval(&self, interval: Duration) {
        self.api.faults.set_bookmark_interval(interval);
    }
}
