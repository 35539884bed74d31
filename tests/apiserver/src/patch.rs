//! Merge patch, JSON patch (with the apiserver's null-`test` rule) and strategic merge.

use serde_json::{Map, Value};

use crate::error::ApiError;

/// The patch flavours kube and kubectl send, from the request's `Content-Type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchKind {
    /// `application/merge-patch+json` (RFC 7386).
    Merge,
    /// `application/json-patch+json` (RFC 6902).
    Json,
    /// `application/strategic-merge-patch+json`.
    Strategic,
    /// `application/apply-patch+yaml`: server-side apply.
    Apply,
}

impl PatchKind {
    /// Recognises a content type.
    pub fn from_content_type(content_type: &str) -> Option<Self> {
        let mime = content_type.split(';').next().unwrap_or("").trim();
        match mime {
            "application/merge-patch+json" => Some(Self::Merge),
            "application/json-patch+json" => Some(Self::Json),
            "application/strategic-merge-patch+json" => Some(Self::Strategic),
            "application/apply-patch+yaml" | "application/apply-patch+json" => Some(Self::Apply),
            _ => None,
        }
    }
}

/// RFC 7386 merge patch.
pub fn merge(target: &mut Value, patch: &Value) {
    json_patch::merge(target, patch);
}

/// RFC 6902 JSON patch. A `test` whose value is `null` passes when the path is missing,
/// as on a real apiserver (kube's finalizer helper relies on it).
pub fn json(target: &mut Value, patch: &Value) -> Result<(), ApiError> {
    let ops = patch
        .as_array()
        .ok_or_else(|| ApiError::bad_request("json patch must be an array of operations"))?;
    let kept: Vec<Value> = ops
        .iter()
        .filter(|op| {
            let null_test = op.get("op").and_then(Value::as_str) == Some("test")
                && op.get("value").is_none_or(Value::is_null);
            let path = op.get("path").and_then(Value::as_str).unwrap_or("");
            !(null_test && target.pointer(path).is_none_or(Value::is_null))
        })
        .cloned()
        .collect();
    let parsed: json_patch::Patch = serde_json::from_value(Value::Array(kept))
        .map_err(|e| ApiError::bad_request(format!("invalid json patch: {e}")))?;
    json_patch::patch(target, &parsed).map_err(|e| {
        ApiError::unprocessable(format!(
            "the server rejected our request due to an error in our request: {e}"
        ))
    })
}

/// Strategic merge patch, approximated: a merge patch in which lists of objects that carry
/// a well-known merge key (`name`, `type`, `containerPort`, `uid`, …) merge by that key,
/// `$patch: delete` items are removed and `$setElementOrder`/`$retainKeys` directives are dropped.
pub fn strategic(target: &mut Value, patch: &Value) {
    let Some(patch_map) = patch.as_object() else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    let target_map = target.as_object_mut().expect("object");
    for (key, value) in patch_map {
        if key.starts_with("$setElementOrder/") || key == "$retainKeys" || key == "$patch" {
            continue;
        }
        match value {
            Value::Null => {
                target_map.remove(key);
            }
            Value::Object(_) => {
                strategic(target_map.entry(key.clone()).or_insert(Value::Null), value)
            }
            Value::Array(items) => match (merge_key(items), target_map.get_mut(key)) {
                (Some(mk), Some(Value::Array(existing))) => merge_list(existing, items, mk),
                _ => {
                    let cleaned: Vec<Value> = items
                        .iter()
                        .filter(|i| !is_delete_directive(i))
                        .cloned()
                        .collect();
                    target_map.insert(key.clone(), Value::Array(cleaned));
                }
            },
            _ => {
                target_map.insert(key.clone(), value.clone());
            }
        }
    }
}

const MERGE_KEYS: &[&str] = &[
    "name",
    "type",
    "containerPort",
    "port",
    "uid",
    "mountPath",
    "devicePath",
    "ip",
];

fn merge_key(items: &[Value]) -> Option<&'static str> {
    let first = items.first()?.as_object()?;
    MERGE_KEYS
        .iter()
        .copied()
        .find(|k| first.contains_key(*k) && items.iter().all(|i| i.get(k).is_some()))
}

fn is_delete_directive(item: &Value) -> bool {
    item.get("$patch").and_then(Value::as_str) == Some("delete")
}

fn merge_list(existing: &mut Vec<Value>, items: &[Value], mk: &str) {
    for item in items {
        let position = existing.iter().position(|e| e.get(mk) == item.get(mk));
        match (position, is_delete_directive(item)) {
            (Some(i), true) => {
                existing.remove(i);
            }
            (None, true) => {}
            (Some(i), false) => strategic(&mut existing[i], item),
            (None, false) => {
                let mut fresh = Value::Object(Map::new());
                strategic(&mut fresh, item);
                existing.push(fresh);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn null_test_on_a_missing_path_passes() {
        let mut target = json!({"metadata": {"name": "a"}});
        let patch = json!([
            {"op": "test", "path": "/metadata/finalizers", "value": null},
            {"op": "add", "path": "/metadata/finalizers", "value": ["x"]},
        ]);
        json(&mut target, &patch).unwrap();
        assert_eq!(target["metadata"]["finalizers"], json!(["x"]));
    }

    #[test]
    fn failed_test_is_unprocessable() {
        let mut target = json!({"metadata": {"finalizers": ["x"]}});
        let patch = json!([{"op": "test", "path": "/metadata/finalizers/0", "value": "y"}]);
        assert_eq!(json(&mut target, &patch).unwrap_err().code, 422);
    }

    #[test]
    fn strategic_merge_merges_containers_by_name() {
        let mut target = json!({"spec": {"containers": [{"name": "a", "image": "1"}, {"name": "b", "image": "1"}]}});
        let patch = json!({"spec": {"containers": [{"name": "b", "image": "2"}, {"name": "a", "$patch": "delete"}]}});
        strategic(&mut target, &patch);
        assert_eq!(
            target,
            json!({"spec": {"containers": [{"name": "b", "image": "2"}]}})
        );
    }
}
