//! How objects are shown: as stored, as `PartialObjectMetadata` or as a kubectl `Table`,
//! chosen from the `Accept` header.

use serde_json::{Value, json};

use crate::events;
use crate::meta;
use crate::registry::ResourceType;

/// Response shape asked for in `Accept`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// The objects themselves.
    Full,
    /// `as=PartialObjectMetadata[List]`.
    Metadata,
    /// `as=Table;v=v1;g=meta.k8s.io` (kubectl get), rows carrying what `includeObject` asks.
    Table(Include),
}

/// `includeObject` of a Table request: what each row's `object` holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Include {
    /// No `object`.
    None,
    /// `PartialObjectMetadata` (the default, and what kubectl gets unless it sorts).
    Metadata,
    /// The whole object.
    Object,
}

impl Format {
    /// The first media type in `Accept` that the server can produce, as the real server's
    /// content negotiation picks it; `includeObject` shapes Table rows.
    pub fn negotiate(accept: &str, include_object: Option<&str>) -> Self {
        for part in accept.split(',') {
            let params: Vec<&str> = part.split(';').map(str::trim).collect();
            let media = params[0];
            if media != "application/json" && media != "*/*" && media != "application/*" {
                continue;
            }
            let param = |key: &str| {
                params[1..]
                    .iter()
                    .find_map(|p| p.strip_prefix(key)?.strip_prefix('='))
            };
            match param("as") {
                None => return Self::Full,
                // Only meta.k8s.io/v1 Tables are served; a v1beta1 alternative is skipped.
                Some("Table") if param("v") == Some("v1") && param("g") == Some("meta.k8s.io") => {
                    return Self::Table(match include_object {
                        Some("None") => Include::None,
                        Some("Object") => Include::Object,
                        _ => Include::Metadata,
                    });
                }
                Some("PartialObjectMetadata" | "PartialObjectMetadataList") => {
                    return Self::Metadata;
                }
                Some(_) => {}
            }
        }
        Self::Full
    }
}

/// One object in the requested version and shape.
pub fn object(rt: &ResourceType, object: &Value, format: Format) -> Value {
    match format {
        Format::Full => full(rt, object),
        Format::Metadata => partial(object),
        Format::Table(include) => table(
            rt,
            std::slice::from_ref(object),
            &object["metadata"]["resourceVersion"],
            None,
            include,
        ),
    }
}

fn full(rt: &ResourceType, object: &Value) -> Value {
    let mut o = events::to_view(rt, object).into_owned();
    o["apiVersion"] = json!(rt.api_version());
    o
}

fn partial(object: &Value) -> Value {
    json!({ "apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMetadata", "metadata": object.get("metadata").cloned().unwrap_or(json!({})) })
}

/// `duration.HumanDuration` of apimachinery, which kubectl's AGE column shows.
fn human_duration(secs: i64) -> String {
    if secs < -1 {
        return "<invalid>".into();
    }
    let secs = secs.max(0);
    let (minutes, hours, days) = (secs / 60, secs / 3600, secs / 86400);
    let with = |big: i64, unit: &str, small: i64, small_unit: &str| {
        if small == 0 {
            format!("{big}{unit}")
        } else {
            format!("{big}{unit}{small}{small_unit}")
        }
    };
    match secs {
        s if s < 120 => format!("{s}s"),
        _ if minutes < 10 => with(minutes, "m", secs % 60, "s"),
        _ if minutes < 180 => format!("{minutes}m"),
        _ if hours < 8 => with(hours, "h", minutes % 60, "m"),
        _ if hours < 48 => format!("{hours}h"),
        _ if hours < 24 * 8 => with(days, "d", hours % 24, "h"),
        _ if hours < 24 * 365 * 2 => format!("{days}d"),
        _ if hours < 24 * 365 * 8 => with(days / 365, "y", days % 365, "d"),
        _ => format!("{}y", days / 365),
    }
}

/// The age of an RFC 3339 timestamp, or `None` when it does not parse.
fn since(timestamp: &Value) -> Option<String> {
    let t = timestamp.as_str()?.parse::<jiff::Timestamp>().ok()?;
    Some(human_duration(
        jiff::Timestamp::now().as_second() - t.as_second(),
    ))
}

fn age(object: &Value) -> Value {
    json!(since(&object["metadata"]["creationTimestamp"]).unwrap_or_else(|| "<unknown>".into()))
}

