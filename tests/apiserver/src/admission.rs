//! Admission webhooks, called as kube-apiserver calls them (dispatchers under
//! `k8s.io/apiserver/pkg/admission/plugin/webhook/{mutating,validating}`):
//!
//! - configurations sorted by their name, webhooks in listed order; mutating webhooks one
//!   after another, validating webhooks concurrently, the first error (in completion order)
//!   answering the request;
//! - an `admission.k8s.io/v1` AdmissionReview with a new `uid` per call, POSTed over HTTPS
//!   (HTTP/1.1) to `clientConfig.url` or to a `clientConfig.service` resolved through the
//!   mapping tests set, trusting `caBundle` only, with `?timeout=Ns` on the URL and the call
//!   bounded by `timeoutSeconds` (default 10);
//! - the response verified like `VerifyAdmissionResponse` (v1): envelope, `uid`, the
//!   `patch`/`patchType` pairing, no patch from a validating webhook; a mismatch is a call
//!   failure handled by `failurePolicy`;
//! - `patch` decoded like Go's `[]byte` (see [`patch_bytes`]), applied to the current
//!   object; a patch that does not apply is a 500 whatever the policy;
//! - `reinvocationPolicy: IfNeeded` (one more round), dry-run refused for webhooks with side
//!   effects, warnings collected for `Warning: 299` headers.
//!
//! - `matchConditions` (CEL, see `matchconditions.rs`) evaluated after the rules and
//!   selectors, on the object as earlier mutating webhooks left it; any false skips the
//!   webhook, an evaluation error under `failurePolicy: Fail` is a 403.
//!
//! Not emulated: `matchPolicy: Equivalent` conversion (`kind`/`resource`
//! always equal `requestKind`/`requestResource`), auditAnnotations, metrics.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use bytes::Bytes;
use futures::StreamExt;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use rustls::pki_types::{CertificateDer, ServerName};
use serde_json::{Value, json};

use crate::error::ApiError;
use crate::matchconditions;
use crate::meta;
use crate::registry::GroupResource;
use crate::selector::matches_selector_object;
use crate::server::Api;
use crate::writes::Target;

const GROUP: &str = "admissionregistration.k8s.io";

/// What is being admitted.
#[derive(Clone, Copy)]
pub struct Review<'a> {
    /// The addressed object; its name is the one on the request (empty for `generateName`).
    pub target: &'a Target,
    /// `CREATE`, `UPDATE` or `DELETE`.
    pub operation: &'static str,
    /// The new object (none for DELETE).
    pub object: Option<&'a Value>,
    /// The old object (none for CREATE).
    pub old_object: Option<&'a Value>,
    /// Whether the request is a dry run.
    pub dry_run: bool,
    /// `CreateOptions`, `UpdateOptions` or `DeleteOptions` (`meta.k8s.io/v1`).
    pub options: &'a Value,
}

/// `clientConfig.service` → where it listens: `(namespace, name, port)` to an address.
pub type Services = Mutex<HashMap<(String, String, u16), SocketAddr>>;

/// Per API request: who asks (for `userInfo`) and the warnings webhooks returned.
pub struct RequestContext {
    user: Value,
    warnings: Mutex<Vec<String>>,
}

tokio::task_local! {
    static CONTEXT: Arc<RequestContext>;
}

/// Runs one API request with `user` as the AdmissionReview's `userInfo`; returns its output
/// and the distinct warnings webhooks gave, in order.
pub async fn with_context<F: Future>(user: Value, work: F) -> (F::Output, Vec<String>) {
    let context = Arc::new(RequestContext {
        user,
        warnings: Mutex::new(Vec::new()),
    });
    let output = CONTEXT.scope(context.clone(), work).await;
    let warnings = std::mem::take(&mut *context.warnings.lock().expect("warnings lock"));
    (output, warnings)
}

fn add_warning(text: &str) {
    // Outside a request (preloading objects) there is nobody to warn.
    let _ = CONTEXT.try_with(|c| {
        let mut warnings = c.warnings.lock().expect("warnings lock");
        // The apiserver's recorder drops duplicates.
        if !warnings.iter().any(|w| w == text) {
            warnings.push(text.to_string());
        }
    });
}

