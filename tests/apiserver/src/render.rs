//! How objects are shown: as stored, as `PartialObjectMetadata` or as a kubectl `Table`,
//! chosen from the `Accept` header.

use serde_json::{Value, json};

use crate::meta;
use crate::registry::ResourceType;

/// Response shape asked for in `Accept`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// The objects themselves.
    Full,
    /// `as=PartialObjectMetadata[List]`.
    Metadata,
    /// `as=Table` (kubectl get).
    Table,
}

impl Format {
    /// Reads the first shape the client accepts.
    pub fn from_accept(accept: &str) -> Self {
        for part in accept.split(',') {
            if part.contains("as=Table") {
                return Self::Table;
            }
            if part.contains("as=PartialObjectMetadata") {
                return Self::Metadata;
            }
            if part.contains("application/json") || part.contains("*/*") {
                return Self::Full;
            }
        }
        Self::Full
    }
}

/// One object in the requested version and shape.
pub fn object(rt: &ResourceType, object: &Value, format: Format) -> Value {
    match format {
        Format::Full => {
            let mut o = object.clone();
            o["apiVersion"] = json!(rt.api_version());
            o
        }
        Format::Metadata => partial(object),
        Format::Table => table(
            rt,
            std::slice::from_ref(object),
            &object["metadata"]["resourceVersion"],
            None,
        ),
    }
}

fn partial(object: &Value) -> Value {
    json!({ "apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMetadata", "metadata": object.get("metadata").cloned().unwrap_or(json!({})) })
}

fn age(object: &Value) -> String {
    let created = object
        .pointer("/metadata/creationTimestamp")
        .and_then(Value::as_str)
        .and_then(|t| t.parse::<jiff::Timestamp>().ok());
    let Some(created) = created else {
        return "<unknown>".into();
    };
    let secs = (jiff::Timestamp::now().as_second() - created.as_second()).max(0);
    match secs {
        s if s < 120 => format!("{s}s"),
        s if s < 7200 => format!("{}m", s / 60),
        s if s < 172_800 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86400),
    }
}

/// A list (or one object) as a `meta.k8s.io/v1` Table with Name and Age columns.
pub fn table(_rt: &ResourceType, objects: &[Value], rv: &Value, cont: Option<&str>) -> Value {
    let rows: Vec<Value> = objects
        .iter()
        .map(|o| json!({ "cells": [meta::name(o), age(o)], "object": partial(o) }))
        .collect();
    let mut metadata = json!({ "resourceVersion": rv });
    if let Some(c) = cont {
        metadata["continue"] = json!(c);
    }
    json!({
        "kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": metadata,
        "columnDefinitions": [
            { "name": "Name", "type": "string", "format": "name", "description": "Name of the object", "priority": 0 },
            { "name": "Age", "type": "string", "format": "", "description": "Time since creation", "priority": 0 },
        ],
        "rows": rows,
    })
}

/// A list in the requested shape.
pub fn list(
    rt: &ResourceType,
    objects: &[Value],
    rv: u64,
    cont: Option<&str>,
    format: Format,
) -> Value {
    let rv = json!(rv.to_string());
    match format {
        Format::Table => table(rt, objects, &rv, cont),
        Format::Metadata | Format::Full => {
            let items: Vec<Value> = objects.iter().map(|o| object(rt, o, format)).collect();
            let (api_version, kind) = if format == Format::Metadata {
                (
                    "meta.k8s.io/v1".to_string(),
                    "PartialObjectMetadataList".to_string(),
                )
            } else {
                (rt.api_version(), format!("{}List", rt.kind))
            };
            let mut metadata = json!({ "resourceVersion": rv });
            if let Some(c) = cont {
                metadata["continue"] = json!(c);
            }
            json!({ "apiVersion": api_version, "kind": kind, "metadata": metadata, "items": items })
        }
    }
}
