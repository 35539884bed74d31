//! The write path shared by create, replace, patch, apply and delete: server-owned fields,
//! the status subresource split, managedFields, schema, admission, `dryRun`, the
//! resourceVersion precondition and the no-op rule, then one commit under the store lock.

use std::sync::Arc;

use serde_json::{Value, json};

use crate::admission::{self, Review};
use crate::apply::{self, Applier};
use crate::error::{ApiError, success_status};
use crate::events;
use crate::gc::{self, Deleted, Propagation};
use crate::meta;
use crate::patch::{self, PatchKind};
use crate::prepare::{prepare, validate};
use crate::registry::{GroupResource, ResourceType};
use crate::schema;
use crate::server::Api;
use crate::store::ObjKey;

/// The object (or collection) a request addresses.
#[derive(Debug, Clone)]
pub struct Target {
    /// Its type, in the version the client used.
    pub rt: Arc<ResourceType>,
    /// Namespace from the URL (empty for cluster-scoped or all namespaces).
    pub namespace: String,
    /// Name from the URL (empty for collections).
    pub name: String,
    /// Whether the request is on the `/status` subresource.
    pub status: bool,
}

impl Target {
    /// Storage collection.
    pub fn gr(&self) -> GroupResource {
        self.rt.group_resource()
    }

    /// Storage key.
    pub fn key(&self) -> ObjKey {
        (self.namespace.clone(), self.name.clone())
    }
}

/// Options shared by writes.
#[derive(Debug, Clone, Default)]
pub struct WriteOptions {
    /// `dryRun=All`.
    pub dry_run: bool,
    /// `fieldManager`, or one derived from the User-Agent.
    pub manager: String,
    /// `fieldManager` as the client gave it (what admission's options carry).
    pub field_manager: Option<String>,
    /// `force=true` for apply.
    pub force: bool,
}

/// Options of a delete (query parameters and DeleteOptions body).
#[derive(Debug, Clone)]
pub struct DeleteOptions {
    /// `dryRun=All`.
    pub dry_run: bool,
    /// `propagationPolicy`.
    pub propagation: Propagation,
    /// `preconditions.uid`.
    pub uid: Option<String>,
    /// `preconditions.resourceVersion`.
    pub resource_version: Option<String>,
    /// The `meta.k8s.io/v1` DeleteOptions as the client sent them (body and query), for
    /// admission.
    pub options: Value,
}

/// Creates an object (POST).
///
/// # Errors
/// `AlreadyExists`, `Invalid`, a missing namespace, or an admission denial.
pub async fn create(
    api: &Api,
    target: &Target,
    body: Value,
    opts: &WriteOptions,
) -> Result<Value, ApiError> {
    if target.status {
        return Err(ApiError::method_not_allowed("POST"));
    }
    let mut target = target.clone();
    let mut body = events::from_view(&target.rt, body);
    let m = meta::metadata_mut(&mut body);
    let requested = m
        .get("name")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let mut name = m
        .get("name")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    if name.is_empty() {
        let prefix = m.get("generateName").and_then(Value::as_str).unwrap_or("");
        if prefix.is_empty() {
            return Err(ApiError::invalid(
                &target.rt.kind,
                &target.rt.group,
                "",
                &[(
                    "metadata.name".into(),
                    "Required value: name or generateName is required".into(),
                )],
            ));
        }
        name = format!("{prefix}{}", meta::random_suffix());
        m.insert("name".into(), json!(name));
    }
    target.name = name;
    place_namespace(&target, &mut body)?;
    let mut new = body;
    prepare(&target, None, &mut new);
    apply::record_update(None, &mut new, &target.rt, &opts.manager, false);
    // Admission sees the name of the request: empty when the server generates it.
    let admitted = Target {
        name: requested,
        ..target.clone()
    };
    admit(api, &admitted, "CREATE", None, &mut new, opts).await?;
    if opts.dry_run {
        return Ok(new);
    }
    commit(api, &target, None, new).map_err(Stale::into_error(&target))
}

fn place_namespace(target: &Target, body: &mut Value) -> Result<(), ApiError> {
    let m = meta::metadata_mut(body);
    if target.rt.namespaced {
        let given = m.get("namespace").and_then(Value::as_str).unwrap_or("");
        if !given.is_empty() && given != target.namespace {
            return Err(ApiError::bad_request(
                "the namespace of the provided object does not match the namespace sent on the request",
            ));
        }
        m.insert("namespace".into(), json!(target.namespace));
    } else {
        m.remove("namespace");
    }
    Ok(())
}

/// How an update computes its candidate from the current object.
pub enum Change {
    /// PUT with a full object.
    Replace(Value),
    /// PATCH of a non-apply kind.
    Patch(PatchKind, Value),
    /// Server-side apply.
    Apply(Value),
}

