//! What the server does to every written object before admission and storage:
//! server-owned fields, the status subresource split, built-in normalisation, CRD
//! defaulting and pruning, `generation`, and validation.

use base64::Engine;
use serde_json::{Value, json};

use crate::error::ApiError;
use crate::meta;
use crate::schema;
use crate::writes::Target;

const NAMESPACES: (&str, &str) = ("", "namespaces");

/// Server-owned fields, the status split, built-in normalisation, CRD schema and generation.
pub fn prepare(target: &Target, old: Option<&Value>, new: &mut Value) {
    let rt = &target.rt;
    if rt.status
        && target.status
        && let Some(old) = old
    {
        let status = new.get("status").cloned();
        let managed = new.pointer("/metadata/managedFields").cloned();
        *new = old.clone();
        match status {
            Some(s) => new["status"] = s,
            None => {
                new.as_object_mut().map(|m| m.remove("status"));
            }
        }
        if let Some(managed) = managed {
            meta::metadata_mut(new).insert("managedFields".into(), managed);
        }
    } else if rt.status {
        match old.and_then(|o| o.get("status")) {
            Some(s) => new["status"] = s.clone(),
            None => {
                new.as_object_mut().map(|m| m.remove("status"));
            }
        }
    }
    new["apiVersion"] = json!(rt.api_version());
    new["kind"] = json!(rt.kind);
    let m = meta::metadata_mut(new);
    m.remove("resourceVersion");
    m.remove("selfLink");
    const SERVER_OWNED: &[&str] = &[
        "uid",
        "creationTimestamp",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "generateName",
    ];
    for field in SERVER_OWNED {
        match old.and_then(|o| o.pointer(&format!("/metadata/{field}"))) {
            Some(v) => {
                m.insert((*field).into(), v.clone());
            }
            None => {
                m.remove(*field);
            }
        }
    }
    if old.is_none() {
        m.insert("uid".into(), json!(meta::new_uid()));
        m.insert("creationTimestamp".into(), json!(meta::now()));
    }
    normalize_builtin(target, old, new);
    if let Some(schema) = &rt.schema {
        schema::apply_defaults(new, schema);
        schema::prune(new, schema, true);
    }
    let generation = match old {
        None => 1,
        Some(old) if meta::spec_part(old) != meta::spec_part(new) => meta::generation(old) + 1,
        Some(old) => meta::generation(old).max(1),
    };
    meta::metadata_mut(new).insert("generation".into(), json!(generation));
}

fn normalize_builtin(target: &Target, old: Option<&Value>, new: &mut Value) {
    let rt = &target.rt;
    if (rt.group.as_str(), rt.plural.as_str()) == NAMESPACES {
        // As the real namespace strategy does on every create and update
        // (since 1.21): the immutable label namespaceSelectors match on.
        let name = new.pointer("/metadata/name").cloned().unwrap_or(json!(""));
        let m = meta::metadata_mut(new);
        let labels = m.entry("labels").or_insert_with(|| json!({}));
        if !labels.is_object() {
            *labels = json!({});
        }
        labels["kubernetes.io/metadata.name"] = name;
    }
    match (rt.group.as_str(), rt.plural.as_str()) {
        ("", "secrets") => {
            // As the real defaulting does: an empty or missing type is Opaque (kubectl's
            // `create secret generic` sends `type: ""` in protobuf).
            if new
                .get("type")
                .and_then(Value::as_str)
                .unwrap_or("")
                .is_empty()
            {
                new["type"] = json!("Opaque");
            }
            if let Some(Value::Object(string_data)) =
                new.as_object_mut().and_then(|m| m.remove("stringData"))
            {
                let data = new
                    .as_object_mut()
                    .expect("object")
                    .entry("data")
                    .or_insert_with(|| json!({}));
                for (k, v) in string_data {
                    let text = v.as_str().unwrap_or("").as_bytes().to_vec();
                    data[k] = json!(base64::engine::general_purpose::STANDARD.encode(text));
                }
            }
            if new.get("type").is_none() {
                new["type"] = json!("Opaque");
            }
        }
        NAMESPACES if new.pointer("/status/phase").is_none() => {
            new["status"] = json!({ "phase": "Active" });
        }
        ("", "services") => crate::services::prepare_service(rt, old, new),
        ("", "persistentvolumeclaims") => crate::services::prepare_claim(rt, old, new),
        ("apiextensions.k8s.io", "customresourcedefinitions") => {
            let since = old
                .and_then(|o| o.pointer("/status/conditions/0/lastTransitionTime"))
                .cloned()
                .unwrap_or_else(|| json!(meta::now()));
            let storage: Vec<Value> = new
                .pointer("/spec/versions")
                .and_then(Value::as_array)
                .map(|vs| {
                    vs.iter()
                        .filter(|v| v["storage"] == json!(true))
                        .map(|v| v["name"].clone())
                        .collect()
                })
                .unwrap_or_default();
            new["status"] = json!({
                "conditions": [
                    { "type": "NamesAccepted", "status": "True", "reason": "NoConflicts", "message": "no conflicts found", "lastTransitionTime": since },
                    { "type": "Established", "status": "True", "reason": "InitialNamesAccepted", "message": "the initial names have been accepted", "lastTransitionTime": since },
                ],
                "acceptedNames": new.pointer("/spec/names").cloned().unwrap_or(json!({})),
                "storedVersions": storage,
            });
        }
        _ => {}
    }
}

pub fn validate(target: &Target, object: &Value) -> Result<(), ApiError> {
    let mut causes = Vec::new();
    let name = meta::name(object);
    let valid_name = !name.is_empty()
        && name.len() <= 253
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.ends_with(|c: char| c.is_ascii_alphanumeric());
    if !valid_name {
        causes.push((
            "metadata.name".to_string(),
            format!("Invalid value: \"{name}\": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character"),
        ));
    }
    if let Some(schema) = &target.rt.schema {
        causes.extend(schema::validate(object, schema));
    }
    causes.extend(crate::admission::refuse_match_conditions(target, object));
    causes.extend(crate::services::take_causes(&target.rt, object));
    if causes.is_empty() {
        Ok(())
    } else {
        Err(ApiError::invalid(
            &target.rt.kind,
            &target.rt.group,
            name,
            &causes,
        ))
    }
}
