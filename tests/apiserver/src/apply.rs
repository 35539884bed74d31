//! Server-side apply and `managedFields`: per-manager field ownership, conflicts, removal of
//! fields a manager stopped applying, and list-map merging by key.

use serde_json::{Map, Value, json};

use crate::error::ApiError;
use crate::fieldset::{
    FieldSet, ListKind, Path, Pe, child_schema, fields_of, item_key, list_kind, lookup, owned_part,
    path_string, remove_path,
};
use crate::managed_fields::{read_entries, set_entry, write_entries};
use crate::registry::ResourceType;

fn merge_applied(target: &mut Value, applied: &Value, schema: Option<&Value>, field: &str) {
    match applied {
        Value::Object(map) => {
            if !target.is_object() {
                *target = Value::Object(Map::new());
            }
            let t = target.as_object_mut().expect("object");
            for (k, v) in map {
                merge_applied(
                    t.entry(k.clone()).or_insert(Value::Null),
                    v,
                    child_schema(schema, k),
                    k,
                );
            }
        }
        Value::Array(items) => {
            let kind = list_kind(schema, field, items);
            let existing = target.as_array_mut();
            match (kind, existing) {
                (ListKind::Map(keys), Some(existing)) => {
                    for item in items {
                        let k = item_key(item, &keys);
                        match existing.iter_mut().find(|e| item_key(e, &keys) == k) {
                            Some(e) => {
                                merge_applied(e, item, schema.and_then(|s| s.get("items")), "")
                            }
                            None => existing.push(item.clone()),
                        }
                    }
                }
                (ListKind::Set, Some(existing)) => {
                    for item in items {
                        if !existing.contains(item) {
                            existing.push(item.clone());
                        }
                    }
                }
                _ => *target = applied.clone(),
            }
        }
        _ => *target = applied.clone(),
    }
}

/// Who applies, and how.
pub struct Applier<'a> {
    /// `fieldManager`.
    pub manager: &'a str,
    /// `force=true`: take ownership instead of answering 409.
    pub force: bool,
    /// Whether this is an apply to `/status`.
    pub status: bool,
}

/// Server-side apply of `applied` onto `current` (or onto nothing, creating the object).
/// Returns the merged object with updated `managedFields`.
///
/// # Errors
/// 409 `Conflict` listing the fields another manager owns with a different value, unless forced.
pub fn apply(
    current: Option<&Value>,
    applied: &Value,
    rt: &ResourceType,
    who: &Applier<'_>,
) -> Result<Value, ApiError> {
    let subresource = if who.status { "status" } else { "" };
    let schema = rt.schema.as_ref();
    let mut entries = read_entries(current);
    let mut object = current.cloned().unwrap_or_else(|| {
        json!({ "apiVersion": rt.api_version(), "kind": rt.kind, "metadata": applied.get("metadata").cloned().unwrap_or(json!({})) })
    });
    let part = owned_part(applied, rt, who.status);
    let applied_fields = fields_of(applied, rt, who.status);

    let mut conflicts = Vec::new();
    for entry in entries.iter_mut().filter(|e| e.manager != who.manager) {
        let taken: Vec<Path> = entry
            .fields
            .iter()
            .filter(|p| applied_fields.contains(*p) && matches!(p.last(), Some(Pe::Field(_))))
            .filter(|p| lookup(&object, p, schema) != lookup(&part, p, schema))
            .cloned()
            .collect();
        for p in taken {
            if who.force {
                entry.fields.remove(&p);
            } else {
                conflicts.push((entry.manager.clone(), path_string(&p)));
            }
        }
    }
    if !conflicts.is_empty() {
        return Err(ApiError::apply_conflict(&conflicts));
    }

    let previous: FieldSet = entries
        .iter()
        .find(|e| {
            e.manager == who.manager && e.operation == "Apply" && e.subresource == subresource
        })
        .map(|e| e.fields.clone())
        .unwrap_or_default();
    let others: FieldSet = entries
        .iter()
        .filter(|e| {
            !(e.manager == who.manager && e.operation == "Apply" && e.subresource == subresource)
        })
        .flat_map(|e| e.fields.iter().cloned())
        .collect();
    // Parents come before their descendants in this order: removing a list item removes its fields.
    let mut removed: Vec<&Path> = Vec::new();
    for gone in previous.difference(&applied_fields) {
        let shared = others.iter().any(|o| o.starts_with(gone));
        if !shared && !removed.iter().any(|r| gone.starts_with(r)) {
            remove_path(&mut object, gone);
            removed.push(gone);
        }
    }
    merge_applied(&mut object, &part, schema, "");
    set_entry(
        &mut entries,
        who.manager,
        "Apply",
        subresource,
        &rt.api_version(),
        applied_fields,
    );
    write_entries(&mut object, entries);
    Ok(object)
}

