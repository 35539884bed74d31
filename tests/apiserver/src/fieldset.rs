//! Field paths and field sets: which fields a value sets, how lists are keyed (schema or
//! well-known keys), and how to look up or remove one field.

use std::collections::BTreeSet;

use serde_json::{Map, Value};

use crate::registry::ResourceType;

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Pe {
    /// `f:name`: a map field.
    Field(String),
    /// `k:{...}`: a list-map item by its keys (JSON).
    Key(String),
    /// `v:...`: a set item by value (JSON).
    Val(String),
}

pub type Path = Vec<Pe>;
pub type FieldSet = BTreeSet<Path>;

pub enum ListKind {
    Atomic,
    Set,
    Map(Vec<String>),
}

/// Well-known list-map keys of built-in kinds (which carry no schema here).
pub const BUILTIN_KEYS: &[&[&str]] = &[
    &["uid"],
    &["containerPort", "protocol"],
    &["port", "protocol"],
    &["name"],
    &["type"],
    &["mountPath"],
    &["ip"],
];

pub fn child_schema<'a>(schema: Option<&'a Value>, field: &str) -> Option<&'a Value> {
    let s = schema?;
    s.get("properties")
        .and_then(|p| p.get(field))
        .or_else(|| s.get("additionalProperties").filter(|a| a.is_object()))
}

pub fn list_kind(schema: Option<&Value>, field: &str, items: &[Value]) -> ListKind {
    if let Some(s) = schema {
        match s.get("x-kubernetes-list-type").and_then(Value::as_str) {
            Some("map") => {
                let keys = s
                    .get("x-kubernetes-list-map-keys")
                    .and_then(Value::as_array)
                    .map(|k| {
                        k.iter()
                            .filter_map(|k| k.as_str().map(str::to_string))
                            .collect()
                    })
                    .unwrap_or_default();
                return ListKind::Map(keys);
            }
            Some("set") => return ListKind::Set,
            _ => return ListKind::Atomic,
        }
    }
    if field == "finalizers" {
        return ListKind::Set;
    }
    for keys in BUILTIN_KEYS {
        let present = |i: &Value| i.get(keys[0]).is_some();
        if !items.is_empty() && items.iter().all(present) {
            let keys = keys
                .iter()
                .filter(|k| items.iter().all(|i| i.get(**k).is_some()))
                .map(|k| (*k).to_string())
                .collect();
            return ListKind::Map(keys);
        }
    }
    ListKind::Atomic
}

pub fn item_key(item: &Value, keys: &[String]) -> String {
    let map: Map<String, Value> = keys
        .iter()
        .map(|k| (k.clone(), item.get(k).cloned().unwrap_or(Value::Null)))
        .collect();
    Value::Object(map).to_string()
}

pub fn collect(
    value: &Value,
    schema: Option<&Value>,
    field: &str,
    prefix: &mut Path,
    out: &mut FieldSet,
) {
    match value {
        Value::Object(map) if !map.is_empty() => {
            for (k, child) in map {
                prefix.push(Pe::Field(k.clone()));
                collect(child, child_schema(schema, k), k, prefix, out);
                prefix.pop();
            }
        }
        Value::Array(items) => match list_kind(schema, field, items) {
            ListKind::Map(keys) => {
                let item_schema = schema.and_then(|s| s.get("items"));
                for item in items {
                    prefix.push(Pe::Key(item_key(item, &keys)));
                    out.insert(prefix.clone());
                    collect(item, item_schema, "", prefix, &mut *out);
                    prefix.pop();
                }
            }
            ListKind::Set => {
                for item in items {
                    prefix.push(Pe::Val(item.to_string()));
                    out.insert(prefix.clone());
                    prefix.pop();
                }
            }
            ListKind::Atomic => {
                out.insert(prefix.clone());
            }
        },
        _ => {
            out.insert(prefix.clone());
        }
    }
}

/// The part of an object that field ownership covers, for the main resource or `/status`.
pub fn owned_part(object: &Value, rt: &ResourceType, status: bool) -> Value {
    let mut out = Map::new();
    let Some(map) = object.as_object() else {
        return Value::Object(out);
    };
    for (k, v) in map {
        match k.as_str() {
            "apiVersion" | "kind" => {}
            "status" if status || !rt.status => {
                out.insert(k.clone(), v.clone());
            }
            "status" => {}
            "metadata" if !status => {
                let mut m = Map::new();
                for f in ["labels", "annotations", "finalizers", "ownerReferences"] {
                    if let Some(x) = v.get(f).filter(|x| !x.is_null()) {
                        m.insert(f.into(), x.clone());
                    }
                }
                if !m.is_empty() {
                    out.insert(k.clone(), Value::Object(m));
                }
            }
            _ if !status => {
                out.insert(k.clone(), v.clone());
            }
            _ => {}
        }
    }
    Value::Object(out)
}

pub fn fields_of(object: &Value, rt: &ResourceType, status: bool) -> FieldSet {
    let mut out = FieldSet::new();
    collect(
        &owned_part(object, rt, status),
        rt.schema.as_ref(),
        "",
        &mut Vec::new(),
        &mut out,
    );
    out
}

pub fn lookup<'a>(value: &'a Value, path: &[Pe], schema: Option<&Value>) -> Option<&'a Value> {
    let Some((first, rest)) = path.split_first() else {
        return Some(value);
    };
    match first {
        Pe::Field(f) => lookup(value.get(f)?, rest, child_schema(schema, f)),
        Pe::Key(k) => {
            let key: Value = serde_json::from_str(k).ok()?;
            let keys: Vec<String> = key.as_object()?.keys().cloned().collect();
            let item = value
                .as_array()?
                .iter()
                .find(|i| item_key(i, &keys) == *k)?;
            lookup(item, rest, schema.and_then(|s| s.get("items")))
        }
        Pe::Val(v) => {
            let wanted: Value = serde_json::from_str(v).ok()?;
            value.as_array()?.iter().find(|i| **i == wanted)
        }
    }
}

pub fn remove_path(value: &mut Value, path: &[Pe]) {
    let Some((first, rest)) = path.split_first() else {
        return;
    };
    match first {
        Pe::Field(f) => {
            let Some(map) = value.as_object_mut() else {
                return;
            };
            if rest.is_empty() {
                map.remove(f);
            } else if let Some(child) = map.get_mut(f) {
                remove_path(child, rest);
                if child.as_object().is_some_and(Map::is_empty) && rest.len() > 1 {
                    map.remove(f);
                }
            }
        }
        Pe::Key(k) => {
            let keys: Vec<String> = serde_json::from_str::<Value>(k)
                .ok()
                .and_then(|v| v.as_object().map(|m| m.keys().cloned().collect()))
                .unwrap_or_default();
            let Some(items) = value.as_array_mut() else {
                return;
            };
            if let Some(i) = items.iter().position(|i| item_key(i, &keys) == *k) {
                if rest.is_empty() {
                    items.remove(i);
                } else {
                    remove_path(&mut items[i], rest);
                }
            }
        }
        Pe::Val(v) => {
            if let Some(items) = value.as_array_mut() {
                let wanted: Option<Value> = serde_json::from_str(v).ok();
                items.retain(|i| Some(i) != wanted.as_ref());
            }
        }
    }
}

pub fn path_string(path: &[Pe]) -> String {
    let mut out = String::new();
    for pe in path {
        match pe {
            Pe::Field(f) => {
                out.push('.');
                out.push_str(f);
            }
            Pe::Key(k) => out.push_str(&format!("[{k}]")),
            Pe::Val(v) => out.push_str(&format!("[={v}]")),
        }
    }
    out
}
