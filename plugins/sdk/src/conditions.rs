//! Status conditions following the Kubernetes conventions.
//!
//! A condition's `lastTransitionTime` changes only when its `status` changes,
//! so a plugin that makes the same decision twice produces identical status
//! and the host skips the write.

use std::time::SystemTime;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::object::Object;

/// The condition type most controllers report: whether the object is ready.
pub const READY: &str = "Ready";

/// The status of a condition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ConditionStatus {
    /// The condition holds.
    True,
    /// The condition does not hold.
    False,
    /// It is not known whether the condition holds.
    Unknown,
}

impl ConditionStatus {
    /// The wire form: `True`, `False` or `Unknown`.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::True => "True",
            Self::False => "False",
            Self::Unknown => "Unknown",
        }
    }
}

impl From<bool> for ConditionStatus {
    fn from(value: bool) -> Self {
        if value { Self::True } else { Self::False }
    }
}

/// One condition, as it appears in `.status.conditions`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    /// The condition type, UpperCamelCase (`Ready`).
    #[serde(rename = "type")]
    pub type_: String,
    /// Whether it holds.
    pub status: ConditionStatus,
    /// Machine-readable, UpperCamelCase reason for the last change (`Reconciled`).
    pub reason: String,
    /// Human-readable detail. Never put secrets here.
    pub message: String,
    /// RFC 3339 time the status last changed; filled in by [`Conditions::set`].
    pub last_transition_time: String,
    /// The `metadata.generation` the condition was computed from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

impl Condition {
    /// A condition; [`Conditions::set`] fills in the time and generation.
    #[must_use]
    pub fn new(
        type_: impl Into<String>,
        status: impl Into<ConditionStatus>,
        reason: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Self {
            type_: type_.into(),
            status: status.into(),
            reason: reason.into(),
            message: message.into(),
            last_transition_time: String::new(),
            observed_generation: None,
        }
    }

    /// `Ready=True` with `reason` and `message`.
    #[must_use]
    pub fn ready(reason: impl Into<String>, message: impl Into<String>) -> Self {
        Self::new(READY, ConditionStatus::True, reason, message)
    }

    /// `Ready=False` with `reason` and `message`.
    #[must_use]
    pub fn not_ready(reason: impl Into<String>, message: impl Into<String>) -> Self {
        Self::new(READY, ConditionStatus::False, reason, message)
    }
}

/// The conditions of an object's status, starting from the ones it has now.
///
/// Conditions of other types are kept as they are, in their order.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
#[serde(transparent)]
pub struct Conditions {
    conditions: Vec<Value>,
    #[serde(skip)]
    generation: Option<i64>,
}

impl Conditions {
    /// The conditions currently in `object`'s `.status.conditions`, stamped
    /// with its `metadata.generation` when set.
    #[must_use]
    pub fn from_object(object: &Object) -> Self {
        let conditions = object
            .pointer("/status/conditions")
            .and_then(Value::as_array)
            .map(|all| {
                all.iter()
                    .filter(|c| c.get("type").is_some_and(Value::is_string))
                    .cloned()
                    .collect()
            })
            .unwrap_or_default();
        Self {
            conditions,
            generation: object.generation(),
        }
    }

    /// Sets a condition, replacing the one of the same type. Its
    /// `lastTransitionTime` is kept when the status did not change, else set
    /// to `now` (seconds precision); `observedGeneration` is the object's
    /// generation.
    #[must_use]
    pub fn set(mut self, mut condition: Condition, now: SystemTime) -> Self {
        let existing = self
            .conditions
            .iter()
            .position(|c| c.get("type").and_then(Value::as_str) == Some(condition.type_.as_str()));
        let kept_time = existing
            .map(|index| &self.conditions[index])
            .filter(|old| {
                old.get("status").and_then(Value::as_str) == Some(condition.status.as_str())
            })
            .and_then(|old| old.get("lastTransitionTime").and_then(Value::as_str))
            .map(str::to_owned);
        condition.last_transition_time =
            kept_time.unwrap_or_else(|| humantime::format_rfc3339_seconds(now).to_string());
        condition.observed_generation = self.generation;
        let value = serde_json::to_value(&condition).unwrap_or(Value::Null);
        match existing {
            Some(index) => self.conditions[index] = value,
            None => self.conditions.push(value),
        }
        self
    }

