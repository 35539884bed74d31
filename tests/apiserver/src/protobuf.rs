//! Request bodies in Kubernetes' protobuf encoding (`application/vnd.kubernetes.protobuf`),
//! decoded to the JSON the rest of the server works with.
//!
//! kubectl's typed clients send built-in kinds as protobuf (`kubectl create namespace`,
//! `create secret`, `create configmap`) and do not retry as JSON after a 415, so a server
//! that refuses protobuf breaks them. The real server decodes every built-in kind; this one
//! decodes the kinds kubectl creates with its generators (Namespace, Secret, ConfigMap),
//! with the field numbers of `k8s.io/api/core/v1/generated.proto` and
//! `k8s.io/apimachinery/pkg/apis/meta/v1/generated.proto`, and answers 415 for the others.
//!
//! The envelope is the 4 bytes `k8s\0` and a `runtime.Unknown` message: `typeMeta` (1:
//! `apiVersion` 1, `kind` 2) and `raw` (2: the object's own message).

use base64::Engine as _;
use serde_json::{Map, Value, json};

use crate::error::ApiError;

/// The protobuf envelope's magic prefix.
const MAGIC: &[u8] = b"k8s\0";

/// How a field's value maps to JSON.
enum Field {
    Str(&'static str),
    /// Bytes, as base64 in JSON.
    Bytes(&'static str),
    Int(&'static str),
    Bool(&'static str),
    StrList(&'static str),
    StrMap(&'static str),
    /// `map<string, bytes>`, the values as base64.
    BytesMap(&'static str),
    Message(&'static str, &'static [(u32, Field)]),
    MessageList(&'static str, &'static [(u32, Field)]),
    /// `metav1.Time` (seconds 1, nanos 2), as RFC 3339 in JSON.
    Time(&'static str),
}

use Field::{Bool, Bytes, BytesMap, Int, Message, MessageList, Str, StrList, StrMap, Time};

static OWNER_REFERENCE: &[(u32, Field)] = &[
    (1, Str("kind")),
    (3, Str("name")),
    (4, Str("uid")),
    (5, Str("apiVersion")),
    (6, Bool("controller")),
    (7, Bool("blockOwnerDeletion")),
];

static OBJECT_META: &[(u32, Field)] = &[
    (1, Str("name")),
    (2, Str("generateName")),
    (3, Str("namespace")),
    (4, Str("selfLink")),
    (5, Str("uid")),
    (6, Str("resourceVersion")),
    (7, Int("generation")),
    (8, Time("creationTimestamp")),
    (9, Time("deletionTimestamp")),
    (10, Int("deletionGracePeriodSeconds")),
    (11, StrMap("labels")),
    (12, StrMap("annotations")),
    (13, MessageList("ownerReferences", OWNER_REFERENCE)),
    (14, StrList("finalizers")),
];

static CONFIG_MAP: &[(u32, Field)] = &[
    (1, Message("metadata", OBJECT_META)),
    (2, StrMap("data")),
    (3, BytesMap("binaryData")),
    (4, Bool("immutable")),
];

static SECRET: &[(u32, Field)] = &[
    (1, Message("metadata", OBJECT_META)),
    (2, BytesMap("data")),
    (3, Str("type")),
    (4, StrMap("stringData")),
    (5, Bool("immutable")),
];

static NAMESPACE_SPEC: &[(u32, Field)] = &[(1, StrList("finalizers"))];
static NAMESPACE_STATUS: &[(u32, Field)] = &[(1, Str("phase"))];
static NAMESPACE: &[(u32, Field)] = &[
    (1, Message("metadata", OBJECT_META)),
    (2, Message("spec", NAMESPACE_SPEC)),
    (3, Message("status", NAMESPACE_STATUS)),
];

static TYPE_META: &[(u32, Field)] = &[(1, Str("apiVersion")), (2, Str("kind"))];
static UNKNOWN: &[(u32, Field)] = &[
    (1, Message("typeMeta", TYPE_META)),
    (2, Bytes("raw")),
    (3, Str("contentEncoding")),
    (4, Str("contentType")),
];

/// The object in a protobuf request body, as JSON with `apiVersion` and `kind`.
///
/// # Errors
/// 415 for a kind this server cannot decode, 400 for a malformed body.
pub fn decode(body: &[u8], content_type: &str) -> Result<Value, ApiError> {
    let malformed = |what: &str| {
        ApiError::bad_request(format!(
            "failed to decode the protobuf request body: {what}"
        ))
    };
    let envelope = body
        .strip_prefix(MAGIC)
        .ok_or_else(|| malformed("no k8s envelope"))?;
    let unknown = message(envelope, UNKNOWN).map_err(malformed)?;
    let api_version = unknown["typeMeta"]["apiVersion"].as_str().unwrap_or("");
    let kind = unknown["typeMeta"]["kind"].as_str().unwrap_or("");
    let schema = match (api_version, kind) {
        ("v1", "ConfigMap") => CONFIG_MAP,
        ("v1", "Secret") => SECRET,
        ("v1", "Namespace") => NAMESPACE,
        _ => return Err(ApiError::unsupported_media_type(content_type)),
    };
    let raw = base64::engine::general_purpose::STANDARD
        .decode(unknown["raw"].as_str().unwrap_or(""))
        .map_err(|e| malformed(&e.to_string()))?;
    let mut object = message(&raw, schema).map_err(malformed)?;
    object["apiVersion"] = json!(api_version);
    object["kind"] = json!(kind);
    Ok(object)
}

/// A value on the wire.
enum Wire<'a> {
    Varint(u64),
    Delimited(&'a [u8]),
    Fixed,
}

/// Reads protobuf fields one after another.
struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    fn varint(&mut self) -> Result<u64, &'static str> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let (&byte, rest) = self.rest.split_first().ok_or("truncated varint")?;
            self.rest = rest;
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err("varint too long")
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], &'static str> {
        if self.rest.len() < n {
            return Err("truncated field");
        }
        let (taken, rest) = self.rest.split_at(n);
        self.rest = rest;
        Ok(taken)
    }

    fn field(&mut self) -> Result<Option<(u32, Wire<'a>)>, &'static str> {
        if self.rest.is_empty() {
            return Ok(None);
        }
        let tag = self.varint()?;
        let number = u32::try_from(tag >> 3).map_err(|_| "field number too large")?;
        let wire = match tag & 7 {
            0 => Wire::Varint(self.varint()?),
            1 => {
                self.take(8)?;
                Wire::Fixed
            }
            2 => {
                let len = usize::try_from(self.varint()?).map_err(|_| "length too large")?;
                Wire::Delimited(self.take(len)?)
            }
            5 => {
                self.take(4)?;
                Wire::Fixed
            }
            _ => return Err("unsupported wire type"),
        };
        Ok(Some((number, wire)))
    }
}

fn text(bytes: &[u8]) -> Result<Value, &'static str> {
    std::str::from_utf8(bytes)
        .map(|s| json!(s))
        .map_err(|_| "a string is not UTF-8")
}

fn base64(bytes: &[u8]) -> Value {
    json!(base64::engine::general_purpose::STANDARD.encode(bytes))
}

/// A map entry (key 1, value 2).
fn entry(bytes: &[u8], value_as_bytes: bool) -> Result<(String, Value), &'static str> {
    let mut reader = Reader { rest: bytes };
    let (mut key, mut value) = (String::new(), None);
    while let Some((number, wire)) = reader.field()? {
        match (number, wire) {
            (1, Wire::Delimited(b)) => {
                key = std::str::from_utf8(b)
                    .map_err(|_| "a key is not UTF-8")?
                    .to_owned()
            }
            (2, Wire::Delimited(b)) => {
                value = Some(if value_as_bytes { base64(b) } else { text(b)? })
            }
            _ => {}
        }
    }
    let empty = if value_as_bytes {
        base64(&[])
    } else {
        json!("")
    };
    Ok((key, value.unwrap_or(empty)))
}

fn time(bytes: &[u8]) -> Result<Value, &'static str> {
    let mut reader = Reader { rest: bytes };
    let mut seconds = 0i64;
    while let Some((number, wire)) = reader.field()? {
        if let (1, Wire::Varint(v)) = (number, wire) {
            seconds = v as i64;
        }
    }
    let at = jiff::Timestamp::from_second(seconds).map_err(|_| "a time out of range")?;
    Ok(json!(at.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()))
}

/// A message as a JSON object; fields the schema does not name are skipped.
fn message(bytes: &[u8], schema: &[(u32, Field)]) -> Result<Value, &'static str> {
    let mut object = Map::new();
    let mut reader = Reader { rest: bytes };
    while let Some((number, wire)) = reader.field()? {
        let Some((_, field)) = schema.iter().find(|(n, _)| *n == number) else {
            continue;
        };
        match (field, wire) {
            (Str(name), Wire::Delimited(b)) => {
                object.insert((*name).into(), text(b)?);
            }
            (Bytes(name), Wire::Delimited(b)) => {
                object.insert((*name).into(), base64(b));
            }
            (Int(name), Wire::Varint(v)) => {
                object.insert((*name).into(), json!(v as i64));
            }
            (Bool(name), Wire::Varint(v)) => {
                object.insert((*name).into(), json!(v != 0));
            }
            (Time(name), Wire::Delimited(b)) => {
                object.insert((*name).into(), time(b)?);
            }
            (StrList(name), Wire::Delimited(b)) => push(&mut object, name, text(b)?),
            (MessageList(name, inner), Wire::Delimited(b)) => {
                push(&mut object, name, message(b, inner)?);
            }
            (Message(name, inner), Wire::Delimited(b)) => {
                object.insert((*name).into(), message(b, inner)?);
            }
            (StrMap(name) | BytesMap(name), Wire::Delimited(b)) => {
                let (key, value) = entry(b, matches!(field, BytesMap(_)))?;
                let map = object.entry(*name).or_insert_with(|| json!({}));
                if let Some(map) = map.as_object_mut() {
                    map.insert(key, value);
                }
            }
            _ => return Err("a field has the wrong wire type"),
        }
    }
    Ok(Value::Object(object))
}

fn push(object: &mut Map<String, Value>, name: &str, value: Value) {
    if let Some(list) = object
        .entry(name)
        .or_insert_with(|| json!([]))
        .as_array_mut()
    {
        list.push(value);
    }
}