fn user_info() -> Value {
    CONTEXT
        .try_with(|c| c.user.clone())
        .unwrap_or_else(|_| json!({ "username": "system:apiserver", "groups": ["system:masters"] }))
}

/// Refuses webhook configurations whose `matchConditions` are invalid (too many, a name
/// missing, not a qualified name or repeated, an expression missing or not compiling to
/// bool: see [`matchconditions::validate`]). Returns the offending fields, e.g.
/// `webhooks[0].matchConditions[1].expression`.
pub fn refuse_match_conditions(target: &Target, object: &Value) -> Vec<(String, String)> {
    let rt = &target.rt;
    if rt.group != GROUP || !rt.plural.ends_with("webhookconfigurations") {
        return Vec::new();
    }
    webhooks(object)
        .enumerate()
        .flat_map(|(i, hook)| {
            matchconditions::validate(
                &format!("webhooks[{i}].matchConditions"),
                hook.get("matchConditions").unwrap_or(&Value::Null),
            )
        })
        .collect()
}

/// Evaluates a webhook's `matchConditions` against the request as it stands: whether to
/// call it. An evaluation failure under `failurePolicy: Fail` is the real server's
/// `403 Forbidden` (`apierrors.NewForbidden` in `ShouldCallHook`).
fn conditions_match(hook: &Value, review: &Review<'_>) -> Result<bool, ApiError> {
    if hook
        .get("matchConditions")
        .and_then(Value::as_array)
        .is_none_or(|c| c.is_empty())
    {
        return Ok(true);
    }
    let mut request = review_body(review, "")["request"].take();
    if let Some(fields) = request.as_object_mut() {
        // The CEL `request` has neither the uid nor the objects (they are variables).
        for field in ["uid", "object", "oldObject"] {
            fields.remove(field);
        }
    }
    let inputs = matchconditions::Inputs {
        object: review.object,
        old_object: review.old_object,
        request: &request,
    };
    match matchconditions::decide(hook, &inputs) {
        matchconditions::Decision::Call => Ok(true),
        matchconditions::Decision::Skip => Ok(false),
        matchconditions::Decision::Fail(reason) => {
            let rt = &review.target.rt;
            let resource = if rt.group.is_empty() {
                rt.plural.clone()
            } else {
                format!("{}.{}", rt.plural, rt.group)
            };
            let object = &review.target.name;
            tracing::warn!(webhook = name(hook), %reason, "failed evaluating match conditions, failing closed");
            Err(ApiError::forbidden(if object.is_empty() {
                format!("{resource} is forbidden: {reason}")
            } else {
                format!("{resource} \"{object}\" is forbidden: {reason}")
            }))
        }
    }
}

fn webhooks(config: &Value) -> impl Iterator<Item = &Value> {
    config
        .get("webhooks")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
}

/// Runs the mutating webhooks: round 0 over all that match, then, if any changed the object,
/// round 1 over the `IfNeeded` ones invoked before a later change (the real dispatcher's
/// reinvocation context). Returns the mutated object when any webhook patched it.
///
/// # Errors
/// A denial, a call failure under `failurePolicy: Fail`, a patch that does not apply (500),
/// a patch on DELETE (500), a dry run to a webhook with side effects (400).
pub async fn mutate(api: &Api, review: &Review<'_>) -> Result<Option<Value>, ApiError> {
    let hooks = matching(api, "mutatingwebhookconfigurations", review);
    let mut object = review.object.cloned();
    let mut any_change = false;
    let mut invoked_if_needed = HashSet::new();
    let mut reinvoke = HashSet::new();
    for round in 0..2 {
        if round == 1 && !any_change {
            break;
        }
        for (i, hook) in hooks.iter().enumerate() {
            if round == 1 && !reinvoke.contains(&i) {
                continue;
            }
            let current = Review {
                object: object.as_ref(),
                ..*review
            };
            // The object selector sees the object as earlier webhooks left it.
            if !object_selector_matches(hook.get("objectSelector"), &current) {
                continue;
            }
            // So do the match conditions.
            if !conditions_match(hook, &current)? {
                continue;
            }
            let outcome = call(api, hook, &current, true)
                .await
                .and_then(|patch| decode_patch(&patch));
            let changed = match settle(hook, outcome)? {
                Some(Some(ops)) => apply_patch(hook, &ops, &mut object)?,
                _ => false,
            };
            if changed {
                any_change = true;
                reinvoke.extend(invoked_if_needed.drain());
            }
            if hook.get("reinvocationPolicy").and_then(Value::as_str) == Some("IfNeeded") {
                invoked_if_needed.insert(i);
            }
        }
    }
    Ok(object.filter(|_| any_change))
}

