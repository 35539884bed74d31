//! Kubernetes Events the host records: on reconciled objects for their
//! plugins, and on bindings for their loads.
//!
//! One recorder per controller or supervisor, reporting as the operator
//! (`--reporter`) and this replica (`$POD_NAME`); notes are cut to what the
//! API server accepts.

use k8s_openapi::api::core::v1::ObjectReference;
use kube::Client;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};

/// The longest note recorded; the API server refuses longer ones.
const MAX_NOTE_BYTES: usize = 1024;

/// Records Events as the operator.
#[derive(Clone)]
pub struct EventRecorder {
    recorder: Recorder,
}

impl EventRecorder {
    /// A recorder reporting as `reporter`, from the replica named by
    /// `$POD_NAME` when it is set.
    pub fn new(client: Client, reporter: &str) -> Self {
        Self {
            recorder: Recorder::new(
                client,
                Reporter {
                    controller: reporter.to_owned(),
                    instance: std::env::var("POD_NAME").ok(),
                },
            ),
        }
    }

    /// Records an event about `object`; a note longer than the API server
    /// accepts is cut.
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
        let event = Event {
            type_,
            reason: reason.to_owned(),
            note: Some(truncate(note, MAX_NOTE_BYTES)),
            action: action.to_owned(),
            secondary: None,
        };
        self.recorder.publish(&event, object).await
    }
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
