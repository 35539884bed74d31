//! A container's environment as the kubelet builds it: the image's `ENV`, then `envFrom`,
//! then `env` in order, with `$(VAR)` references expanded against the variables before them,
//! and the same expansion applied to `command` and `args`.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{ConfigMap, Container, EnvVarSource, Pod, Secret, Service};
use kube::{Api, Client};

/// The environment of `container`, or the message a real kubelet gives when a referenced
/// Secret, ConfigMap or key is missing (the container then waits with
/// `CreateContainerConfigError`).
pub(crate) async fn resolve(
    client: &Client,
    pod: &Pod,
    container: &Container,
    image_env: &[(String, String)],
) -> Result<Vec<(String, String)>, String> {
    let namespace = pod.metadata.namespace.as_deref().unwrap_or("default");
    let links = pod
        .spec
        .as_ref()
        .and_then(|s| s.enable_service_links)
        .unwrap_or(true);
    let service_env = if links {
        let services = Api::<Service>::namespaced(client.clone(), namespace)
            .list(&Default::default())
            .await
            .map_err(|e| format!("listing the Services of namespace {namespace}: {e}"))?;
        crate::services::environment(&services.items)
    } else {
        Vec::new()
    };
    let mut env: Vec<(String, String)> = image_env.to_vec();
    let hostname = pod.metadata.name.clone().unwrap_or_default();
    set(&mut env, "HOSTNAME", hostname);
    for from in container.env_from.iter().flatten() {
        let prefix = from.prefix.as_deref().unwrap_or("");
        let data = if let Some(cm) = &from.config_map_ref {
            config_map(client, namespace, &cm.name, cm.optional.unwrap_or(false)).await?
        } else if let Some(secret) = &from.secret_ref {
            secret_data(
                client,
                namespace,
                &secret.name,
                secret.optional.unwrap_or(false),
            )
            .await?
        } else {
            BTreeMap::new()
        };
        for (key, value) in data {
            set(&mut env, &format!("{prefix}{key}"), value);
        }
    }
    for var in container.env.iter().flatten() {
        let value = match &var.value_from {
            Some(source) => match from_source(client, pod, namespace, source).await? {
                Some(value) => value,
                None => continue,
            },
            None => {
                // References see the container's variables first, then the Services'.
                let context: Vec<(String, String)> =
                    service_env.iter().chain(env.iter()).cloned().collect();
                expand(var.value.as_deref().unwrap_or(""), &context)
            }
        };
        set(&mut env, &var.name, value);
    }
    // The Services' variables come last, where the container does not define them itself.
    for (name, value) in service_env {
        if !env.iter().any(|(k, _)| *k == name) {
            env.push((name, value));
        }
    }
    Ok(env)
}

