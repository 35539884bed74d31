//! `managedFields` entries: decoding and encoding FieldsV1, and updating one manager's entry.

use serde_json::{Value, json};

use crate::fieldset::{FieldSet, Path, Pe};
use crate::meta;

/// One `managedFields` entry, decoded.
pub struct Entry {
    /// `manager`.
    pub manager: String,
    /// `Apply` or `Update`.
    pub operation: String,
    /// `apiVersion` the manager used.
    pub api_version: String,
    /// When the entry's fields last changed.
    pub time: String,
    /// `status` or empty.
    pub subresource: String,
    /// The owned fields.
    pub fields: FieldSet,
}

pub fn decode_fields(node: &Value, prefix: &mut Path, out: &mut FieldSet) {
    let Some(map) = node.as_object() else { return };
    if map.is_empty() || map.contains_key(".") {
        out.insert(prefix.clone());
    }
    for (k, child) in map {
        let pe = if let Some(f) = k.strip_prefix("f:") {
            Pe::Field(f.into())
        } else if let Some(key) = k.strip_prefix("k:") {
            Pe::Key(key.into())
        } else if let Some(v) = k.strip_prefix("v:") {
            Pe::Val(v.into())
        } else {
            continue;
        };
        prefix.push(pe);
        decode_fields(child, prefix, out);
        prefix.pop();
    }
}

pub fn encode_fields(fields: &FieldSet) -> Value {
    let mut root = json!({});
    for path in fields {
        let mut node = &mut root;
        for pe in path {
            let key = match pe {
                Pe::Field(f) => format!("f:{f}"),
                Pe::Key(k) => format!("k:{k}"),
                Pe::Val(v) => format!("v:{v}"),
            };
            node = node
                .as_object_mut()
                .expect("node")
                .entry(key)
                .or_insert_with(|| json!({}));
        }
    }
    // Nodes that are members themselves and have children get a "." marker.
    fn mark(node: &mut Value, fields: &FieldSet, prefix: &mut Path) {
        let Some(map) = node.as_object_mut() else {
            return;
        };
        if !map.is_empty() && !prefix.is_empty() && fields.contains(prefix) {
            map.insert(".".into(), json!({}));
        }
        for (k, child) in map.iter_mut() {
            let pe = if let Some(f) = k.strip_prefix("f:") {
                Pe::Field(f.into())
            } else if let Some(key) = k.strip_prefix("k:") {
                Pe::Key(key.into())
            } else if let Some(v) = k.strip_prefix("v:") {
                Pe::Val(v.into())
            } else {
                continue;
            };
            prefix.push(pe);
            mark(child, fields, prefix);
            prefix.pop();
        }
    }
    mark(&mut root, fields, &mut Vec::new());
    root
}

pub fn read_entries(object: Option<&Value>) -> Vec<Entry> {
    let Some(list) = object
        .and_then(|o| o.pointer("/metadata/managedFields"))
        .and_then(Value::as_array)
    else {
        return Vec::new();
    };
    list.iter()
        .map(|e| {
            let s = |k: &str| e.get(k).and_then(Value::as_str).unwrap_or("").to_string();
            let mut fields = FieldSet::new();
            if let Some(f) = e.get("fieldsV1") {
                decode_fields(f, &mut Vec::new(), &mut fields);
                fields.remove(&Vec::new());
            }
            Entry {
                manager: s("manager"),
                operation: s("operation"),
                api_version: s("apiVersion"),
                time: s("time"),
                subresource: s("subresource"),
                fields,
            }
        })
        .collect()
}

pub fn write_entries(object: &mut Value, entries: Vec<Entry>) {
    let list: Vec<Value> = entries
        .into_iter()
        .filter(|e| !e.fields.is_empty())
        .map(|e| {
            let mut v = json!({
                "manager": e.manager,
                "operation": e.operation,
                "apiVersion": e.api_version,
                "time": e.time,
                "fieldsType": "FieldsV1",
                "fieldsV1": encode_fields(&e.fields),
            });
            if !e.subresource.is_empty() {
                v["subresource"] = json!(e.subresource);
            }
            v
        })
        .collect();
    let meta = meta::metadata_mut(object);
    if list.is_empty() {
        meta.remove("managedFields");
    } else {
        meta.insert("managedFields".into(), Value::Array(list));
    }
}

pub fn set_entry(
    entries: &mut Vec<Entry>,
    manager: &str,
    operation: &str,
    subresource: &str,
    api_version: &str,
    fields: FieldSet,
) {
    match entries
        .iter_mut()
        .find(|e| e.manager == manager && e.operation == operation && e.subresource == subresource)
    {
        Some(e) if e.fields == fields => {}
        Some(e) => {
            e.fields = fields;
            e.time = meta::now();
            e.api_version = api_version.into();
        }
        None => entries.push(Entry {
            manager: manager.into(),
            operation: operation.into(),
            api_version: api_version.into(),
            time: meta::now(),
            subresource: subresource.into(),
            fields,
        }),
    }
}