    /// Removes the condition of `type_`, for a condition that only exists
    /// while something holds (a warning that no longer applies).
    #[must_use]
    pub fn remove(mut self, type_: &str) -> Self {
        self.conditions
            .retain(|c| c.get("type").and_then(Value::as_str) != Some(type_));
        self
    }

    /// The condition of `type_`, if present and well-formed.
    #[must_use]
    pub fn get(&self, type_: &str) -> Option<Condition> {
        self.conditions
            .iter()
            .find(|c| c.get("type").and_then(Value::as_str) == Some(type_))
            .and_then(|c| serde_json::from_value(c.clone()).ok())
    }

    /// The conditions as the JSON array for `.status.conditions`.
    #[must_use]
    pub fn into_value(self) -> Value {
        Value::Array(self.conditions)
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use serde_json::json;

    use super::*;

    fn at(seconds: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(seconds)
    }

    fn object_with(conditions: Value) -> Object {
        Object::new(json!({"metadata": {"generation": 4}, "status": {"conditions": conditions}}))
    }

    #[test]
    fn new_condition_gets_now_and_the_generation() {
        let conditions = Conditions::from_object(&object_with(json!([])))
            .set(Condition::ready("Reconciled", "ok"), at(86_400));
        assert_eq!(
            conditions.into_value(),
            json!([{
                "type": "Ready", "status": "True", "reason": "Reconciled", "message": "ok",
                "lastTransitionTime": "1970-01-02T00:00:00Z", "observedGeneration": 4
            }])
        );
    }

    #[test]
    fn unchanged_status_keeps_the_transition_time() {
        let object = object_with(json!([{
            "type": "Ready", "status": "True", "reason": "Old", "message": "old",
            "lastTransitionTime": "2020-01-01T00:00:00Z", "observedGeneration": 3
        }]));
        let ready = Conditions::from_object(&object)
            .set(Condition::ready("Reconciled", "ok"), at(0))
            .get(READY)
            .unwrap();
        assert_eq!(ready.last_transition_time, "2020-01-01T00:00:00Z");
        assert_eq!(ready.reason, "Reconciled");
        assert_eq!(ready.observed_generation, Some(4));
    }

    #[test]
    fn changed_status_moves_the_transition_time_and_keeps_other_types() {
        let object = object_with(json!([
            {"type": "Synced", "status": "True", "reason": "X", "message": "", "lastTransitionTime": "2020-01-01T00:00:00Z"},
            {"type": "Ready", "status": "True", "reason": "Old", "message": "", "lastTransitionTime": "2020-01-01T00:00:00Z"}
        ]));
        let conditions =
            Conditions::from_object(&object).set(Condition::not_ready("Failed", "no"), at(0));
        assert_eq!(
            conditions.get(READY).unwrap().last_transition_time,
            "1970-01-01T00:00:00Z"
        );
        assert_eq!(conditions.get("Synced").unwrap().reason, "X");
        assert_eq!(
            conditions.into_value().as_array().unwrap()[0]["type"],
            "Synced"
        );
    }

    #[test]
    fn remove_drops_only_that_type() {
        let object = object_with(json!([
            {"type": "SpecIgnored", "status": "True", "reason": "X", "message": "", "lastTransitionTime": "2020-01-01T00:00:00Z"},
            {"type": "Ready", "status": "True", "reason": "Ok", "message": "", "lastTransitionTime": "2020-01-01T00:00:00Z"}
        ]));
        let conditions = Conditions::from_object(&object).remove("SpecIgnored");
        assert!(conditions.get("SpecIgnored").is_none());
        assert_eq!(conditions.get(READY).unwrap().reason, "Ok");
        assert_eq!(
            conditions
                .remove("Absent")
                .into_value()
                .as_array()
                .unwrap()
                .len(),
            1
        );
    }
}