/// Expands `$(NAME)` to the value of `NAME` in `env`; `$$` is a literal `$`; a reference to
/// an undefined variable stays as written (the kubelet's rules).
pub(crate) fn expand(input: &str, env: &[(String, String)]) -> String {
    let mut out = String::with_capacity(input.len());
    let mut rest = input;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(close) = after.strip_prefix('(').and_then(|a| a.find(')')) {
            let name = &after[1..=close];
            match env.iter().rev().find(|(k, _)| k == name) {
                Some((_, value)) => out.push_str(value),
                None => out.push_str(&rest[i..i + close + 3]),
            }
            rest = &after[close + 2..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

fn set(env: &mut Vec<(String, String)>, name: &str, value: String) {
    env.retain(|(k, _)| k != name);
    env.push((name.to_owned(), value));
}

/// The value of one `valueFrom`; `None` for an optional reference that is missing.
async fn from_source(
    client: &Client,
    pod: &Pod,
    namespace: &str,
    source: &EnvVarSource,
) -> Result<Option<String>, String> {
    if let Some(field) = &source.field_ref {
        return field_path(pod, &field.field_path).map(Some);
    }
    let (data, key, optional, kind, name) = if let Some(key) = &source.secret_key_ref {
        let optional = key.optional.unwrap_or(false);
        let data = secret_data(client, namespace, &key.name, optional).await?;
        (data, &key.key, optional, "Secret", &key.name)
    } else if let Some(key) = &source.config_map_key_ref {
        let optional = key.optional.unwrap_or(false);
        let data = config_map(client, namespace, &key.name, optional).await?;
        (data, &key.key, optional, "ConfigMap", &key.name)
    } else {
        return Err("resourceFieldRef is not supported by the test node".to_owned());
    };
    match data.get(key) {
        Some(value) => Ok(Some(value.clone())),
        None if optional => Ok(None),
        None => Err(format!(
            "couldn't find key {key} in {kind} {namespace}/{name}"
        )),
    }
}

/// A `fieldRef` path the downward API serves.
pub(crate) fn field_path(pod: &Pod, path: &str) -> Result<String, String> {
    let status = pod.status.as_ref();
    let spec = pod.spec.as_ref();
    let meta = &pod.metadata;
    let map_key = |prefix: &str| {
        path.strip_prefix(prefix)
            .and_then(|p| p.strip_suffix("']"))
            .map(str::to_owned)
    };
    let value = match path {
        "metadata.name" => meta.name.clone(),
        "metadata.namespace" => meta.namespace.clone(),
        "metadata.uid" => meta.uid.clone(),
        "spec.nodeName" => spec.and_then(|s| s.node_name.clone()),
        "spec.serviceAccountName" => spec.and_then(|s| s.service_account_name.clone()),
        "status.hostIP" => status.and_then(|s| s.host_ip.clone()),
        "status.podIP" => status.and_then(|s| s.pod_ip.clone()),
        "status.podIPs" => status.and_then(|s| {
            s.pod_ips.as_ref().map(|ips| {
                ips.iter()
                    .map(|ip| ip.ip.clone())
                    .collect::<Vec<_>>()
                    .join(",")
            })
        }),
        _ => {
            if let Some(key) = map_key("metadata.labels['") {
                meta.labels.as_ref().and_then(|l| l.get(&key).cloned())
            } else if let Some(key) = map_key("metadata.annotations['") {
                meta.annotations.as_ref().and_then(|a| a.get(&key).cloned())
            } else {
                return Err(format!("unsupported fieldRef fieldPath {path:?}"));
            }
        }
    };
    Ok(value.unwrap_or_default())
}

/// A ConfigMap's `data` (and `binaryData` as text); empty when missing and `optional`.
pub(crate) async fn config_map(
    client: &Client,
    namespace: &str,
    name: &str,
    optional: bool,
) -> Result<BTreeMap<String, String>, String> {
    match Api::<ConfigMap>::namespaced(client.clone(), namespace)
        .get_opt(name)
        .await
        .map_err(|e| e.to_string())?
    {
        Some(cm) => {
            let mut data = cm.data.unwrap_or_default();
            for (key, bytes) in cm.binary_data.unwrap_or_default() {
                data.insert(key, String::from_utf8_lossy(&bytes.0).into_owned());
            }
            Ok(data)
        }
        None if optional => Ok(BTreeMap::new()),
        None => Err(format!("configmap \"{name}\" not found")),
    }
}

/// A Secret's decoded `data` as text; empty when missing and `optional`.
pub(crate) async fn secret_data(
    client: &Client,
    namespace: &str,
    name: &str,
    optional: bool,
) -> Result<BTreeMap<String, String>, String> {
    match Api::<Secret>::namespaced(client.clone(), namespace)
        .get_opt(name)
        .await
        .map_err(|e| e.to_string())?
    {
        Some(secret) => Ok(secret
            .data
            .unwrap_or_default()
            .into_iter()
            .map(|(k, v)| (k, String::from_utf8_lossy(&v.0).into_owned()))
            .chain(secret.string_data.unwrap_or_default())
            .collect()),
        None if optional => Ok(BTreeMap::new()),
        None => Err(format!("secret \"{name}\" not found")),
    }
}

#[cfg(test)]
mod tests {
    use super::expand;

    fn env() -> Vec<(String, String)> {
        vec![("POD_IP".into(), "127.42.1.1".into())]
    }

    #[test]
    fn references_to_defined_variables_are_expanded() {
        assert_eq!(
            expand("listen_addresses=$(POD_IP)", &env()),
            "listen_addresses=127.42.1.1"
        );
    }

    #[test]
    fn undefined_references_and_escaped_dollars_stay_literal() {
        assert_eq!(
            expand("$(NOPE) $$(POD_IP) $HOME $", &env()),
            "$(NOPE) $(POD_IP) $HOME $"
        );
    }
}
