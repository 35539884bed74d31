//! The `postgres-inject` plugin: database credentials injected into Pods at
//! admission, without a sidecar and without a secret in the Pod spec.
//!
//! A Pod annotated `systems.mikemiller.tech/inject-credentials: <name>[,<name>…]`
//! names Databases or DatabaseUsers of its own namespace (a Database wins
//! when both kinds have the name). On create, each container (or those
//! listed in `systems.mikemiller.tech/inject-containers`, which may name
//! init containers too) gets, for each resource:
//!
//! - env `PGHOST`, `PGPORT`, `PGDATABASE`, `PGUSER`, `PGPASSWORD` and
//!   `DATABASE_URL`, each a `secretKeyRef` to the resource's credentials
//!   Secret (`<name>-credentials` for a Database, `<name>-user-credentials`
//!   for a DatabaseUser), so no value is ever written into the Pod. The
//!   first resource gets these names as they are; each further one gets
//!   them prefixed with its name, upper-cased, every other character than a
//!   letter or digit made `_` (`reader-2` → `READER_2_PGHOST`).
//! - a projected volume of that Secret mounted read-only at
//!   `/bindings/<name>`, and `SERVICE_BINDING_ROOT=/bindings`: the Service
//!   Binding layout, which binding-aware libraries read. On a password
//!   rotation the volume's files update in place; env does not, until the
//!   Pod restarts.
//!
//! The Pod is stamped with `systems.mikemiller.tech/injected-credentials`
//! (the Secret names). A variable, volume or mount the Pod already has
//! (under the same name) is left as it is, which also makes a second pass
//! change nothing.
//!
//! Validation denies a create whose annotation names a resource that does
//! not exist in the Pod's namespace, or names another namespace
//! (`other/app`), or a DatabaseUser whose `spec.consumers.serviceAccounts`
//! does not list the Pod's ServiceAccount, or whose container list names a
//! container the Pod does not have. Updates, deletes and connects are allowed unchanged: a Pod's
//! containers cannot change after creation, and a running Pod must never
//! be blocked because a Database went away.
//!
//! The plugin only admits: its reconcile changes nothing.

mod pod;

use wasm_operator_sdk::{
    AdmissionPlugin, AdmissionRequest, Context, GroupVersionKind, Mutation, Object, Operation,
    Plugin, PluginError, PluginInfo, Request, Response, Validation,
};

use postgres_api::DatabaseUserSpec;

use crate::admission::verdict;
use crate::{NoSettings, database_kind, database_user_kind};

/// The annotation naming the resources whose credentials a Pod gets.
pub const INJECT_ANNOTATION: &str = "systems.mikemiller.tech/inject-credentials";
/// The annotation naming the containers that get them (default: every
/// container, not the init containers).
pub const CONTAINERS_ANNOTATION: &str = "systems.mikemiller.tech/inject-containers";
/// The annotation stamped on an injected Pod: the Secrets it was given.
pub const INJECTED_ANNOTATION: &str = "systems.mikemiller.tech/injected-credentials";
/// The reason of a refused annotation.
const INVALID_ANNOTATION: &str = "InvalidAnnotation";

/// The plugin's name: its binding's.
const NAME: &str = "postgres-inject";

/// The Pod credentials injector.
pub struct CredentialsInjectorPlugin;

/// One resource whose credentials a Pod gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Injection {
    /// The resource's name: of its binding directory and volume.
    pub(crate) name: String,
    /// Its credentials Secret.
    pub(crate) secret: String,
    /// What its variables' names start with (empty for the first resource).
    pub(crate) prefix: String,
}

impl Plugin for CredentialsInjectorPlugin {
    fn describe() -> PluginInfo {
        PluginInfo::new(
            NAME,
            env!("CARGO_PKG_VERSION"),
            GroupVersionKind::core("v1", "Pod"),
        )
        .read_kind(database_kind())
        .read_kind(database_user_kind())
        .settings::<NoSettings>()
    }

    /// Admission only: there is nothing to converge, so nothing changes.
    fn reconcile(_ctx: &Context<'_>, _req: &Request) -> Result<Response, PluginError> {
        Ok(Response::new())
    }
}

impl AdmissionPlugin for CredentialsInjectorPlugin {
    fn validate(ctx: &Context<'_>, req: &AdmissionRequest) -> Result<Validation, PluginError> {
        let Some(pod) = created(req) else {
            return Ok(Validation::allow());
        };
        verdict(plan(ctx, pod).map(|_| Vec::new()))
    }

    fn mutate(ctx: &Context<'_>, req: &AdmissionRequest) -> Result<Mutation, PluginError> {
        let Some(pod) = created(req) else {
            return Ok(Mutation::unchanged());
        };
        match plan(ctx, pod) {
            Ok((injections, containers)) => {
                let mut value = pod.as_value().clone();
                Ok(if pod::inject(&mut value, &injections, &containers) {
                    Mutation::replace(value)
                } else {
                    Mutation::unchanged()
                })
            }
            // Validation denies it with the same message; a mutation cannot.
            Err(error) if !error.retryable => Ok(Mutation::unchanged().warning(error.message)),
            Err(error) => Err(error),
        }
    }
}