/// Runs the matching validating webhooks concurrently; every call finishes, then the first
/// error to arrive answers (the real dispatcher collects errors and returns the first).
///
/// # Errors
/// A denial, a call failure under `failurePolicy: Fail`, a dry run to a webhook with side
/// effects (400).
pub async fn validate(api: &Api, review: &Review<'_>) -> Result<(), ApiError> {
    let mut hooks = Vec::new();
    // Decided one by one before any call, as the dispatcher's `ShouldCallHook` does: a
    // condition failing under `Fail` answers before any webhook is called.
    for hook in matching(api, "validatingwebhookconfigurations", review) {
        if object_selector_matches(hook.get("objectSelector"), review)
            && conditions_match(&hook, review)?
        {
            hooks.push(hook);
        }
    }
    let calls: futures::stream::FuturesUnordered<_> = hooks
        .iter()
        .map(|hook| async move { settle(hook, call(api, hook, review, false).await).map(drop) })
        .collect();
    let results: Vec<Result<(), ApiError>> = calls.collect().await;
    results.into_iter().collect()
}

fn name(hook: &Value) -> &str {
    hook.get("name").and_then(Value::as_str).unwrap_or("")
}

/// Why a call did not produce a usable answer.
enum Failure {
    /// `ErrCallingWebhook`: `failurePolicy` decides.
    Call(String),
    /// Any other error, returned whatever the policy.
    Final(ApiError),
}

/// Applies `failurePolicy`: `Ok(None)` for an ignored call failure.
fn settle<T>(hook: &Value, outcome: Result<T, Failure>) -> Result<Option<T>, ApiError> {
    match outcome {
        Ok(value) => Ok(Some(value)),
        Err(Failure::Final(error)) => Err(error),
        Err(Failure::Call(reason))
            if hook.get("failurePolicy").and_then(Value::as_str) == Some("Ignore") =>
        {
            tracing::warn!(webhook = name(hook), %reason, "failed calling webhook, failing open");
            Ok(None)
        }
        Err(Failure::Call(reason)) => Err(ApiError::internal(format!(
            "Internal error occurred: failed calling webhook \"{}\": {reason}",
            name(hook)
        ))),
    }
}

/// `jsonpatch.DecodePatch`: an empty patch is none; anything but a JSON array of objects is
/// a call failure.
fn decode_patch(patch: &[u8]) -> Result<Option<Vec<Value>>, Failure> {
    if patch.is_empty() {
        return Ok(None);
    }
    let undecodable = |e: String| {
        Failure::Call(format!(
            "received undecodable patch in webhook response: {e}"
        ))
    };
    let ops: Vec<Value> = serde_json::from_slice(patch).map_err(|e| undecodable(e.to_string()))?;
    if !ops.iter().all(Value::is_object) {
        return Err(undecodable("an operation is not an object".into()));
    }
    Ok(Some(ops).filter(|ops| !ops.is_empty()))
}

