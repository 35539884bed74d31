//! Admission webhooks: matches Mutating/ValidatingWebhookConfigurations, sends
//! `admission.k8s.io/v1` AdmissionReviews over HTTPS trusting each `caBundle`, applies the
//! mutating JSON patches in order and turns denials into the apiserver's error format.

use std::time::Duration;

use base64::Engine;
use serde_json::{Value, json};

use crate::error::ApiError;
use crate::meta;
use crate::registry::GroupResource;
use crate::selector::matches_selector_object;
use crate::server::Api;
use crate::writes::Target;

/// What is being admitted.
pub struct Review<'a> {
    /// The addressed object.
    pub target: &'a Target,
    /// `CREATE`, `UPDATE` or `DELETE`.
    pub operation: &'static str,
    /// The new object (none for DELETE).
    pub object: Option<&'a Value>,
    /// The old object (none for CREATE).
    pub old_object: Option<&'a Value>,
    /// Whether the request is a dry run.
    pub dry_run: bool,
}

/// Runs mutating webhooks in name order. Returns the mutated object when any patched it.
///
/// # Errors
/// A denial, or a failed call under `failurePolicy: Fail`.
pub async fn mutate(api: &Api, review: &Review<'_>) -> Result<Option<Value>, ApiError> {
    let hooks = matching(api, "mutatingwebhookconfigurations", review);
    if hooks.is_empty() {
        return Ok(None);
    }
    let mut object = review.object.cloned().unwrap_or(Value::Null);
    for hook in hooks {
        let current = Review {
            object: Some(&object),
            ..*review
        };
        let Some(response) = call(&hook, &current).await? else {
            continue;
        };
        if let Some(patch) = response.get("patch").and_then(Value::as_str) {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(patch)
                .map_err(|e| {
                    ApiError::internal(format!(
                        "webhook \"{}\" returned an invalid patch: {e}",
                        name(&hook)
                    ))
                })?;
            let ops: Value = serde_json::from_slice(&bytes).map_err(|e| {
                ApiError::internal(format!(
                    "webhook \"{}\" returned an invalid patch: {e}",
                    name(&hook)
                ))
            })?;
            crate::patch::json(&mut object, &ops)?;
        }
    }
    Ok(Some(object))
}

/// Runs validating webhooks.
///
/// # Errors
/// A denial, or a failed call under `failurePolicy: Fail`.
pub async fn validate(api: &Api, review: &Review<'_>) -> Result<(), ApiError> {
    for hook in matching(api, "validatingwebhookconfigurations", review) {
        call(&hook, review).await?;
    }
    Ok(())
}

fn name(hook: &Value) -> &str {
    hook.get("name").and_then(Value::as_str).unwrap_or("")
}

fn matching(api: &Api, plural: &str, review: &Review<'_>) -> Vec<Value> {
    let rt = &review.target.rt;
    if rt.group == "admissionregistration.k8s.io" {
        return Vec::new();
    }
    let state = api.store.lock();
    let gr = GroupResource {
        group: "admissionregistration.k8s.io".into(),
        resource: plural.into(),
    };
    let configs: Vec<&Value> = state.list(&gr, None).collect();
    if configs.is_empty() {
        return Vec::new();
    }
    let object = review
        .object
        .or(review.old_object)
        .cloned()
        .unwrap_or(Value::Null);
    let ns_labels = if rt.plural == "namespaces" && rt.group.is_empty() {
        Some(meta::labels(&object))
    } else if rt.namespaced {
        let namespaces = GroupResource {
            group: String::new(),
            resource: "namespaces".into(),
        };
        state
            .get(
                &namespaces,
                &(String::new(), review.target.namespace.clone()),
            )
            .map(meta::labels)
    } else {
        None
    };
    let resource = if review.target.status {
        format!("{}/status", rt.plural)
    } else {
        rt.plural.clone()
    };
    let mut hooks = Vec::new();
    for config in configs {
        for hook in config
            .get("webhooks")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let rules_match = hook
                .get("rules")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .any(|rule| {
                    let has = |field: &str, want: &str| {
                        rule.get(field)
                            .and_then(Value::as_array)
                            .is_some_and(|vals| vals.iter().any(|v| v == "*" || v == want))
                    };
                    let resource_ok =
                        rule.get("resources")
                            .and_then(Value::as_array)
                            .is_some_and(|vals| {
                                vals.iter().filter_map(Value::as_str).any(|v| {
                                    v == resource
                                        || v == "*/*"
                                        || (v == "*" && !review.target.status)
                                        || (review.target.status && v == "*/status")
                                })
                            });
                    let scope = rule.get("scope").and_then(Value::as_str).unwrap_or("*");
                    let scope_ok = scope == "*" || (scope == "Namespaced") == rt.namespaced;
                    has("operations", review.operation)
                        && has("apiGroups", &rt.group)
                        && has("apiVersions", &rt.version)
                        && resource_ok
                        && scope_ok
                });
            let ns_ok = ns_labels
                .as_ref()
                .is_none_or(|l| matches_selector_object(hook.get("namespaceSelector"), l));
            let obj_ok =
                matches_selector_object(hook.get("objectSelector"), &meta::labels(&object));
            if rules_match && ns_ok && obj_ok {
                hooks.push(hook.clone());
            }
        }
    }
    hooks.sort_by(|a, b| name(a).cmp(name(b)));
    hooks
}