/// The annotated Pod a create submits; `None` for anything else.
fn created(req: &AdmissionRequest) -> Option<&Object> {
    let pod = req.object.as_ref()?;
    (req.operation == Operation::Create && pod.annotations().contains_key(INJECT_ANNOTATION))
        .then_some(pod)
}

/// What the Pod gets, and which containers get it.
///
/// # Errors
/// A permanent `InvalidAnnotation` naming the annotation and the name it
/// cannot use; a retryable `KubeReadFailed` when the host refuses a read.
fn plan(ctx: &Context<'_>, pod: &Object) -> Result<(Vec<Injection>, Vec<String>), PluginError> {
    let annotations = pod.annotations();
    let namespace = pod.namespace().ok_or_else(|| {
        refused(
            INJECT_ANNOTATION,
            "the Pod has no namespace to look names up in",
        )
    })?;
    let names = list(
        annotations
            .get(INJECT_ANNOTATION)
            .copied()
            .unwrap_or_default(),
    );
    if names.is_empty() {
        return Err(refused(
            INJECT_ANNOTATION,
            "names no Database or DatabaseUser (use <name>[,<name>…])",
        ));
    }
    let mut injections = Vec::new();
    for (index, name) in names.iter().enumerate() {
        let name = own_namespace(name, namespace)?;
        let secret = secret_of(ctx, namespace, name, &service_account(pod))?;
        injections.push(Injection {
            name: name.to_owned(),
            secret,
            prefix: if index == 0 {
                String::new()
            } else {
                env_prefix(name)
            },
        });
    }
    let containers = match annotations.get(CONTAINERS_ANNOTATION) {
        Some(listed) => {
            let listed = list(listed);
            let present = pod::container_names(pod.as_value());
            if let Some(missing) = listed.iter().find(|name| !present.contains(name)) {
                return Err(refused(
                    CONTAINERS_ANNOTATION,
                    &format!("the Pod has no container {missing:?}"),
                ));
            }
            listed
        }
        None => pod::app_container_names(pod.as_value()),
    };
    Ok((injections, containers))
}

/// The comma-separated names of an annotation, trimmed, without empties
/// or repeats, in order.
fn list(text: &str) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    for name in text.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        if !names.iter().any(|n| n == name) {
            names.push(name.to_owned());
        }
    }
    names
}

/// `name` without a `namespace/` prefix naming the Pod's own namespace.
///
/// # Errors
/// `InvalidAnnotation` when it names another namespace.
fn own_namespace<'a>(name: &'a str, namespace: &str) -> Result<&'a str, PluginError> {
    match name.split_once('/') {
        None => Ok(name),
        Some((prefix, rest)) if prefix == namespace => Ok(rest),
        Some((prefix, _)) => Err(refused(
            INJECT_ANNOTATION,
            &format!(
                "{name:?} names namespace {prefix:?}; a Pod gets credentials only from its own \
                 namespace {namespace:?}"
            ),
        )),
    }
}

/// The credentials Secret of the Database, else the DatabaseUser, `name`.
///
/// # Errors
/// `InvalidAnnotation` when neither exists in `namespace`, or when the
/// DatabaseUser lists its consumers and `service_account` is not one.
fn secret_of(
    ctx: &Context<'_>,
    namespace: &str,
    name: &str,
    service_account: &str,
) -> Result<String, PluginError> {
    if ctx.get(&database_kind(), Some(namespace), name)?.is_some() {
        return Ok(crate::database::secret_name(name));
    }
    if let Some(user) = ctx.get(&database_user_kind(), Some(namespace), name)? {
        let consumers = user
            .spec::<DatabaseUserSpec>()
            .ok()
            .and_then(|spec| spec.consumers);
        if let Some(consumers) = consumers
            && !consumers
                .service_accounts
                .iter()
                .any(|sa| sa == service_account)
        {
            return Err(refused(
                INJECT_ANNOTATION,
                &format!(
                    "DatabaseUser {name:?} gives its credentials only to Pods of the \
                     ServiceAccounts {:?} (spec.consumers.serviceAccounts), not to {service_account:?}",
                    consumers.service_accounts
                ),
            ));
        }
        return Ok(crate::user::secret_name(name));
    }
    Err(refused(
        INJECT_ANNOTATION,
        &format!("no Database or DatabaseUser {name:?} in namespace {namespace:?}"),
    ))
}

/// The Pod's ServiceAccount: `spec.serviceAccountName`, else the
/// deprecated `spec.serviceAccount`, else `default`, as the API server's
/// ServiceAccount admission plugin sets it.
fn service_account(pod: &Object) -> String {
    let spec = &pod.as_value()["spec"];
    ["serviceAccountName", "serviceAccount"]
        .iter()
        .find_map(|field| spec[field].as_str().filter(|sa| !sa.is_empty()))
        .unwrap_or("default")
        .to_owned()
}

/// The prefix of a further resource's variables: `reader-2` → `READER_2_`.
/// A name starting with a digit gets a leading `_`, since variable names
/// may not start with one.
fn env_prefix(name: &str) -> String {
    let mut prefix: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect();
    if prefix.starts_with(|c: char| c.is_ascii_digit()) {
        prefix.insert(0, '_');
    }
    prefix.push('_');
    prefix
}

fn refused(annotation: &str, why: &str) -> PluginError {
    PluginError::permanent(INVALID_ANNOTATION, format!("{annotation}: {why}"))
}

#[cfg(test)]
mod tests;
