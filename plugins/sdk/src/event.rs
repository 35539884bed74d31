//! Kubernetes events a plugin asks the host to record.

/// The severity of an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    /// Something worth knowing happened.
    Normal,
    /// Something went wrong or needs attention.
    Warning,
}

/// An event the host records on the reconciled object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// Normal or Warning.
    pub event_type: EventType,
    /// Machine-readable, UpperCamelCase (`Created`, `MessageChanged`).
    pub reason: String,
    /// Human-readable description. Never put secrets here.
    pub note: String,
    /// What the plugin did or failed to do (`Reconcile`, `CreateDatabase`).
    pub action: String,
}

impl Event {
    /// A Normal event.
    #[must_use]
    pub fn normal(
        reason: impl Into<String>,
        action: impl Into<String>,
        note: impl Into<String>,
    ) -> Self {
        Self::new(EventType::Normal, reason, action, note)
    }

    /// A Warning event.
    #[must_use]
    pub fn warning(
        reason: impl Into<String>,
        action: impl Into<String>,
        note: impl Into<String>,
    ) -> Self {
        Self::new(EventType::Warning, reason, action, note)
    }

    fn new(
        event_type: EventType,
        reason: impl Into<String>,
        action: impl Into<String>,
        note: impl Into<String>,
    ) -> Self {
        Self {
            event_type,
            reason: reason.into(),
            note: note.into(),
            action: action.into(),
        }
    }
}
