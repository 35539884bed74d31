//! What a plugin receives for one object and the decision it returns.

use std::time::Duration;

use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::event::Event;
use crate::kind::GroupVersionKind;
use crate::object::{DecodeError, DecodeTarget, Object, decode};
use crate::sql::SqlPlan;

/// Everything the host gathered for one reconcile or finalize call.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    /// The object being reconciled.
    pub object: Object,
    /// Its existing children of the declared child kinds.
    pub children: Vec<Object>,
    /// The binding's settings, already validated against the settings schema.
    pub settings: Value,
    /// The database servers this plugin may query and plan against (`namespace/name`).
    pub servers: Vec<String>,
}

impl Request {
    /// A request for `object` with no children, `{}` settings and no servers.
    #[must_use]
    pub fn new(object: impl Into<Object>) -> Self {
        Self {
            object: object.into(),
            children: Vec::new(),
            settings: Value::Object(serde_json::Map::new()),
            servers: Vec::new(),
        }
    }

    /// Adds an existing child (for tests).
    #[must_use]
    pub fn with_child(mut self, child: impl Into<Object>) -> Self {
        self.children.push(child.into());
        self
    }

    /// Sets the binding's settings (for tests).
    #[must_use]
    pub fn with_settings(mut self, settings: Value) -> Self {
        self.settings = settings;
        self
    }

    /// Adds a granted server (for tests).
    #[must_use]
    pub fn with_server(mut self, server: impl Into<String>) -> Self {
        self.servers.push(server.into());
        self
    }

    /// Deserializes the settings into `T`.
    ///
    /// # Errors
    /// A [`DecodeError`] naming the field path (`settings.defaultAudience: …`);
    /// `?` makes it a non-retryable `InvalidSettings` error.
    pub fn settings_as<T: DeserializeOwned>(&self) -> Result<T, DecodeError> {
        decode(&self.settings, DecodeTarget::Settings, "settings")
    }

    /// The existing child of `kind` named `name`, if any.
    #[must_use]
    pub fn existing_child(&self, kind: &GroupVersionKind, name: &str) -> Option<&Object> {
        self.children
            .iter()
            .find(|child| child.name() == name && child.gvk() == *kind)
    }
}

/// A plugin's decision for one object.
#[derive(Debug, Clone, PartialEq, Default)]
#[must_use]
pub struct Response {
    /// The complete desired set of children; existing children of declared
    /// kinds not listed here are deleted by the host.
    pub children: Vec<Value>,
    /// The desired `.status`, or none to leave it unchanged.
    pub status: Option<Value>,
    /// SQL to run, in order, before the children are applied.
    pub sql: Vec<SqlPlan>,
    /// Events to record on the object.
    pub events: Vec<Event>,
    /// Reconcile again after this long even if nothing changes.
    pub requeue_after: Option<Duration>,
}

impl Response {
    /// A decision with no children, no status change, no SQL and no events.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a desired child (build it with [`ChildBuilder`](crate::ChildBuilder)).
    pub fn child(mut self, child: Value) -> Self {
        self.children.push(child);
        self
    }

    /// Sets the desired `.status`.
    pub fn status(mut self, status: Value) -> Self {
        self.status = Some(status);
        self
    }

    /// Adds an SQL plan; empty plans are dropped.
    pub fn sql(mut self, plan: SqlPlan) -> Self {
        if !plan.is_empty() {
            self.sql.push(plan);
        }
        self
    }

    /// Adds an event.
    pub fn event(mut self, event: Event) -> Self {
        self.events.push(event);
        self
    }

    /// Asks to be called again after `after` (whole milliseconds).
    pub fn requeue_after(mut self, after: Duration) -> Self {
        self.requeue_after = Some(after);
        self
    }
}

/// A plugin's decision while its object is being deleted.
#[derive(Debug, Clone, PartialEq, Default)]
#[must_use]
pub struct FinalizeResponse {
    /// Cleanup is complete; the host may remove its finalizer.
    pub done: bool,
    /// SQL to run, in order.
    pub sql: Vec<SqlPlan>,
    /// Events to record on the object.
    pub events: Vec<Event>,
    /// When not done: ask again after this long.
    pub requeue_after: Option<Duration>,
}

impl FinalizeResponse {
    /// Cleanup is complete (after running any SQL added to this response).
    pub fn done() -> Self {
        Self {
            done: true,
            ..Self::default()
        }
    }

    /// Cleanup is not complete yet; ask again after `after`.
    pub fn pending(after: Duration) -> Self {
        Self {
            done: false,
            requeue_after: Some(after),
            ..Self::default()
        }
    }

    /// Adds an SQL plan; empty plans are dropped.
    pub fn sql(mut self, plan: SqlPlan) -> Self {
        if !plan.is_empty() {
            self.sql.push(plan);
        }
        self
    }

    /// Adds an event.
    pub fn event(mut self, event: Event) -> Self {
        self.events.push(event);
        self
    }
}
