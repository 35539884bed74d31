//! The edit of a Pod's JSON: env, volumes, mounts and the stamp. Pure, so
//! idempotence is a property of this file alone.

use serde_json::{Map, Value, json};

use super::{INJECTED_ANNOTATION, Injection};

/// Where binding directories are mounted (`$SERVICE_BINDING_ROOT`).
pub(crate) const BINDING_ROOT: &str = "/bindings";

/// The variables each resource gives and the Secret keys they come from.
const VARIABLES: [(&str, &str); 6] = [
    ("PGHOST", "host"),
    ("PGPORT", "port"),
    ("PGDATABASE", "dbname"),
    ("PGUSER", "username"),
    ("PGPASSWORD", "password"),
    ("DATABASE_URL", "uri"),
];

/// The longest volume name Kubernetes accepts (a DNS-1123 label).
const MAX_VOLUME_NAME: usize = 63;

/// Names of every container and init container.
pub(crate) fn container_names(pod: &Value) -> Vec<String> {
    ["containers", "initContainers"]
        .iter()
        .flat_map(|list| names_in(pod, list))
        .collect()
}

/// Names of the (non-init) containers: those injected by default.
pub(crate) fn app_container_names(pod: &Value) -> Vec<String> {
    names_in(pod, "containers")
}

fn names_in(pod: &Value, list: &str) -> Vec<String> {
    pod.pointer(&format!("/spec/{list}"))
        .and_then(Value::as_array)
        .map(|all| {
            all.iter()
                .filter_map(|c| c["name"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// Injects `injections` into the named `containers` of `pod`; whether
/// anything changed. What is already there under the same name is kept.
pub(crate) fn inject(pod: &mut Value, injections: &[Injection], containers: &[String]) -> bool {
    let mut changed = false;
    let stamp = injections
        .iter()
        .map(|i| i.secret.as_str())
        .collect::<Vec<_>>()
        .join(",");
    if let Some(annotations) = pod
        .pointer_mut("/metadata/annotations")
        .and_then(Value::as_object_mut)
        && annotations.get(INJECTED_ANNOTATION).and_then(Value::as_str) != Some(stamp.as_str())
    {
        annotations.insert(INJECTED_ANNOTATION.into(), stamp.into());
        changed = true;
    }
    let Some(spec) = pod.get_mut("spec").and_then(Value::as_object_mut) else {
        return changed;
    };
    for injection in injections {
        let volume = json!({
            "name": volume_name(&injection.name),
            "projected": {"sources": [{"secret": {"name": injection.secret}}]}
        });
        if let Some(volumes) = array(spec, "volumes") {
            changed |= add_named(volumes, volume);
        }
    }
    for list in ["containers", "initContainers"] {
        let Some(all) = spec.get_mut(list).and_then(Value::as_array_mut) else {
            continue;
        };
        for container in all.iter_mut().filter_map(Value::as_object_mut) {
            let selected = container
                .get("name")
                .and_then(Value::as_str)
                .is_some_and(|name| containers.iter().any(|c| c == name));
            if selected {
                changed |= inject_container(container, injections);
            }
        }
    }
    changed
}

fn inject_container(container: &mut Map<String, Value>, injections: &[Injection]) -> bool {
    let mut changed = false;
    if let Some(env) = array(container, "env") {
        changed |= add_named(
            env,
            json!({"name": "SERVICE_BINDING_ROOT", "value": BINDING_ROOT}),
        );
        for injection in injections {
            for (variable, key) in VARIABLES {
                let reference = json!({
                    "name": format!("{}{variable}", injection.prefix),
                    "valueFrom": {"secretKeyRef": {"name": injection.secret, "key": key}}
                });
                changed |= add_named(env, reference);
            }
        }
    }
    if let Some(mounts) = array(container, "volumeMounts") {
        for injection in injections {
            let mount = json!({
                "name": volume_name(&injection.name),
                "mountPath": format!("{BINDING_ROOT}/{}", injection.name),
                "readOnly": true
            });
            changed |= add_named(mounts, mount);
        }
    }
    changed
}

/// The array at `map[key]`, created empty when absent; `None` when the key
/// holds something else (a Pod the API server's schema check will refuse).
fn array<'a>(map: &'a mut Map<String, Value>, key: &str) -> Option<&'a mut Vec<Value>> {
    map.entry(key)
        .or_insert_with(|| Value::Array(Vec::new()))
        .as_array_mut()
}

/// Appends `item` unless an item with its `name` is there; whether it did.
/// An existing item wins: the user's own variable, or an earlier injection.
fn add_named(items: &mut Vec<Value>, item: Value) -> bool {
    if items
        .iter()
        .any(|existing| existing["name"] == item["name"])
    {
        return false;
    }
    items.push(item);
    true
}

/// The volume of resource `name`: `pg-<name>` with dots made dashes (resource
/// names are DNS subdomains, volume names DNS labels), cut to 63 bytes.
fn volume_name(name: &str) -> String {
    let mut volume: String = format!("pg-{name}").replace('.', "-");
    volume.truncate(MAX_VOLUME_NAME);
    volume.trim_end_matches('-').to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn volume_names_are_dns_labels() {
        assert_eq!(volume_name("app"), "pg-app");
        assert_eq!(volume_name("app.v2"), "pg-app-v2");
        let long = volume_name(&format!("{}-x", "a".repeat(59)));
        assert_eq!(long.len(), 62, "cut to 63 and the trailing dash dropped");
    }
}
