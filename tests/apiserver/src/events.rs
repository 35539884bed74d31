//! core/v1 Events and events.k8s.io/v1 Events as two views of the same stored objects, as
//! in kube-apiserver: both are served from one storage (core form here, as the real
//! server stores `v1.Event`), and the events.k8s.io view is converted on the way in and out
//! (`pkg/apis/events/v1/conversion.go`).

use std::borrow::Cow;

use serde_json::{Map, Value};

use crate::registry::ResourceType;

/// events.k8s.io field ↔ core/v1 field, for the fields whose names differ. `reason`,
/// `type`, `eventTime`, `series`, `action`, `related` and `reportingInstance` share names.
const RENAMED: [(&str, &str); 7] = [
    ("regarding", "involvedObject"),
    ("note", "message"),
    ("reportingController", "reportingComponent"),
    ("deprecatedSource", "source"),
    ("deprecatedFirstTimestamp", "firstTimestamp"),
    ("deprecatedLastTimestamp", "lastTimestamp"),
    ("deprecatedCount", "count"),
];

/// Whether `rt` is the events.k8s.io view of the core Events storage.
pub fn is_events_view(rt: &ResourceType) -> bool {
    rt.group == "events.k8s.io" && rt.plural == "events"
}

fn rename(object: &Value, to_view: bool) -> Value {
    let Value::Object(fields) = object else {
        return object.clone();
    };
    let mut out = Map::new();
    for (key, value) in fields {
        let renamed = RENAMED.iter().find_map(|(view, core)| {
            let (from, to) = if to_view { (core, view) } else { (view, core) };
            (key == from).then_some(*to)
        });
        // A field of the other form's name that this form does not have is dropped, as a
        // typed decoder would.
        let foreign = RENAMED.iter().any(|(view, core)| {
            let other = if to_view { view } else { core };
            key == other
        });
        match renamed {
            Some(name) => {
                out.insert(name.to_string(), value.clone());
            }
            None if !foreign => {
                out.insert(key.clone(), value.clone());
            }
            None => {}
        }
    }
    Value::Object(out)
}

/// The stored (core/v1) object as `rt` shows it.
pub fn to_view<'a>(rt: &ResourceType, stored: &'a Value) -> Cow<'a, Value> {
    if is_events_view(rt) {
        Cow::Owned(rename(stored, true))
    } else {
        Cow::Borrowed(stored)
    }
}

/// An object written through `rt` in its stored (core/v1) form.
pub fn from_view(rt: &ResourceType, object: Value) -> Value {
    if is_events_view(rt) {
        let mut core = rename(&object, false);
        if core.get("apiVersion").is_some() {
            core["apiVersion"] = Value::from("v1");
        }
        core
    } else {
        object
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::registry::Registry;

    #[test]
    fn the_two_forms_convert_both_ways() {
        let registry = Registry::with_builtins();
        let view = registry
            .get("events.k8s.io", "v1", "events")
            .expect("events.k8s.io");
        let event = json!({
            "apiVersion": "events.k8s.io/v1", "kind": "Event", "metadata": { "name": "e" },
            "regarding": { "kind": "Database", "name": "foo-db" }, "note": "created",
            "reportingController": "wasm-operator", "reportingInstance": "pod-1",
            "series": { "count": 2, "lastObservedTime": "2025-01-01T00:00:00.000000Z" },
            "deprecatedCount": 3, "reason": "Created", "type": "Normal",
        });
        let core = from_view(&view, event.clone());
        assert_eq!(core["involvedObject"]["name"], "foo-db");
        assert_eq!(core["message"], "created");
        assert_eq!(core["reportingComponent"], "wasm-operator");
        assert_eq!(
            (core["count"].clone(), core["series"]["count"].clone()),
            (json!(3), json!(2))
        );
        assert_eq!(core["apiVersion"], "v1");
        assert!(core.get("note").is_none() && core.get("regarding").is_none());
        let mut back = to_view(&view, &core).into_owned();
        back["apiVersion"] = json!("events.k8s.io/v1");
        assert_eq!(back, event);
    }
}