/// Replaces, patches or applies an object, retrying when it changed underneath (except for
/// PUT with a resourceVersion, which gets 409). Returns the object and whether it was created.
///
/// # Errors
/// `NotFound`, `Conflict`, `Invalid`, apply conflicts or an admission denial.
pub async fn update(
    api: &Api,
    target: &Target,
    change: &Change,
    opts: &WriteOptions,
) -> Result<(Value, bool), ApiError> {
    for _ in 0..8 {
        let current = api.store.lock().get(&target.gr(), &target.key()).cloned();
        let Some(old) = current else {
            let Change::Apply(applied) = change else {
                return Err(ApiError::not_found(
                    &target.rt.plural,
                    &target.rt.group,
                    &target.name,
                ));
            };
            if target.status {
                return Err(ApiError::not_found(
                    &target.rt.plural,
                    &target.rt.group,
                    &target.name,
                ));
            }
            let new = apply::apply(
                None,
                applied,
                &target.rt,
                &Applier {
                    manager: &opts.manager,
                    force: opts.force,
                    status: false,
                },
            )?;
            let mut new = events::from_view(&target.rt, new);
            meta::metadata_mut(&mut new).insert("name".into(), json!(target.name));
            place_namespace(target, &mut new)?;
            prepare(target, None, &mut new);
            admit(api, target, "CREATE", None, &mut new, opts).await?;
            if opts.dry_run {
                return Ok((new, true));
            }
            match commit(api, target, None, new) {
                Ok(v) => return Ok((v, true)),
                Err(Stale::Retry) => continue,
                Err(Stale::Api(e)) if e.reason == "AlreadyExists" => continue,
                Err(Stale::Api(e)) => return Err(e),
            }
        };
        // The change is written against the object as this resource's view shows it.
        let view = events::to_view(&target.rt, &old);
        let new = match change {
            Change::Replace(body) => {
                let given = body
                    .pointer("/metadata/resourceVersion")
                    .and_then(Value::as_str)
                    .unwrap_or("");
                if !given.is_empty() && given != meta::resource_version(&old).to_string() {
                    return Err(stale_conflict(target));
                }
                body.clone()
            }
            Change::Patch(kind, body) => {
                let mut v = view.clone().into_owned();
                match kind {
                    PatchKind::Json => patch::json(&mut v, body)?,
                    PatchKind::Strategic if !target.rt.custom => patch::strategic(&mut v, body),
                    _ => patch::merge(&mut v, body),
                }
                v
            }
            Change::Apply(applied) => apply::apply(
                Some(&view),
                applied,
                &target.rt,
                &Applier {
                    manager: &opts.manager,
                    force: opts.force,
                    status: target.status,
                },
            )?,
        };
        let mut new = events::from_view(&target.rt, new);
        let name_given = new
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or(&target.name)
            .to_string();
        if name_given != target.name {
            return Err(ApiError::bad_request(
                "the name of the object does not match the name on the URL",
            ));
        }
        place_namespace(target, &mut new)?;
        prepare(target, Some(&old), &mut new);
        if !matches!(change, Change::Apply(_)) {
            apply::record_update(
                Some(&old),
                &mut new,
                &target.rt,
                &opts.manager,
                target.status,
            );
        }
        admit(api, target, "UPDATE", Some(&old), &mut new, opts).await?;
        if opts.dry_run {
            return Ok((new, false));
        }
        match commit(api, target, Some(&old), new) {
            Ok(v) => return Ok((v, false)),
            Err(Stale::Retry) if matches!(change, Change::Replace(_)) => {
                let Change::Replace(body) = change else {
                    unreachable!("checked above")
                };
                if body
                    .pointer("/metadata/resourceVersion")
                    .and_then(Value::as_str)
                    .is_some_and(|s| !s.is_empty())
                {
                    return Err(stale_conflict(target));
                }
            }
            Err(Stale::Retry) => {}
            Err(Stale::Api(e)) => return Err(e),
        }
    }
    Err(stale_conflict(target))
}

fn stale_conflict(target: &Target) -> ApiError {
    ApiError::conflict(
        &target.rt.plural,
        &target.rt.group,
        &target.name,
        "the object has been modified; please apply your changes to the latest version and try again",
    )
}

/// Deletes an object: 200 with the object while finalizers remain, else a success `Status`.
///
/// # Errors
/// `NotFound`, a failed precondition, or an admission denial.
pub async fn delete(api: &Api, target: &Target, opts: &DeleteOptions) -> Result<Value, ApiError> {
    let current = api.store.lock().get(&target.gr(), &target.key()).cloned();
    let Some(current) = current else {
        return Err(ApiError::not_found(
            &target.rt.plural,
            &target.rt.group,
            &target.name,
        ));
    };
    if let Some(uid) = opts.uid.as_deref().filter(|u| *u != meta::uid(&current)) {
        return Err(ApiError::conflict(
            &target.rt.plural,
            &target.rt.group,
            &target.name,
            &format!(
                "Precondition failed: UID in precondition: {uid}, UID in object meta: {}",
                meta::uid(&current)
            ),
        ));
    }
    if let Some(rv) = opts
        .resource_version
        .as_deref()
        .filter(|rv| *rv != meta::resource_version(&current).to_string())
    {
        return Err(ApiError::conflict(
            &target.rt.plural,
            &target.rt.group,
            &target.name,
            &format!(
                "Precondition failed: ResourceVersion in precondition: {rv}, ResourceVersion in object meta: {}",
                meta::resource_version(&current)
            ),
        ));
    }
    let review = Review {
        target,
        operation: "DELETE",
        object: None,
        old_object: Some(&current),
        dry_run: opts.dry_run,
        options: &opts.options,
    };
    // Mutating webhooks see DELETE too; one that patches fails the request.
    admission::mutate(api, &review).await?;
    admission::validate(api, &review).await?;
    if opts.dry_run {
        return Ok(current);
    }
    let mut state = api.store.lock();
    match gc::delete(&mut state, &target.gr(), &target.key(), opts.propagation) {
        None => Err(ApiError::not_found(
            &target.rt.plural,
            &target.rt.group,
            &target.name,
        )),
        Some(Deleted::Pending(object)) => Ok(object),
        Some(Deleted::Removed(object)) => Ok(success_status(
            &target.rt.plural,
            &target.rt.group,
            &target.name,
            meta::uid(&object),
        )),
    }
}

