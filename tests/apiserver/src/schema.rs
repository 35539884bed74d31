//! A CRD's `openAPIV3Schema` applied on write: defaulting, pruning of unknown fields and
//! validation with field paths, in that order (as the apiserver does).

use serde_json::{Map, Value};

fn preserves_unknown(schema: &Value) -> bool {
    schema
        .get("x-kubernetes-preserve-unknown-fields")
        .and_then(Value::as_bool)
        == Some(true)
}

/// Fills in `default`s of missing properties, recursively.
pub fn apply_defaults(value: &mut Value, schema: &Value) {
    match value {
        Value::Object(map) => {
            if let Some(props) = schema.get("properties").and_then(Value::as_object) {
                for (name, prop) in props {
                    if !map.contains_key(name)
                        && let Some(default) = prop.get("default")
                    {
                        map.insert(name.clone(), default.clone());
                    }
                    if let Some(child) = map.get_mut(name) {
                        apply_defaults(child, prop);
                    }
                }
            } else if let Some(additional) =
                schema.get("additionalProperties").filter(|a| a.is_object())
            {
                for child in map.values_mut() {
                    apply_defaults(child, additional);
                }
            }
        }
        Value::Array(items) => {
            if let Some(item_schema) = schema.get("items") {
                for item in items {
                    apply_defaults(item, item_schema);
                }
            }
        }
        _ => {}
    }
}

/// Drops fields the schema does not know, unless `x-kubernetes-preserve-unknown-fields`.
/// At the root (and in embedded resources) `apiVersion`, `kind` and `metadata` are kept.
pub fn prune(value: &mut Value, schema: &Value, root: bool) {
    match value {
        Value::Object(map) => {
            let embedded = root
                || schema
                    .get("x-kubernetes-embedded-resource")
                    .and_then(Value::as_bool)
                    == Some(true);
            let props = schema.get("properties").and_then(Value::as_object);
            let additional = schema.get("additionalProperties");
            if let Some(additional) = additional.filter(|a| a.is_object()) {
                for child in map.values_mut() {
                    prune(child, additional, false);
                }
                return;
            }
            let keep_all =
                preserves_unknown(schema) || additional.and_then(Value::as_bool) == Some(true);
            let empty = Map::new();
            let props = props.unwrap_or(&empty);
            map.retain(|k, _| {
                keep_all
                    || props.contains_key(k)
                    || (embedded && matches!(k.as_str(), "apiVersion" | "kind" | "metadata"))
            });
            for (k, child) in map.iter_mut() {
                if let Some(prop) = props.get(k) {
                    prune(child, prop, false);
                }
            }
        }
        Value::Array(items) => {
            if let Some(item_schema) = schema.get("items") {
                for item in items {
                    prune(item, item_schema, false);
                }
            }
        }
        _ => {}
    }
}

/// The fields [`prune`] would drop, as dotted paths (`spec.colour`), for
/// `fieldValidation=Strict`.
pub fn unknown_fields(value: &Value, schema: &Value) -> Vec<String> {
    let mut found = Vec::new();
    collect_unknown(value, schema, true, "", &mut found);
    found
}

fn collect_unknown(value: &Value, schema: &Value, root: bool, path: &str, found: &mut Vec<String>) {
    let join = |key: &str| {
        if path.is_empty() {
            key.to_owned()
        } else {
            format!("{path}.{key}")
        }
    };
    match value {
        Value::Object(map) => {
            let embedded = root
                || schema
                    .get("x-kubernetes-embedded-resource")
                    .and_then(Value::as_bool)
                    == Some(true);
            let additional = schema.get("additionalProperties");
            if let Some(additional) = additional.filter(|a| a.is_object()) {
                for (k, child) in map {
                    collect_unknown(child, additional, false, &join(k), found);
                }
                return;
            }
            if preserves_unknown(schema) || additional.and_then(Value::as_bool) == Some(true) {
                return;
            }
            let empty = Map::new();
            let props = schema
                .get("properties")
                .and_then(Value::as_object)
                .unwrap_or(&empty);
            for (k, child) in map {
                match props.get(k) {
                    Some(prop) => collect_unknown(child, prop, false, &join(k), found),
                    None if embedded
                        && matches!(k.as_str(), "apiVersion" | "kind" | "metadata") => {}
                    None => found.push(join(k)),
                }
            }
        }
        Value::Array(items) => {
            if let Some(item_schema) = schema.get("items") {
                for (i, item) in items.iter().enumerate() {
                    collect_unknown(item, item_schema, false, &format!("{path}[{i}]"), found);
                }
            }
        }
        _ => {}
    }
}

/// Checks a value against the schema. Returns `(field path, message)` per violation.
pub fn validate(value: &Value, schema: &Value) -> Vec<(String, String)> {
    let mut errors = Vec::new();
    check(value, schema, "", &mut errors);
    errors
}

fn show(value: &Value) -> String {
    match value {
        Value::String(s) => format!("\"{s}\""),
        other => other.to_string(),
    }
}

fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn check(value: &Value, schema: &Value, path: &str, errors: &mut Vec<(String, String)>) {
    let field = if path.is_empty() {
        "<root>".to_string()
    } else {
        path.to_string()
    };
    let mut invalid = |msg: String| {
        errors.push((
            field.clone(),
            format!("Invalid value: {}: {msg}", show(value)),
        ))
    };
    if value.is_null() {
        if schema.get("nullable").and_then(Value::as_bool) != Some(true)
            && schema.get("type").is_some()
        {
            invalid(format!(
                "{field} in body must be of type {}: \"null\"",
                schema["type"].as_str().unwrap_or("object")
            ));
        }
        return;
    }
    let int_or_string = schema
        .get("x-kubernetes-int-or-string")
        .and_then(Value::as_bool)
        == Some(true);
    if let Some(expected) = schema.get("type").and_then(Value::as_str) {
        let actual = type_name(value);
        let ok = actual == expected
            || (expected == "number" && actual == "integer")
            || (int_or_string && matches!(actual, "integer" | "string"));
        if !ok {
            invalid(format!(
                "{field} in body must be of type {expected}: \"{actual}\""
            ));
            return;
        }
    }
    if let Some(options) = schema.get("enum").and_then(Value::as_array)
        && !options.contains(value)
    {
        let supported: Vec<String> = options.iter().map(show).collect();
        errors.push((
            field.clone(),
            format!(
                "Unsupported value: {}: supported values: {}",
                show(value),
                supported.join(", ")
            ),
        ));
    }
    let mut invalid = |msg: String| {
        errors.push((
            field.clone(),
            format!("Invalid value: {}: {msg}", show(value)),
        ))
    };
    if let Some(n) = value.as_f64() {
        if let Some(min) = schema.get("minimum").and_then(Value::as_f64)
            && n < min
        {
            invalid(format!(
                "{field} in body should be greater than or equal to {min}"
            ));
        }
        if let Some(max) = schema.get("maximum").and_then(Value::as_f64)
            && n > max
        {
            invalid(format!(
                "{field} in body should be less than or equal to {max}"
            ));
        }
    }
    if let Some(s) = value.as_str() {
        let len = s.chars().count() as u64;
        if let Some(min) = schema.get("minLength").and_then(Value::as_u64)
            && len < min
        {
            invalid(format!(
                "{field} in body should be at least {min} chars long"
            ));
        }
        if let Some(max) = schema.get("maxLength").and_then(Value::as_u64)
            && len > max
        {
            invalid(format!(
                "{field} in body should be at most {max} chars long"
            ));
        }
        if let Some(pattern) = schema.get("pattern").and_then(Value::as_str)
            && regex::Regex::new(pattern).is_ok_and(|re| !re.is_match(s))
        {
            invalid(format!("{field} in body should match '{pattern}'"));
        }
    }
    match value {
        Value::Array(items) => {
            if let Some(min) = schema.get("minItems").and_then(Value::as_u64)
                && (items.len() as u64) < min
            {
                invalid(format!("{field} in body should have at least {min} items"));
            }
            if let Some(max) = schema.get("maxItems").and_then(Value::as_u64)
                && (items.len() as u64) > max
            {
                errors.push((
                    field.clone(),
                    format!("Too many: {}: must have at most {max} items", items.len()),
                ));
            }
            if let Some(item_schema) = schema.get("items") {
                for (i, item) in items.iter().enumerate() {
                    check(item, item_schema, &format!("{path}[{i}]"), errors);
                }
            }
        }
        Value::Object(map) => {
            let join = |k: &str| {
                if path.is_empty() {
                    k.to_string()
                } else {
                    format!("{path}.{k}")
                }
            };
            if let Some(required) = schema.get("required").and_then(Value::as_array) {
                for name in required.iter().filter_map(Value::as_str) {
                    if !map.contains_key(name) {
                        errors.push((join(name), "Required value".into()));
                    }
                }
            }
            let props = schema.get("properties").and_then(Value::as_object);
            let additional = schema.get("additionalProperties").filter(|a| a.is_object());
            for (k, child) in map {
                if path.is_empty() && matches!(k.as_str(), "apiVersion" | "kind" | "metadata") {
                    continue;
                }
                if let Some(prop) = props.and_then(|p| p.get(k)).or(additional) {
                    check(child, prop, &join(k), errors);
                }
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn schema() -> Value {
        json!({"type": "object", "properties": {"spec": {"type": "object", "required": ["size"], "properties": {
            "size": {"type": "string"},
            "version": {"type": "integer", "default": 16, "minimum": 12},
            "mode": {"type": "string", "enum": ["a", "b"]},
        }}}})
    }

    #[test]
    fn defaults_fill_missing_properties() {
        let mut v = json!({"spec": {"size": "1Gi"}});
        apply_defaults(&mut v, &schema());
        assert_eq!(v["spec"]["version"], 16);
    }

    #[test]
    fn unknown_fields_are_pruned_but_metadata_stays() {
        let mut v = json!({"apiVersion": "x/v1", "kind": "X", "metadata": {"name": "a"}, "spec": {"size": "1", "bogus": 1}, "extra": 2});
        prune(&mut v, &schema(), true);
        assert_eq!(
            v,
            json!({"apiVersion": "x/v1", "kind": "X", "metadata": {"name": "a"}, "spec": {"size": "1"}})
        );
    }

    #[test]
    fn validation_names_each_field_path() {
        let errors = validate(&json!({"spec": {"version": "x", "mode": "c"}}), &schema());
        let fields: Vec<&str> = errors.iter().map(|(f, _)| f.as_str()).collect();
        assert_eq!(fields, vec!["spec.size", "spec.mode", "spec.version"]);
    }
}
