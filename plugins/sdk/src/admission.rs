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

impl AdmissionRequest {
    /// A request for `operation` on `object` (no old object) by user
    /// `test`, not a dry run, with settings `{}`: for native tests; set the
    /// fields for anything else.
    #[must_use]
    pub fn new(operation: Operation, object: Value) -> Self {
        Self {
            operation,
            object: Some(Object::new(object)),
            old_object: None,
            user: "test".into(),
            dry_run: false,
            settings: Value::Object(serde_json::Map::new()),
        }
    }
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

/// Which admission requests for its target kind a plugin is called for: the
/// operations, a label selector on the object and CEL match conditions, as
/// in a webhook configuration (`rules[].operations`, `objectSelector`,
/// `matchConditions`). The API server filters with them, so requests the
/// plugin would ignore never reach it.
///
/// The default is creates and updates of every object.
///
/// ```
/// use wasm_operator_sdk::{AdmissionScope, Operation};
///
/// let scope = AdmissionScope::on([Operation::Create])
///     .object_selector("app=web")
///     .match_condition("annotated", "has(object.metadata.annotations)");
/// assert_eq!(scope.operations, [Operation::Create]);
/// assert_eq!(AdmissionScope::default().operations, [Operation::Create, Operation::Update]);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use]
pub struct AdmissionScope {
    /// The operations to be called for; at least one.
    pub operations: Vec<Operation>,
    /// A label selector on the object (`app=web,tier!=cache`); empty: every object.
    pub object_selector: String,
    /// CEL conditions that must all hold for the plugin to be called.
    pub match_conditions: Vec<MatchCondition>,
}

impl Default for AdmissionScope {
    fn default() -> Self {
        Self::on([Operation::Create, Operation::Update])
    }
}

impl AdmissionScope {
    /// Called for `operations`, on every object, without conditions.
    pub fn on(operations: impl IntoIterator<Item = Operation>) -> Self {
        Self {
            operations: operations.into_iter().collect(),
            object_selector: String::new(),
            match_conditions: Vec::new(),
        }
    }

    /// Called only for objects whose labels match `selector`.
    pub fn object_selector(mut self, selector: impl Into<String>) -> Self {
        self.object_selector = selector.into();
        self
    }

    /// Called only when the CEL `expression` holds (`object`, `oldObject`,
    /// `request` and `authorizer` are in scope). `name` is unique among the
    /// conditions, a qualified name such as a label key (`annotated`).
    pub fn match_condition(
        mut self,
        name: impl Into<String>,
        expression: impl Into<String>,
    ) -> Self {
        self.match_conditions.push(MatchCondition {
            name: name.into(),
            expression: expression.into(),
        });
        self
    }
}

/// A CEL condition of an [`AdmissionScope`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MatchCondition {
    /// Unique among the scope's conditions.
    pub name: String,
    /// The CEL expression.
    pub expression: String,
}
