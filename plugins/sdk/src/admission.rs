//! Admission decisions: validating and mutating the plugin's target kind.

use serde_json::Value;

use crate::object::Object;

/// The operation being admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    /// A new object.
    Create,
    /// A change to an existing object.
    Update,
    /// A deletion.
    Delete,
    /// A connect (exec, attach, port-forward).
    Connect,
}

/// An admission request for the plugin's target kind.
#[derive(Debug, Clone, PartialEq)]
pub struct AdmissionRequest {
    /// What is being done.
    pub operation: Operation,
    /// The object as submitted (none on delete).
    pub object: Option<Object>,
    /// The object before the change (update and delete).
    pub old_object: Option<Object>,
    /// The requesting user's name.
    pub user: String,
    /// Whether this is a dry run.
    pub dry_run: bool,
    /// The binding's settings.
    pub settings: Value,
}

/// A validating decision.
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use]
pub struct Validation {
    /// Whether the request is allowed.
    pub allowed: bool,
    /// Why it was denied; shown to the user.
    pub message: Option<String>,
    /// Warnings shown to the user either way.
    pub warnings: Vec<String>,
}

impl Validation {
    /// Allows the request.
    pub fn allow() -> Self {
        Self {
            allowed: true,
            message: None,
            warnings: Vec::new(),
        }
    }

    /// Denies the request, telling the user why.
    pub fn deny(message: impl Into<String>) -> Self {
        Self {
            allowed: false,
            message: Some(message.into()),
            warnings: Vec::new(),
        }
    }

    /// Adds a warning.
    pub fn warning(mut self, warning: impl Into<String>) -> Self {
        self.warnings.push(warning.into());
        self
    }
}

/// A mutating decision.
#[derive(Debug, Clone, PartialEq, Default)]
#[must_use]
pub struct Mutation {
    /// The object as it should be stored, or none for no change; the host
    /// computes the JSON patch.
    pub object: Option<Value>,
    /// Warnings shown to the user.
    pub warnings: Vec<String>,
}

impl Mutation {
    /// Leaves the object as submitted.
    pub fn unchanged() -> Self {
        Self::default()
    }

    /// Stores `object` instead of the submitted one.
    pub fn replace(object: Value) -> Self {
        Self {
            object: Some(object),
            warnings: Vec::new(),
        }
    }

    /// Adds a warning.
    pub fn warning(mut self, warning: impl Into<String>) -> Self {
        self.warnings.push(warning.into());
        self
    }
}