/// Mutating webhooks, schema again, validation, then validating webhooks.
async fn admit(
    api: &Api,
    target: &Target,
    operation: &'static str,
    old: Option<&Value>,
    new: &mut Value,
    opts: &WriteOptions,
) -> Result<(), ApiError> {
    let options = admission_options(operation, opts);
    let dry_run = opts.dry_run;
    let mutated = {
        let review = Review {
            target,
            operation,
            object: Some(new),
            old_object: old,
            dry_run,
            options: &options,
        };
        admission::mutate(api, &review).await?
    };
    if let Some(mutated) = mutated {
        *new = mutated;
        if let Some(schema) = &target.rt.schema {
            schema::apply_defaults(new, schema);
            schema::prune(new, schema, true);
        }
    }
    validate(target, new)?;
    let review = Review {
        target,
        operation,
        object: Some(new),
        old_object: old,
        dry_run,
        options: &options,
    };
    admission::validate(api, &review).await
}

/// CreateOptions or UpdateOptions as admission receives them (a PATCH admits with
/// UpdateOptions, or CreateOptions when an apply creates).
fn admission_options(operation: &str, opts: &WriteOptions) -> Value {
    let kind = if operation == "CREATE" {
        "CreateOptions"
    } else {
        "UpdateOptions"
    };
    let mut options = json!({ "apiVersion": "meta.k8s.io/v1", "kind": kind });
    if opts.dry_run {
        options["dryRun"] = json!(["All"]);
    }
    if let Some(manager) = &opts.field_manager {
        options["fieldManager"] = json!(manager);
    }
    options
}

/// Why a commit did not happen.
enum Stale {
    /// The object changed since it was read: compute again.
    Retry,
    /// A definite error.
    Api(ApiError),
}

impl Stale {
    fn into_error(target: &Target) -> impl Fn(Stale) -> ApiError + '_ {
        move |s| match s {
            Stale::Retry => stale_conflict(target),
            Stale::Api(e) => e,
        }
    }
}

fn commit(api: &Api, target: &Target, base: Option<&Value>, new: Value) -> Result<Value, Stale> {
    let gr = target.gr();
    let key = target.key();
    let mut state = api.store.lock();
    let current = state.get(&gr, &key);
    match (base, current) {
        (None, Some(_)) => {
            return Err(Stale::Api(ApiError::already_exists(
                &target.rt.plural,
                &target.rt.group,
                &target.name,
            )));
        }
        (None, None) if target.rt.namespaced => {
            let ns = state.get(
                &GroupResource {
                    group: String::new(),
                    resource: "namespaces".into(),
                },
                &(String::new(), target.namespace.clone()),
            );
            match ns {
                None => {
                    return Err(Stale::Api(ApiError::not_found(
                        "namespaces",
                        "",
                        &target.namespace,
                    )));
                }
                Some(ns) if meta::is_deleting(ns) => {
                    return Err(Stale::Api(ApiError::forbidden(format!(
                        "{} \"{}\" is forbidden: unable to create new content in namespace {} because it is being terminated",
                        target.rt.plural, target.name, target.namespace
                    ))));
                }
                Some(_) => {}
            }
        }
        (Some(_), None) => {
            return Err(Stale::Api(ApiError::not_found(
                &target.rt.plural,
                &target.rt.group,
                &target.name,
            )));
        }
        (Some(base), Some(current))
            if meta::resource_version(base) != meta::resource_version(current) =>
        {
            return Err(Stale::Retry);
        }
        _ => {}
    }
    if let Some(base) = base {
        let mut candidate = new.clone();
        meta::set_resource_version(&mut candidate, meta::resource_version(base));
        if candidate == *base {
            return Ok(base.clone());
        }
        if meta::is_deleting(&new)
            && meta::finalizers(&new).is_empty()
            && gr.resource != "namespaces"
        {
            gc::remove(&mut state, &gr, &key, Propagation::Background);
            return Ok(new);
        }
    }
    let stored = state.put(&gr, new);
    if gr.group == "apiextensions.k8s.io" && gr.resource == "customresourcedefinitions" {
        state.registry.register_crd(&stored);
    }
    Ok(stored)
}