/// Applies a decoded patch; returns whether the object changed. Failing to apply is an
/// internal error (500) whatever the policy, as in the real dispatcher.
fn apply_patch(hook: &Value, ops: &[Value], object: &mut Option<Value>) -> Result<bool, ApiError> {
    let Some(current) = object.as_mut() else {
        return Err(ApiError::internal(format!(
            "Internal error occurred: admission webhook \"{}\" attempted to modify the object, which is not supported for this operation",
            name(hook)
        )));
    };
    let cannot_apply = |e: String| ApiError::internal(format!("Internal error occurred: {e}"));
    let patch: json_patch::Patch = serde_json::from_value(Value::Array(ops.to_vec()))
        .map_err(|e| cannot_apply(e.to_string()))?;
    let mut patched = current.clone();
    json_patch::patch(&mut patched, &patch).map_err(|e| cannot_apply(e.to_string()))?;
    let changed = patched != *current;
    *current = patched;
    Ok(changed)
}

/// Webhooks whose rules and namespaceSelector match, configurations sorted by name; the
/// objectSelector is left to the caller, as it depends on the object at call time.
fn matching(api: &Api, plural: &str, review: &Review<'_>) -> Vec<Value> {
    let rt = &review.target.rt;
    // Webhooks are never called for webhook configurations themselves.
    if rt.group == GROUP {
        return Vec::new();
    }
    let state = api.store.lock();
    let gr = GroupResource {
        group: GROUP.into(),
        resource: plural.into(),
    };
    let mut configs: Vec<&Value> = state.list(&gr, None).collect();
    if configs.is_empty() {
        return Vec::new();
    }
    configs.sort_by(|a, b| meta::name(a).cmp(meta::name(b)));
    let own_labels = review
        .object
        .or(review.old_object)
        .map(meta::labels)
        .unwrap_or(Value::Null);
    let ns_labels = if rt.plural == "namespaces" && rt.group.is_empty() {
        // A Namespace is selected by its own labels.
        Some(own_labels)
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
    configs
        .into_iter()
        .flat_map(webhooks)
        .filter(|hook| {
            rules_match(hook, review, &resource)
                && ns_labels
                    .as_ref()
                    .is_none_or(|l| matches_selector_object(hook.get("namespaceSelector"), l))
        })
        .cloned()
        .collect()
}

fn rules_match(hook: &Value, review: &Review<'_>, resource: &str) -> bool {
    let rt = &review.target.rt;
    let status = review.target.status;
    hook.get("rules")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .any(|rule| {
            let has = |field: &str, want: &str| {
                rule.get(field)
                    .and_then(Value::as_array)
                    .is_some_and(|vals| vals.iter().any(|v| v == "*" || v == want))
            };
            let resource_ok = rule
                .get("resources")
                .and_then(Value::as_array)
                .is_some_and(|vals| {
                    vals.iter().filter_map(Value::as_str).any(|v| {
                        v == resource
                            || v == "*/*"
                            || (v == "*" && !status)
                            || (status && v == "*/status")
                            || (status && v == format!("{}/*", rt.plural))
                    })
                });
            let scope = rule.get("scope").and_then(Value::as_str).unwrap_or("*");
            let scope_ok = scope == "*" || (scope == "Namespaced") == rt.namespaced;
            has("operations", review.operation)
                && has("apiGroups", &rt.group)
                && has("apiVersions", &rt.version)
                && resource_ok
                && scope_ok
        })
}

/// `objectSelector`: an empty selector matches everything; otherwise the new or the old
/// object must match, and a missing object never does (`MatchObjectSelector`).
fn object_selector_matches(selector: Option<&Value>, review: &Review<'_>) -> bool {
    let empty = selector.is_none_or(|s| {
        s.is_null()
            || (s
                .get("matchLabels")
                .and_then(Value::as_object)
                .is_none_or(|m| m.is_empty())
                && s.get("matchExpressions")
                    .and_then(Value::as_array)
                    .is_none_or(|e| e.is_empty()))
    });
    empty
        || [review.object, review.old_object]
            .into_iter()
            .flatten()
            .any(|o| matches_selector_object(selector, &meta::labels(o)))
}

fn review_body(review: &Review<'_>, uid: &str) -> Value {
    let rt = &review.target.rt;
    let gvk = json!({ "group": rt.group, "version": rt.version, "kind": rt.kind });
    let gvr = json!({ "group": rt.group, "version": rt.version, "resource": rt.plural });
    let mut request = json!({
        "uid": uid,
        "kind": gvk, "resource": gvr, "requestKind": gvk, "requestResource": gvr,
        "name": review.target.name,
        "operation": review.operation,
        "userInfo": user_info(),
        "object": review.object.cloned().unwrap_or(Value::Null),
        "oldObject": review.old_object.cloned().unwrap_or(Value::Null),
        "dryRun": review.dry_run,
        "options": review.options,
    });
    if !review.target.namespace.is_empty() {
        request["namespace"] = json!(review.target.namespace);
    }
    if review.target.status {
        request["subResource"] = json!("status");
        request["requestSubResource"] = json!("status");
    }
    json!({ "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": request })
}

/// One call: the dry-run check, the POST bounded by the timeout, the response verified.
/// Returns the patch bytes of an allowing answer (empty when none).
async fn call(
    api: &Api,
    hook: &Value,
    review: &Review<'_>,
    mutating: bool,
) -> Result<Vec<u8>, Failure> {
    let hook_name = name(hook);
    if review.dry_run {
        match hook.get("sideEffects").and_then(Value::as_str) {
            None => return Err(Failure::Call("Webhook SideEffects is nil".into())),
            Some("None" | "NoneOnDryRun") => {}
            Some(_) => {
                return Err(Failure::Final(ApiError::bad_request(format!(
                    "admission webhook \"{hook_name}\" does not support dry run"
                ))));
            }
        }
    }
    let seconds = hook
        .get("timeoutSeconds")
        .and_then(Value::as_u64)
        .unwrap_or(10);
    let endpoint = endpoint(api, hook, seconds).map_err(Failure::Call)?;
    let uid = meta::new_uid();
    let body =
        serde_json::to_vec(&review_body(review, &uid)).map_err(|e| Failure::Call(e.to_string()))?;
    let failed = |e: String| {
        Failure::Call(format!(
            "failed to call webhook: Post \"{}\": {e}",
            endpoint.url
        ))
    };
    let sent =
        tokio::time::timeout(Duration::from_secs(seconds), send(&endpoint, hook, body)).await;
    let (status, reply) = match sent {
        Err(_) => return Err(failed("context deadline exceeded".into())),
        Ok(Err(e)) => return Err(failed(e)),
        Ok(Ok(reply)) => reply,
    };
    if !status.is_success() {
        return Err(Failure::Call(format!(
            "failed to call webhook: the server responded with the status code {} but did not return more information (post {})",
            status.as_u16(),
            endpoint.url
        )));
    }
    let reply: Value = serde_json::from_slice(&reply)
        .map_err(|e| Failure::Call(format!("failed to call webhook: {e}")))?;
    let response = verify(&reply, &uid, mutating)
        .map_err(|e| Failure::Call(format!("received invalid webhook response: {e}")))?;
    for warning in response
        .get("warnings")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
    {
        add_warning(warning);
    }
    let patch = patch_bytes(response.get("patch"))
        .map_err(|e| Failure::Call(format!("failed to call webhook: {e}")))?;
    if response.get("allowed").and_then(Value::as_bool) != Some(true) {
        return Err(Failure::Final(denial(hook_name, response)));
    }
    if !patch.is_empty() && response.get("patchType").and_then(Value::as_str) != Some("JSONPatch") {
        return Err(Failure::Call(format!(
            "unsupported patch type {}",
            response.get("patchType").unwrap_or(&Value::Null)
        )));
    }
    Ok(patch)
}

/// `VerifyAdmissionResponse` for v1: the envelope, the uid, the patch/patchType pairing.
fn verify<'a>(reply: &'a Value, uid: &str, mutating: bool) -> Result<&'a Value, String> {
    let api_version = reply
        .get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or("");
    let kind = reply.get("kind").and_then(Value::as_str).unwrap_or("");
    let response = reply
        .get("response")
        .filter(|r| !r.is_null())
        .ok_or("webhook response was absent")?;
    if (api_version, kind) != ("admission.k8s.io/v1", "AdmissionReview") {
        return Err(format!(
            "expected webhook response of admission.k8s.io/v1, Kind=AdmissionReview, got {api_version}, Kind={kind}"
        ));
    }
    let got = response.get("uid").and_then(Value::as_str).unwrap_or("");
    if got != uid {
        return Err(format!("expected response.uid=\"{uid}\", got \"{got}\""));
    }
    let has_patch = response
        .get("patch")
        .is_some_and(|p| !p.is_null() && p != "" && p != &json!([]));
    let patch_type = response
        .get("patchType")
        .filter(|t| !t.is_null())
        .map(|t| t.as_str().unwrap_or("?"));
    if mutating {
        if has_patch && patch_type.is_none_or(str::is_empty) {
            return Err("webhook returned response.patch but not response.patchType".into());
        }
        if patch_type.is_some_and(|t| !t.is_empty()) && !has_patch {
            return Err("webhook returned response.patchType but not response.patch".into());
        }
    } else {
        if has_patch {
            return Err("validating webhook may not return response.patch".into());
        }
        if patch_type.is_some() {
            return Err("validating webhook may not return response.patchType".into());
        }
    }
    Ok(response)
}

