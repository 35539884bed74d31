//! The PostgresServer an object uses: whether it may, and how clients reach it.

use postgres_api::PostgresServerSpec;
use wasm_operator_sdk::{Context, Object, PluginError, Request};

use crate::credentials::Endpoint;
use crate::ownership::Adoption;
use crate::postgres_server_kind;

/// The reason of `Ready=False` when the server is not among `req.servers`.
pub const SERVER_NOT_ALLOWED: &str = "ServerNotAllowed";

/// A granted server, read from the cache.
#[derive(Debug, Clone)]
pub(crate) struct Server {
    /// Where clients reach it.
    pub(crate) endpoint: Endpoint,
    /// Whether existing roles and databases may be adopted.
    pub(crate) adoption: Adoption,
}

/// Why a server cannot be used, for `Ready=False ServerNotAllowed`.
pub(crate) fn not_allowed_message(key: &str, kind: &str, namespace: &str) -> String {
    format!(
        "server {key} is not available to this {kind}: it either does not exist, does not list \
         namespace {namespace:?} in spec.allowedNamespaces, or is not granted to the plugin \
         binding (spec.grants.servers)"
    )
}

/// Whether the host granted `key` for this object.
pub(crate) fn is_granted(req: &Request, key: &str) -> bool {
    req.servers.iter().any(|server| server == key)
}

/// Reads the granted server `key` (`namespace/name`). `Ok(None)` when it is
/// not granted or not in the cache.
///
/// # Errors
/// A retryable `KubeReadFailed` when the host refuses the read, or
/// `InvalidServer` when its spec does not decode.
pub(crate) fn granted_server(
    ctx: &Context<'_>,
    req: &Request,
    key: &str,
) -> Result<Option<Server>, PluginError> {
    if !is_granted(req, key) {
        return Ok(None);
    }
    let Some((namespace, name)) = key.split_once('/') else {
        return Ok(None);
    };
    let Some(object) = ctx.get(&postgres_server_kind(), Some(namespace), name)? else {
        return Ok(None);
    };
    from_object(key, &object).map(Some)
}

/// What a PostgresServer says about objects of a namespace using it, as
/// admission reads it from the cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Consent {
    /// It lives in that namespace, or lists it (or `*`) in `spec.allowedNamespaces`.
    Given,
    /// It does not exist (yet).
    Missing,
    /// It exists and does not let that namespace use it.
    Refused,
}

/// Whether server `key` (`namespace/name`) lets objects of `namespace` use
/// it. Only `spec.allowedNamespaces` is read: whether the plugin binding is
/// granted the server (`spec.grants.servers`) is the host's decision, made
/// at reconcile time.
///
/// # Errors
/// A retryable `KubeReadFailed` when the host refuses the read, or
/// `InvalidServer` when the server's spec does not decode.
pub(crate) fn consent(
    ctx: &Context<'_>,
    key: &str,
    namespace: &str,
) -> Result<Consent, PluginError> {
    let Some((own, name)) = key.split_once('/') else {
        return Ok(Consent::Missing);
    };
    let Some(object) = ctx.get(&postgres_server_kind(), Some(own), name)? else {
        return Ok(Consent::Missing);
    };
    let spec = server_spec(key, &object)?;
    Ok(if spec.allows_namespace(own, namespace) {
        Consent::Given
    } else {
        Consent::Refused
    })
}

fn server_spec(key: &str, object: &Object) -> Result<PostgresServerSpec, PluginError> {
    object.spec().map_err(|e| {
        PluginError::permanent(
            "InvalidServer",
            format!("PostgresServer {key} has an invalid spec: {e}"),
        )
    })
}

fn from_object(key: &str, object: &Object) -> Result<Server, PluginError> {
    let spec = server_spec(key, object)?;
    Ok(Server {
        endpoint: Endpoint {
            host: spec.host,
            port: spec.port,
            ssl_mode: spec.ssl_mode,
        },
        adoption: Adoption {
            allowed: spec.adopt_existing,
        },
    })
}