fn review_body(review: &Review<'_>) -> Value {
    let rt = &review.target.rt;
    let gvk = json!({ "group": rt.group, "version": rt.version, "kind": rt.kind });
    let gvr = json!({ "group": rt.group, "version": rt.version, "resource": rt.plural });
    let mut request = json!({
        "uid": meta::new_uid(),
        "kind": gvk, "resource": gvr, "requestKind": gvk, "requestResource": gvr,
        "name": review.target.name,
        "operation": review.operation,
        "userInfo": { "username": "test-apiserver-user", "groups": ["system:authenticated"] },
        "object": review.object.cloned().unwrap_or(Value::Null),
        "oldObject": review.old_object.cloned().unwrap_or(Value::Null),
        "dryRun": review.dry_run,
    });
    if !review.target.namespace.is_empty() {
        request["namespace"] = json!(review.target.namespace);
    }
    if review.target.status {
        request["subResource"] = json!("status");
    }
    json!({ "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": request })
}

/// Calls one webhook. `Ok(None)` when the call failed and the policy is `Ignore`.
async fn call(hook: &Value, review: &Review<'_>) -> Result<Option<Value>, ApiError> {
    let hook_name = name(hook);
    let ignore = hook.get("failurePolicy").and_then(Value::as_str) == Some("Ignore");
    let timeout = Duration::from_secs(
        hook.get("timeoutSeconds")
            .and_then(Value::as_u64)
            .unwrap_or(10),
    );
    let outcome = match tokio::time::timeout(timeout, send(hook, review_body(review))).await {
        Ok(result) => result,
        Err(_) => Err(format!(
            "Post \"{}\": context deadline exceeded",
            url_of(hook).unwrap_or_default()
        )),
    };
    let response = match outcome {
        Ok(response) => response,
        Err(_) if ignore => return Ok(None),
        Err(e) => {
            return Err(ApiError::internal(format!(
                "Internal error occurred: failed calling webhook \"{hook_name}\": {e}"
            )));
        }
    };
    if response.get("allowed").and_then(Value::as_bool) == Some(true) {
        return Ok(Some(response));
    }
    let status = response.get("status").cloned().unwrap_or(json!({}));
    let code = status
        .get("code")
        .and_then(Value::as_u64)
        .filter(|c| *c >= 400)
        .unwrap_or(400) as u16;
    let message = status.get("message").and_then(Value::as_str).unwrap_or("");
    let reason = match code {
        403 => "Forbidden",
        404 => "NotFound",
        409 => "Conflict",
        422 => "Invalid",
        400 => "BadRequest",
        _ => "",
    };
    let text = if message.is_empty() {
        format!("admission webhook \"{hook_name}\" denied the request without explanation")
    } else {
        format!("admission webhook \"{hook_name}\" denied the request: {message}")
    };
    Err(ApiError::custom(code, reason, text))
}

fn url_of(hook: &Value) -> Option<String> {
    let config = hook.get("clientConfig")?;
    if let Some(url) = config.get("url").and_then(Value::as_str) {
        return Some(url.to_string());
    }
    let service = config.get("service")?;
    Some(format!(
        "https://{}.{}.svc:{}{}",
        service.get("name")?.as_str()?,
        service.get("namespace")?.as_str()?,
        service.get("port").and_then(Value::as_u64).unwrap_or(443),
        service.get("path").and_then(Value::as_str).unwrap_or("")
    ))
}

async fn send(hook: &Value, body: Value) -> Result<Value, String> {
    let url = url_of(hook).ok_or("webhook has no clientConfig")?;
    let uri: http::Uri = url
        .parse()
        .map_err(|e| format!("invalid webhook url {url}: {e}"))?;
    let base: http::Uri = format!(
        "{}://{}",
        uri.scheme_str().unwrap_or("https"),
        uri.authority().map(|a| a.as_str()).unwrap_or("")
    )
    .parse()
    .map_err(|e| format!("invalid webhook url {url}: {e}"))?;
    let mut config = kube::Config::new(base);
    if let Some(bundle) = hook
        .pointer("/clientConfig/caBundle")
        .and_then(Value::as_str)
    {
        let pem = base64::engine::general_purpose::STANDARD
            .decode(bundle)
            .map_err(|e| format!("invalid caBundle: {e}"))?;
        config.root_cert =
            Some(crate::tls::pem_to_der(&pem).map_err(|e| format!("invalid caBundle: {e}"))?);
    }
    let client = kube::Client::try_from(config).map_err(|e| format!("Post \"{url}\": {e}"))?;
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    let request = http::Request::post(path)
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(serde_json::to_vec(&body).map_err(|e| e.to_string())?)
        .map_err(|e| e.to_string())?;
    let reply: Value = client
        .request(request)
        .await
        .map_err(|e| format!("Post \"{url}\": {e}"))?;
    reply
        .get("response")
        .cloned()
        .ok_or_else(|| format!("Post \"{url}\": webhook response has no response field"))
}