/// `patch` as Go's `encoding/json` fills a `[]byte` (the apiserver decodes with
/// `sigs.k8s.io/json`, a fork of it, `decode.go`): a string is standard padded base64, an
/// array is decoded element by element into bytes (each a number 0–255), null is no patch.
/// kube-rs serializes `AdmissionResponse.patch` as such an array, so both must work.
fn patch_bytes(patch: Option<&Value>) -> Result<Vec<u8>, String> {
    match patch {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::String(text)) => base64::engine::general_purpose::STANDARD
            .decode(text)
            .map_err(|e| format!("illegal base64 data in response.patch: {e}")),
        Some(Value::Array(items)) => items
            .iter()
            .map(|item| {
                item.as_u64()
                    .and_then(|n| u8::try_from(n).ok())
                    .ok_or_else(|| {
                        format!("json: cannot unmarshal number {item} into Go struct field AdmissionResponse.response.patch of type uint8")
                    })
            })
            .collect(),
        Some(other) => Err(format!(
            "json: cannot unmarshal {other} into Go struct field AdmissionResponse.response.patch of type []uint8"
        )),
    }
}

/// A denial in the apiserver's format, pinned to `ToStatusErr` as of kubernetes#77022
/// (v1.15): codes below 400 become 400. Newer revisions map a missing code to 403 instead.
fn denial(hook_name: &str, response: &Value) -> ApiError {
    let status = response.get("status").cloned().unwrap_or(json!({}));
    let code = status
        .get("code")
        .and_then(Value::as_u64)
        .and_then(|c| u16::try_from(c).ok())
        .filter(|c| *c >= 400)
        .unwrap_or(400);
    let message = status
        .get("message")
        .and_then(Value::as_str)
        .filter(|m| !m.is_empty())
        .or_else(|| {
            status
                .get("reason")
                .and_then(Value::as_str)
                .filter(|r| !r.is_empty())
        });
    let reason = match code {
        403 => "Forbidden",
        404 => "NotFound",
        409 => "Conflict",
        422 => "Invalid",
        400 => "BadRequest",
        _ => "",
    };
    let text = match message {
        Some(message) => format!("admission webhook \"{hook_name}\" denied the request: {message}"),
        None => format!("admission webhook \"{hook_name}\" denied the request without explanation"),
    };
    ApiError::custom(code, reason, text)
}