/// Records a non-apply write (create, update, patch) by `manager` in `new`'s `managedFields`:
/// fields it changed become its own and leave other managers; removed fields leave everyone.
pub fn record_update(
    old: Option<&Value>,
    new: &mut Value,
    rt: &ResourceType,
    manager: &str,
    status: bool,
) {
    let schema = rt.schema.as_ref();
    let mut entries = read_entries(old);
    let old_fields = old.map(|o| fields_of(o, rt, status)).unwrap_or_default();
    let new_fields = fields_of(new, rt, status);
    let empty = json!({});
    let old_obj = old.unwrap_or(&empty);
    let changed: FieldSet = new_fields
        .iter()
        .filter(|p| {
            !old_fields.contains(*p) || lookup(old_obj, p, schema) != lookup(new, p, schema)
        })
        .cloned()
        .collect();
    let removed: FieldSet = old_fields.difference(&new_fields).cloned().collect();
    if changed.is_empty() && removed.is_empty() {
        write_entries(new, entries);
        return;
    }
    let subresource = if status { "status" } else { "" };
    for entry in &mut entries {
        let mine = entry.manager == manager
            && entry.operation == "Update"
            && entry.subresource == subresource;
        entry.fields.retain(|p| {
            !removed.iter().any(|r| p.starts_with(r)) && (mine || !changed.contains(p))
        });
    }
    let mut mine: FieldSet = entries
        .iter()
        .find(|e| e.manager == manager && e.operation == "Update" && e.subresource == subresource)
        .map(|e| e.fields.clone())
        .unwrap_or_default();
    mine.extend(changed);
    set_entry(
        &mut entries,
        manager,
        "Update",
        subresource,
        &rt.api_version(),
        mine,
    );
    write_entries(new, entries);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::managed_fields::{decode_fields, encode_fields};

    fn crd_type() -> ResourceType {
        ResourceType {
            group: "example.com".into(),
            version: "v1".into(),
            plural: "things".into(),
            singular: "thing".into(),
            kind: "Thing".into(),
            namespaced: true,
            short_names: vec![],
            status: true,
            schema: Some(
                json!({"type": "object", "properties": {"spec": {"type": "object", "properties": {
                "a": {"type": "string"}, "b": {"type": "string"},
                "ports": {"type": "array", "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"],
                          "items": {"type": "object", "properties": {"name": {"type": "string"}, "port": {"type": "integer"}}}}}}}}),
            ),
            custom: true,
            printer_columns: Vec::new(),
        }
    }

    #[test]
    fn fields_round_trip_through_fields_v1() {
        let rt = crd_type();
        let fields = fields_of(
            &json!({"spec": {"a": "x", "ports": [{"name": "http", "port": 80}]}}),
            &rt,
            false,
        );
        let mut decoded = FieldSet::new();
        decode_fields(&encode_fields(&fields), &mut Vec::new(), &mut decoded);
        decoded.remove(&Vec::new());
        assert_eq!(decoded, fields);
    }

    #[test]
    fn a_manager_that_stops_applying_a_field_removes_it() {
        let rt = crd_type();
        let who = Applier {
            manager: "m",
            force: false,
            status: false,
        };
        let first = apply(
            None,
            &json!({"metadata": {"name": "t"}, "spec": {"a": "1", "b": "2"}}),
            &rt,
            &who,
        )
        .unwrap();
        let second = apply(
            Some(&first),
            &json!({"metadata": {"name": "t"}, "spec": {"a": "1"}}),
            &rt,
            &who,
        )
        .unwrap();
        assert_eq!(second["spec"], json!({"a": "1"}));
    }

    #[test]
    fn list_map_items_from_two_managers_merge_by_key() {
        let rt = crd_type();
        let one = Applier {
            manager: "one",
            force: false,
            status: false,
        };
        let two = Applier {
            manager: "two",
            force: false,
            status: false,
        };
        let first = apply(
            None,
            &json!({"spec": {"ports": [{"name": "a", "port": 1}]}}),
            &rt,
            &one,
        )
        .unwrap();
        let second = apply(
            Some(&first),
            &json!({"spec": {"ports": [{"name": "b", "port": 2}]}}),
            &rt,
            &two,
        )
        .unwrap();
        assert_eq!(
            second["spec"]["ports"],
            json!([{"name": "a", "port": 1}, {"name": "b", "port": 2}])
        );
    }
}