/// The results of a kubectl JSONPath over `value`, for the subset printer columns use:
/// `.a.b`, `.a[0]`, `.a[*].b` and `.a[?(@.k=="v")].b` (also `!=`, single quotes).
fn json_path(value: &Value, path: &str) -> Vec<Value> {
    let path = path.trim().trim_start_matches('{').trim_end_matches('}');
    let path = path.strip_prefix('$').unwrap_or(path);
    let mut current = vec![value.clone()];
    let mut rest = path;
    while !rest.is_empty() {
        if let Some(after) = rest.strip_prefix('[') {
            let Some(end) = after.find(']') else {
                return Vec::new();
            };
            let selector = &after[..end];
            rest = &after[end + 1..];
            let items: Vec<Value> = current
                .iter()
                .filter_map(Value::as_array)
                .flatten()
                .cloned()
                .collect();
            current = if selector == "*" {
                items
            } else if let Ok(index) = selector.parse::<usize>() {
                items.into_iter().nth(index).into_iter().collect()
            } else if let Some(filter) = selector
                .strip_prefix("?(@")
                .and_then(|f| f.strip_suffix(')'))
            {
                let (field, negate, wanted) = match filter.split_once("!=") {
                    Some((f, w)) => (f, true, w),
                    None => match filter.split_once("==") {
                        Some((f, w)) => (f, false, w),
                        None => return Vec::new(),
                    },
                };
                let wanted = wanted.trim().trim_matches(|c| c == '"' || c == '\'');
                items
                    .into_iter()
                    .filter(|item| {
                        let found = json_path(item, field.trim());
                        let hit = found.iter().any(|v| match v {
                            Value::String(s) => s == wanted,
                            other => wanted.parse::<Value>().is_ok_and(|w| w == *other),
                        });
                        hit != negate
                    })
                    .collect()
            } else {
                return Vec::new();
            };
        } else {
            let rest_field = rest.strip_prefix('.').unwrap_or(rest);
            let end = rest_field.find(['.', '[']).unwrap_or(rest_field.len());
            let field = &rest_field[..end];
            rest = &rest_field[end..];
            if field.is_empty() {
                continue;
            }
            current = current
                .iter()
                .filter_map(|v| v.get(field).cloned())
                .collect();
        }
    }
    current
}

/// A printer-column cell as the CRD table convertor renders the first JSONPath result.
fn cell(kind: &str, value: Option<Value>) -> Value {
    let Some(value) = value else {
        return Value::Null;
    };
    match kind {
        "string" => match value {
            Value::String(s) => json!(s),
            other => json!(other.to_string()),
        },
        "integer" => value
            .as_i64()
            .or_else(|| value.as_f64().map(|f| f as i64))
            .map_or(Value::Null, |i| json!(i)),
        "number" => value.as_f64().map_or(Value::Null, |f| json!(f)),
        "boolean" => value.as_bool().map_or(Value::Null, |b| json!(b)),
        "date" => since(&value).map_or(Value::Null, |age| json!(age)),
        _ => value,
    }
}

struct Column {
    definition: Value,
    render: Box<dyn Fn(&Value) -> Value>,
}

fn column(
    name: &str,
    kind: &str,
    description: &str,
    render: impl Fn(&Value) -> Value + 'static,
) -> Column {
    Column {
        definition: json!({ "name": name, "type": kind, "format": "", "description": description, "priority": 0 }),
        render: Box::new(render),
    }
}

fn name_column() -> Column {
    let mut name = column(
        "Name",
        "string",
        "Name must be unique within a namespace.",
        |o| json!(meta::name(o)),
    );
    name.definition["format"] = json!("name");
    name
}

fn count(value: &Value) -> usize {
    value.as_object().map_or(0, serde_json::Map::len)
}

