//! The decisions of wasm-operator's Postgres plugins.
//!
//! Three plugins, one per kind of [`postgres_api`], and an admission-only
//! one for Pods:
//!
//! - [`PostgresServerPlugin`] (`postgres-server`): checks that a registered
//!   server answers and records its version.
//! - [`DatabasePlugin`] (`postgres-database`): a database, its owner role and
//!   a credentials Secret on a granted PostgresServer.
//! - [`DatabaseUserPlugin`] (`postgres-user`): an extra login role with an
//!   access profile (`readOnly`, `readWrite`, `owner`) on a Database.
//! - [`CredentialsInjectorPlugin`] (`postgres-inject`): puts the credentials
//!   of Databases and DatabaseUsers into annotated Pods as `secretKeyRef`s
//!   and a Service Binding volume.
//!
//! Every reconcile observes first (read-only queries) and plans only the
//! statements that are needed, so a converged object yields an empty SQL
//! plan and anything repaired is reported in a `DriftRepaired` event.
//! Passwords live only in the credentials Secrets; PostgreSQL gets SCRAM
//! verifiers, in statements marked sensitive.
//!
//! The Database and DatabaseUser plugins also decide admission: they refuse
//! at `kubectl apply` every spec reconcile would refuse (the same checks,
//! the same messages), refuse changes to fields that cannot change, and
//! write their defaults into the stored object (see their `admission`
//! modules).
//!
//! This crate is an `rlib` with native tests; the components are the
//! `postgres-{server,database,user,inject}-plugin` crates, which only call
//! `export_plugin!` (server) or `export_admission_plugin!` (the others)
//! on the types here.

#![warn(missing_docs)]

mod admission;
mod credentials;
mod database;
mod grants;
mod inject;
mod names;
mod outcome;
mod ownership;
mod password;
mod role;
mod rows;
mod scram;
mod server;
mod servers;
mod user;

#[cfg(test)]
mod examples;
#[cfg(test)]
mod fixtures;

use postgres_api::{GROUP, VERSION};
use wasm_operator_sdk::GroupVersionKind;

pub use database::DatabasePlugin;
pub use inject::{
    CONTAINERS_ANNOTATION, CredentialsInjectorPlugin, INJECT_ANNOTATION, INJECTED_ANNOTATION,
};
pub use password::parse_interval;
pub use scram::{ScramError, verify_scram_sha_256};
pub use server::PostgresServerPlugin;
pub use user::DatabaseUserPlugin;

/// The read-only statements the plugins run, for canned results in native
/// tests and benchmarks (`TestHost::with_query_result`).
pub mod queries {
    pub use crate::database::{
        FINALIZE_QUERY as DATABASE_FINALIZE, INSIDE_QUERY as DATABASE_INSIDE,
        OBSERVE_QUERY as DATABASE_OBSERVE, PRIMARY_QUERY as INSTANCE_PRIMARY,
        REPLICA_QUERY as INSTANCE_REPLICA,
    };
    pub use crate::grants::OBSERVE_QUERY as USER_OBSERVE;
    pub use crate::role::VERIFIER_QUERY as ROLE_VERIFIER;
    pub use crate::server::VERSION_QUERY as SERVER_VERSION;
    pub use crate::user::FINALIZE_QUERY as USER_FINALIZE;
}

/// The reasons of the `Ready=False` conditions and errors the plugins report.
pub mod reasons {
    pub use crate::database::{
        CREATING_REPLICA, DEDICATED_INSTANCE_UNSUPPORTED, DEDICATED_ONLY, FAILING_OVER,
        PROVISIONING, REPLICATING, SERVER_UNAVAILABLE, SPEC_IGNORED, STREAMING, VERSION_MISMATCH,
    };
    pub use crate::outcome::{DRIFT_REPAIRED, READY_REASON};
    pub use crate::ownership::{ALREADY_EXISTS, OWNED_BY_ANOTHER, PRIVILEGED_ROLE};
    pub use crate::server::SERVER_UNREACHABLE;
    pub use crate::servers::SERVER_NOT_ALLOWED;
    pub use crate::user::DATABASE_NOT_READY;
}

/// Length of generated passwords (letters and digits, about 190 bits).
pub const PASSWORD_LENGTH: usize = 32;

/// The `PostgresServer` kind.
#[must_use]
pub fn postgres_server_kind() -> GroupVersionKind {
    GroupVersionKind::new(GROUP, VERSION, "PostgresServer")
}

/// The `Database` kind.
#[must_use]
pub fn database_kind() -> GroupVersionKind {
    GroupVersionKind::new(GROUP, VERSION, "Database")
}

/// The `DatabaseUser` kind.
#[must_use]
pub fn database_user_kind() -> GroupVersionKind {
    GroupVersionKind::new(GROUP, VERSION, "DatabaseUser")
}

/// The core `v1 Secret` kind of the credentials children.
#[must_use]
pub fn secret_kind() -> GroupVersionKind {
    GroupVersionKind::core("v1", "Secret")
}

/// The Postgres plugins take no settings: a binding's settings must be `{}`.
#[derive(serde::Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct NoSettings {}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};
    use wasm_operator_sdk::Plugin;

    use super::*;

    /// The settings schema the plugins wrote by hand before deriving it from [`NoSettings`].
    fn hand_written_settings_schema() -> Value {
        json!({
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "type": "object",
            "additionalProperties": false
        })
    }

    #[test]
    fn every_plugin_accepts_only_empty_settings_as_the_hand_written_schema_did() {
        let hand_written = jsonschema::validator_for(&hand_written_settings_schema()).unwrap();
        for info in [
            PostgresServerPlugin::describe(),
            DatabasePlugin::describe(),
            DatabaseUserPlugin::describe(),
            CredentialsInjectorPlugin::describe(),
        ] {
            let derived = jsonschema::validator_for(&info.settings_schema).unwrap();
            assert!(hand_written.is_valid(&json!({})));
            assert!(derived.is_valid(&json!({})), "{}", info.name);
            for refused in [
                json!({"defaultAudience": "operators"}),
                json!({"server": {}}),
                json!([]),
                json!("none"),
                json!(null),
            ] {
                assert!(!hand_written.is_valid(&refused), "{refused}");
                assert!(!derived.is_valid(&refused), "{}: {refused}", info.name);
            }
        }
    }
}
