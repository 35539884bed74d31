//! Watch streams: newline-delimited JSON events from a snapshot-plus-subscription taken under
//! the store lock, history replay from a resourceVersion, `410 Expired`, bookmarks,
//! `sendInitialEvents`, selectors, and a clean close at `timeoutSeconds`.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::error::ApiError;
use crate::meta;
use crate::registry::ResourceType;
use crate::render::{self, Format};
use crate::selector::{FieldSelector, LabelSelector};
use crate::server::Api;
use crate::store::{Event, EventType};

/// What a watch request asked for.
pub struct WatchRequest {
    /// The watched type.
    pub rt: Arc<ResourceType>,
    /// Only this namespace, when set.
    pub namespace: Option<String>,
    /// Resume after this resourceVersion; `None` starts with the current state.
    pub since: Option<u64>,
    /// `sendInitialEvents=true`: end the initial events with a marked bookmark.
    pub send_initial_events: bool,
    /// `allowWatchBookmarks=true`.
    pub bookmarks: bool,
    /// `timeoutSeconds`.
    pub timeout: Duration,
    /// `labelSelector`.
    pub labels: LabelSelector,
    /// `fieldSelector`.
    pub fields: FieldSelector,
    /// Response shape.
    pub format: Format,
}

/// Starts a watch and returns the receiving end of its body chunks.
pub fn start(api: &Arc<Api>, request: WatchRequest) -> mpsc::Receiver<Bytes> {
    let (tx, rx) = mpsc::channel(256);
    let forced_expiry = request.since.is_some() && api.faults.take_expiry();
    let subscription = if forced_expiry {
        Err(request.since.unwrap_or(0))
    } else {
        let mut state = api.store.lock();
        let rv = state.resource_version();
        state
            .subscribe(&request.rt.group_resource(), request.since)
            .map(|s| (s, rv))
    };
    let bookmark_every = api.faults.bookmark_interval();
    let api = Arc::clone(api);
    tokio::spawn(async move {
        let ((initial, mut live), start_rv) = match subscription {
            Ok(s) => s,
            Err(rv) => {
                let status = ApiError::expired(rv).to_status();
                let _ = tx.send(line("ERROR", status)).await;
                return;
            }
        };
        let mut last_rv = request.since.unwrap_or(0);
        for event in initial {
            last_rv = last_rv.max(event.rv);
            if let Some(chunk) = render_event(&request, &event)
                && tx.send(chunk).await.is_err()
            {
                return;
            }
        }
        last_rv = last_rv.max(start_rv);
        if request.send_initial_events && request.since.is_none() {
            let mut bookmark = bookmark(&request.rt, last_rv);
            bookmark["metadata"]["annotations"] = json!({ "k8s.io/initial-events-end": "true" });
            if tx.send(line("BOOKMARK", bookmark)).await.is_err() {
                return;
            }
        }
        let deadline = tokio::time::sleep(request.timeout);
        tokio::pin!(deadline);
        let mut ticker = tokio::time::interval(bookmark_every);
        ticker.tick().await;
        // Live events held back by an injected watch lag, with when they are due.
        let mut lagging: VecDeque<(tokio::time::Instant, Arc<Event>)> = VecDeque::new();
        let resource = request.rt.plural.clone();
        loop {
            let next_due = lagging.front().map(|(due, _)| *due);
            tokio::select! {
                event = live.recv() => {
                    let Some(event) = event else { return };
                    let lag = api.faults.watch_lag(&resource);
                    if !lag.is_zero() || !lagging.is_empty() {
                        lagging.push_back((tokio::time::Instant::now() + lag, event));
                        continue;
                    }
                    last_rv = last_rv.max(event.rv);
                    if let Some(chunk) = render_event(&request, &event)
                        && tx.send(chunk).await.is_err()
                    {
                        return;
                    }
                }
                () = tokio::time::sleep_until(next_due.unwrap_or_else(tokio::time::Instant::now)), if next_due.is_some() => {
                    let Some((_, event)) = lagging.pop_front() else { continue };
                    last_rv = last_rv.max(event.rv);
                    if let Some(chunk) = render_event(&request, &event)
                        && tx.send(chunk).await.is_err()
                    {
                        return;
                    }
                }
                () = &mut deadline => return,
                _ = ticker.tick(), if request.bookmarks => {
                    if tx.send(line("BOOKMARK", bookmark(&request.rt, last_rv))).await.is_err() {
                        return;
                    }
                }
                () = tx.closed() => return,
            }
        }
    });
    rx
}

fn bookmark(rt: &ResourceType, rv: u64) -> Value {
    json!({ "kind": rt.kind, "apiVersion": rt.api_version(), "metadata": { "resourceVersion": rv.to_string() } })
}

fn line(kind: &str, object: Value) -> Bytes {
    let mut text =
        serde_json::to_vec(&json!({ "type": kind, "object": object })).unwrap_or_default();
    text.push(b'\n');
    Bytes::from(text)
}

fn render_event(request: &WatchRequest, event: &Event) -> Option<Bytes> {
    let object = &event.object;
    if let Some(ns) = &request.namespace
        && meta::namespace(object) != ns
    {
        return None;
    }
    let fields_ok = request
        .fields
        .matches(&crate::events::to_view(&request.rt, object));
    let now = fields_ok && request.labels.matches(&meta::labels(object));
    let before = fields_ok
        && event
            .prev_labels
            .as_ref()
            .is_some_and(|l| request.labels.matches(l));
    let kind = match (event.kind, before, now) {
        (EventType::Added, _, true) => EventType::Added,
        (EventType::Modified, true, true) => EventType::Modified,
        (EventType::Modified, false, true) => EventType::Added,
        (EventType::Modified, true, false) => EventType::Deleted,
        (EventType::Deleted, true, _) => EventType::Deleted,
        _ => return None,
    };
    Some(line(
        kind.as_str(),
        render::object(&request.rt, object, request.format),
    ))
}