/// Columns as the real server prints them: a CRD's `additionalPrinterColumns` (only Age
/// when it declares none), the kube printers' defaults for the built-in kinds tests use,
/// Name and Age for the rest.
fn columns(rt: &ResourceType) -> Vec<Column> {
    if rt.kind == "Event" && !rt.custom {
        return event_columns();
    }
    let mut columns = vec![name_column()];
    if rt.custom {
        let declared = if rt.printer_columns.is_empty() {
            vec![
                json!({ "name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp" }),
            ]
        } else {
            rt.printer_columns.clone()
        };
        for declared in declared {
            let kind = declared["type"].as_str().unwrap_or("string").to_string();
            let path = declared["jsonPath"].as_str().unwrap_or("").to_string();
            let definition = json!({
                "name": declared["name"], "type": kind,
                "format": declared.get("format").cloned().unwrap_or(json!("")),
                "description": declared.get("description").cloned().unwrap_or(json!("")),
                "priority": declared.get("priority").cloned().unwrap_or(json!(0)),
            });
            columns.push(Column {
                definition,
                render: Box::new(move |o| cell(&kind, json_path(o, &path).into_iter().next())),
            });
        }
        return columns;
    }
    match (rt.group.as_str(), rt.kind.as_str()) {
        ("", "Pod") => {
            columns.push(column(
                "Ready",
                "string",
                "The aggregate readiness state of this pod for accepting traffic.",
                |o| {
                    let total = o["spec"]["containers"].as_array().map_or(0, Vec::len);
                    let ready = o["status"]["containerStatuses"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter(|c| c["ready"] == true)
                        .count();
                    json!(format!("{ready}/{total}"))
                },
            ));
            columns.push(column(
                "Status",
                "string",
                "The aggregate status of the containers in this pod.",
                |o| {
                    if o["metadata"].get("deletionTimestamp").is_some() {
                        return json!("Terminating");
                    }
                    let reason = o["status"]["reason"].as_str().filter(|r| !r.is_empty());
                    json!(
                        reason
                            .or_else(|| o["status"]["phase"].as_str())
                            .unwrap_or("")
                    )
                },
            ));
            columns.push(column(
                "Restarts",
                "string",
                "The number of times the containers in this pod have been restarted.",
                |o| {
                    let restarts: i64 = o["status"]["containerStatuses"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(|c| c["restartCount"].as_i64())
                        .sum();
                    json!(restarts.to_string())
                },
            ));
        }
        ("", "Secret") => {
            columns.push(column("Type", "string", "The type of the secret", |o| {
                json!(o["type"].as_str().unwrap_or(""))
            }));
            columns.push(column(
                "Data",
                "string",
                "The number of entries in the secret",
                |o| json!(count(&o["data"])),
            ));
        }
        ("", "ConfigMap") => {
            columns.push(column(
                "Data",
                "string",
                "The number of entries in the config map",
                |o| json!(count(&o["data"]) + count(&o["binaryData"])),
            ));
        }
        _ => {}
    }
    columns.push(column("Age", "string", "CreationTimestamp is a timestamp representing the server time when this object was created.", age));
    columns
}

/// The kube printer's priority-0 Event columns (both Event views share them).
fn event_columns() -> Vec<Column> {
    vec![
        column(
            "Last Seen",
            "string",
            "Time when last this event was seen",
            |o| {
                let last = [
                    o.pointer("/series/lastObservedTime"),
                    o.get("lastTimestamp"),
                    o.get("eventTime"),
                ];
                let age = last.into_iter().flatten().find_map(since);
                json!(age.unwrap_or_else(|| "<unknown>".into()))
            },
        ),
        column("Type", "string", "Type of this event", |o| {
            o["type"].clone()
        }),
        column("Reason", "string", "Reason of this event", |o| {
            o["reason"].clone()
        }),
        column("Object", "string", "Object this event is about", |o| {
            let kind = o["involvedObject"]["kind"].as_str().unwrap_or("");
            let name = o["involvedObject"]["name"].as_str().unwrap_or("");
            json!(format!("{}/{name}", kind.to_lowercase()))
        }),
        column("Message", "string", "Message of this event", |o| {
            json!(o["message"].as_str().unwrap_or("").trim())
        }),
    ]
}

/// A list (or one object) as a `meta.k8s.io/v1` Table.
pub fn table(
    rt: &ResourceType,
    objects: &[Value],
    rv: &Value,
    cont: Option<&str>,
    include: Include,
) -> Value {
    let columns = columns(rt);
    let rows: Vec<Value> = objects
        .iter()
        .map(|o| {
            // Cells read the stored form: the Event printer reads core/v1 fields for both
            // Event views, as the real server prints the internal type.
            let cells: Vec<Value> = columns.iter().map(|c| (c.render)(o)).collect();
            match include {
                Include::None => json!({ "cells": cells }),
                Include::Metadata => json!({ "cells": cells, "object": partial(o) }),
                Include::Object => json!({ "cells": cells, "object": full(rt, o) }),
            }
        })
        .collect();
    let mut metadata = json!({ "resourceVersion": rv });
    if let Some(c) = cont {
        metadata["continue"] = json!(c);
    }
    let definitions: Vec<Value> = columns.into_iter().map(|c| c.definition).collect();
    json!({
        "kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": metadata,
        "columnDefinitions": definitions,
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
        Format::Table(include) => table(rt, objects, &rv, cont, include),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_path_subset_of_printer_columns() {
        let o = json!({ "status": { "conditions": [
            { "type": "Synced", "status": "False" }, { "type": "Ready", "status": "True" },
        ] }, "spec": { "port": 5432 } });
        assert_eq!(
            json_path(&o, r#".status.conditions[?(@.type=="Ready")].status"#),
            vec![json!("True")]
        );
        assert_eq!(
            json_path(&o, ".status.conditions[0].type"),
            vec![json!("Synced")]
        );
        assert_eq!(json_path(&o, ".status.conditions[*].type").len(), 2);
        assert_eq!(json_path(&o, ".spec.port"), vec![json!(5432)]);
        assert!(json_path(&o, ".spec.missing").is_empty());
    }

    #[test]
    fn ages_read_as_kubectl_shows_them() {
        let cases = [
            (5, "5s"),
            (150, "2m30s"),
            (600, "10m"),
            (3 * 3600 + 60, "3h1m"),
            (50 * 3600, "2d2h"),
            (400 * 86400, "400d"),
        ];
        for (secs, text) in cases {
            assert_eq!(human_duration(secs), text);
        }
    }

    #[test]
    fn first_acceptable_media_type_wins() {
        let kubectl = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json";
        assert_eq!(
            Format::negotiate(kubectl, None),
            Format::Table(Include::Metadata)
        );
        assert_eq!(
            Format::negotiate(
                "application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json",
                None
            ),
            Format::Full
        );
        assert_eq!(
            Format::negotiate("application/vnd.kubernetes.protobuf,application/json", None),
            Format::Full
        );
    }
}