/// Where and how to reach a webhook.
struct Endpoint {
    /// The URL as the real server reports it in errors, `?timeout=` included.
    url: String,
    /// Address to connect to.
    connect: String,
    /// TLS server name to verify.
    server_name: String,
    /// `Host` header.
    authority: String,
    /// Request target.
    path_and_query: String,
}

fn endpoint(api: &Api, hook: &Value, seconds: u64) -> Result<Endpoint, String> {
    let config = hook
        .get("clientConfig")
        .ok_or("webhook has no clientConfig")?;
    let query = format!("timeout={seconds}s");
    if let Some(url) = config.get("url").and_then(Value::as_str) {
        let uri: http::Uri = url
            .parse()
            .map_err(|e| format!("invalid webhook url {url}: {e}"))?;
        if uri.scheme_str() != Some("https") {
            return Err(format!("webhook url {url} is not https"));
        }
        let host = uri
            .host()
            .ok_or_else(|| format!("webhook url {url} has no host"))?;
        let port = uri.port_u16().unwrap_or(443);
        let path = uri.path();
        return Ok(Endpoint {
            url: format!("{url}?{query}"),
            connect: format!("{host}:{port}"),
            server_name: host.trim_matches(['[', ']']).to_string(),
            authority: uri.authority().map(|a| a.to_string()).unwrap_or_default(),
            path_and_query: format!("{path}?{query}"),
        });
    }
    let service = config
        .get("service")
        .ok_or("webhook has neither url nor service")?;
    let field = |f: &str| service.get(f).and_then(Value::as_str).unwrap_or("");
    let (namespace, svc) = (field("namespace"), field("name"));
    let port = service
        .get("port")
        .and_then(Value::as_u64)
        .and_then(|p| u16::try_from(p).ok())
        .unwrap_or(443);
    let path = Some(field("path")).filter(|p| !p.is_empty()).unwrap_or("/");
    let host = format!("{svc}.{namespace}.svc");
    let url = format!("https://{host}:{port}{path}?{query}");
    let address = api
        .services
        .lock()
        .expect("services lock")
        .get(&(namespace.to_string(), svc.to_string(), port))
        .copied()
        .ok_or_else(|| {
            format!("failed to call webhook: Post \"{url}\": dial tcp: lookup {host}: no such host")
        })?;
    Ok(Endpoint {
        url,
        connect: address.to_string(),
        server_name: host.clone(),
        authority: format!("{host}:{port}"),
        path_and_query: format!("{path}?{query}"),
    })
}

