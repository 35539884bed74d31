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

fn from_object(key: &str, object: &Object) -> Result<Server, PluginError> {
    let spec: PostgresServerSpec = object.spec().map_err(|e| {
        PluginError::permanent(
            "InvalidServer",
            format!("PostgresServer {key} has an invalid spec: {e}"),
        )
    })?;
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
