//! Kubernetes Events the host records: on reconciled objects for their
//! plugins, and on bindings for their loads.
//!
//! One recorder per controller or supervisor, reporting as the operator
//! (`--reporter`) and this replica (`$POD_NAME`); notes are cut to what the
//! API server accepts.
//!
//! Repeats fold into a series (`series.count`, `series.lastObservedTime`) as
//! kube's `events::Recorder` does, with one difference that is the reason this
//! module writes the Events itself: kube 5's recorder keys a series on type,
//! reason, action, reporter and objects but not on the note, so a second event
//! with a new note was patched into the first as a repeat and kept the old
//! note, and the user read a stale message. Here the note is part of the key:
//! a new note is a new Event.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::events::v1::{Event as K8sEvent, EventSeries};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::events::{EventType, Reporter};
use kube::{Client, ResourceExt as _};

/// The longest note recorded; the API server refuses longer ones.
const MAX_NOTE_BYTES: usize = 1024;

/// How long a recorded Event can still be continued as a series (kube's and
/// client-go's value).
const SERIES_TTL: SignedDuration = SignedDuration::from_mins(6);

/// What makes two Events the same occurrence repeated: everything the user
/// reads, the note included.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct SeriesKey {
    type_: &'static str,
    reason: String,
    action: String,
    note: String,
    /// The regarded object, as `apiVersion/kind/namespace/name/uid`.
    regarding: String,
}

/// Records Events as the operator.
#[derive(Clone)]
pub struct EventRecorder {
    client: Client,
    reporter: Reporter,
    /// The last Event written for each key, to continue its series.
    recorded: Arc<Mutex<HashMap<SeriesKey, K8sEvent>>>,
}

impl EventRecorder {
    /// A recorder reporting as `reporter`, from the replica named by
    /// `$POD_NAME` when it is set.
    pub fn new(client: Client, reporter: &str) -> Self {
        Self {
            client,
            reporter: Reporter {
                controller: reporter.to_owned(),
                instance: std::env::var("POD_NAME").ok(),
            },
            recorded: Arc::default(),
        }
    }

    /// Records an event about `object`: a repeat of the same type, reason,
    /// action and note within six minutes continues that Event's series; any
    /// other is a new Event. A note longer than the API server accepts is cut.
    ///
    /// # Errors
    /// When the API server refuses the event.
    pub async fn publish(
        &self,
        object: &ObjectReference,
        type_: EventType,
        reason: &str,
        note: &str,
        action: &str,
    ) -> Result<(), kube::Error> {
        let note = truncate(note, MAX_NOTE_BYTES);
        let type_ = match type_ {
            EventType::Normal => "Normal",
            EventType::Warning => "Warning",
        };
        let key = SeriesKey {
            type_,
            reason: reason.to_owned(),
            action: action.to_owned(),
            note: note.clone(),
            regarding: regarding_key(object),
        };
        let now = Timestamp::now();
        let repeat = {
            let mut recorded = self.recorded.lock().unwrap_or_else(|e| e.into_inner());
            recorded.retain(|_, event| last_seen(event).is_some_and(|t| t + SERIES_TTL > now));
            recorded.get(&key).cloned()
        };
        let namespace = object.namespace.as_deref().unwrap_or("default");
        let events = Api::<K8sEvent>::namespaced(self.client.clone(), namespace);
        let written = match repeat {
            Some(mut event) => {
                let count = event.series.as_ref().map_or(2, |s| s.count + 1);
                event.series = Some(EventSeries {
                    count,
                    last_observed_time: MicroTime(now),
                });
                match events
                    .patch(
                        &event.name_any(),
                        &PatchParams::default(),
                        &Patch::Merge(&event),
                    )
                    .await
                {
                    Ok(_) => event,
                    // Deleted meanwhile (expired, or by hand): start anew.
                    Err(kube::Error::Api(status)) if status.code == 404 => {
                        let event = self.new_event(object, type_, reason, &note, action, now);
                        events.create(&PostParams::default(), &event).await?;
                        event
                    }
                    Err(error) => return Err(error),
                }
            }
            None => {
                let event = self.new_event(object, type_, reason, &note, action, now);
                events.create(&PostParams::default(), &event).await?;
                event
            }
        };
        self.recorded
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key, written);
        Ok(())
    }

    fn new_event(
        &self,
        object: &ObjectReference,
        type_: &str,
        reason: &str,
        note: &str,
        action: &str,
        now: Timestamp,
    ) -> K8sEvent {
        let prefix = object.name.as_deref().unwrap_or(&self.reporter.controller);
        K8sEvent {
            metadata: ObjectMeta {
                namespace: object.namespace.clone(),
                name: Some(format!("{prefix}.{:x}", now.as_nanosecond())),
                ..ObjectMeta::default()
            },
            event_time: Some(MicroTime(now)),
            type_: Some(type_.to_owned()),
            reason: Some(reason.to_owned()),
            note: Some(note.to_owned()),
            action: Some(action.to_owned()),
            regarding: Some(object.clone()),
            reporting_controller: Some(self.reporter.controller.clone()),
            reporting_instance: Some(
                self.reporter
                    .instance
                    .clone()
                    .unwrap_or_else(|| self.reporter.controller.clone()),
            ),
            ..K8sEvent::default()
        }
    }
}

/// When `event` was last seen: its series' last observation, else its time.
fn last_seen(event: &K8sEvent) -> Option<Timestamp> {
    event
        .series
        .as_ref()
        .map(|s| s.last_observed_time.0)
        .or_else(|| event.event_time.as_ref().map(|t| t.0))
}

fn regarding_key(object: &ObjectReference) -> String {
    let part = |p: &Option<String>| p.clone().unwrap_or_default();
    format!(
        "{}/{}/{}/{}/{}",
        part(&object.api_version),
        part(&object.kind),
        part(&object.namespace),
        part(&object.name),
        part(&object.uid)
    )
}

/// `text` cut to at most `max` bytes (on a character boundary), marked with `…` when cut.
pub fn truncate(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_note_is_cut_on_a_character_boundary_and_marked() {
        assert_eq!(truncate("short", 10), "short");
        assert_eq!(truncate("ééé", 3), "é…");
    }
}