/// POSTs the review over HTTPS/1.1, trusting only the `caBundle`.
async fn send(
    endpoint: &Endpoint,
    hook: &Value,
    body: Vec<u8>,
) -> Result<(http::StatusCode, Bytes), String> {
    let bundle = hook
        .pointer("/clientConfig/caBundle")
        .and_then(Value::as_str)
        .ok_or("the test API server has no system roots: set clientConfig.caBundle")?;
    let pem = base64::engine::general_purpose::STANDARD
        .decode(bundle)
        .map_err(|e| format!("invalid caBundle: {e}"))?;
    let mut roots = rustls::RootCertStore::empty();
    for der in crate::tls::pem_to_der(&pem).map_err(|e| format!("invalid caBundle: {e}"))? {
        roots
            .add(CertificateDer::from(der))
            .map_err(|e| format!("invalid caBundle: {e}"))?;
    }
    let mut tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| e.to_string())?
    .with_root_certificates(roots)
    .with_no_client_auth();
    tls.alpn_protocols = vec![b"http/1.1".to_vec()];
    let server_name =
        ServerName::try_from(endpoint.server_name.clone()).map_err(|e| e.to_string())?;
    let tcp = tokio::net::TcpStream::connect(&endpoint.connect)
        .await
        .map_err(|e| format!("dial tcp {}: {e}", endpoint.connect))?;
    let stream = tokio_rustls::TlsConnector::from(Arc::new(tls))
        .connect(server_name, tcp)
        .await
        .map_err(|e| format!("tls: {e}"))?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| e.to_string())?;
    // One request per connection: the driver ends when the exchange is over.
    tokio::spawn(connection);
    let request = http::Request::post(endpoint.path_and_query.as_str())
        .header(http::header::HOST, endpoint.authority.as_str())
        .header(http::header::CONTENT_TYPE, "application/json")
        .header(http::header::ACCEPT, "application/json")
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| e.to_string())?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| e.to_string())?;
    let status = response.status();
    let bytes = response
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    Ok((status, bytes))
}
