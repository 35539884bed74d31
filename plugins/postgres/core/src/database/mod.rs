//! The `postgres-database` plugin: a database, its owner role and a
//! credentials Secret, on a granted PostgresServer (`spec.serverRef`) or on
//! a dedicated instance of its own (see [`instance`]).
//!
//! Each reconcile validates the spec, observes the server (read-only), and
//! plans only the statements needed; a converged Database yields an empty
//! plan. The same validation runs at admission (see `admission`), which
//! also refuses changes to immutable fields and writes the defaults out.
//! Without `spec.serverRef` the plugin builds a PostgreSQL instance of the
//! Database's own (Pods, PVCs, Services, Secrets; a streaming replica with
//! `spec.replication`) and manages the database on its primary with the
//! same machinery. The role and database carry the Database's ownership
//! mark (see [`crate::ownership`]): what another resource owns, or what
//! exists without a mark, is refused and left as it is.

mod admission;
mod dedicated;
mod instance;
mod observe;
mod plan;
mod settings;

use postgres_api::{
    Binding, CommonStatus, CredentialsStatus, DatabaseSpec, DatabaseStatus, PasswordStatus,
    ReclaimPolicy,
};
use wasm_operator_sdk::{
    Condition, Conditions, Context, Event, FinalizeResponse, Object, Plugin, PluginError,
    PluginInfo, Request, Response, SqlPlan, SqlValue, finalizer_name, retain_on_delete,
};

use crate::admission::unchanged;
use crate::credentials::{Credentials, existing_password};
use crate::names::{
    check_connection_limit, check_database_name, check_identifier, check_literal, check_role_name,
    check_schema_name,
};
use crate::outcome::{READY_REASON, not_ready, status_is_current};
use crate::ownership::{Mark, Owner, claim_database, claim_role};
use crate::password::{self, Rotation, check_interval, rotation_annotation};
use crate::rows::{flag, int, text};
use crate::servers::{SERVER_NOT_ALLOWED, Server, granted_server, is_granted, not_allowed_message};
use crate::{database_kind, postgres_server_kind, secret_kind};

pub use dedicated::{DEDICATED_ONLY, SPEC_IGNORED, VERSION_MISMATCH};
pub use instance::{
    CREATING_REPLICA, FAILING_OVER, PRIMARY_QUERY, PROVISIONING, REPLICA_QUERY, REPLICATING,
    STREAMING,
};
pub use observe::{FINALIZE_QUERY, INSIDE_QUERY, OBSERVE_QUERY};

/// The reason of `Ready=False` a Database without `spec.serverRef` had
/// before dedicated instances existed; no longer reported.
pub const DEDICATED_INSTANCE_UNSUPPORTED: &str = "DedicatedInstanceUnsupported";
/// The reason of a finalize error when the server cannot be reached.
pub const SERVER_UNAVAILABLE: &str = "ServerUnavailable";

/// The Database plugin.
pub struct DatabasePlugin;

/// The plugin's name: its binding's and its finalizer's.
const NAME: &str = "postgres-database";

/// The name of a Database's credentials Secret.
#[must_use]
pub fn secret_name(database: &str) -> String {
    format!("{database}-credentials")
}

/// The spec, validated: what must exist on the server.
#[derive(Debug)]
pub(crate) struct Desired<'a> {
    /// Database name on the server.
    pub(crate) name: String,
    /// The field the name comes from: `spec.databaseName` or `metadata.name`.
    pub(crate) name_field: &'static str,
    /// Owner role.
    pub(crate) owner: &'a str,
    /// Encoding, when asked for.
    pub(crate) encoding: Option<&'a str>,
    /// Locale, when asked for.
    pub(crate) locale: Option<&'a str>,
    /// Extensions.
    pub(crate) extensions: &'a [String],
    /// Schemas.
    pub(crate) schemas: &'a [String],
    /// `datconnlimit` (-1: none).
    pub(crate) connection_limit: i64,
}

impl<'a> Desired<'a> {
    /// Validates the spec before any SQL: every check that needs neither
    /// the server nor the status. Reconcile and admission both call it, so
    /// what admission lets in is what reconcile accepts.
    ///
    /// # Errors
    /// `InvalidSpec` naming the first offending field.
    pub(crate) fn validate(object: &Object, spec: &'a DatabaseSpec) -> Result<Self, PluginError> {
        dedicated::check(spec)?;
        if spec.server_ref.is_none() {
            instance::check_name(object)?;
        }
        let (name, name_field) = database_name(object, spec);
        check_name(name_field, &name)?;
        let owner = spec.credentials.username.as_str();
        check_role_name("spec.credentials.username", owner)?;
        for (index, schema) in spec.schemas.iter().enumerate() {
            check_schema_name(&format!("spec.schemas[{index}]"), schema)?;
        }
        for (index, extension) in spec.extensions.iter().enumerate() {
            check_identifier(&format!("spec.extensions[{index}]"), extension)?;
        }
        if let Some(encoding) = &spec.encoding {
            check_literal("spec.encoding", encoding)?;
        }
        if let Some(locale) = &spec.locale {
            check_literal("spec.locale", locale)?;
        }
        let connection_limit =
            check_connection_limit("spec.connectionLimit", spec.connection_limit)?;
        if let Some(rotation) = &spec.credentials.password_rotation {
            check_interval(
                "spec.credentials.passwordRotation.interval",
                &rotation.interval,
            )?;
        }
        Ok(Self {
            name,
            name_field,
            owner,
            encoding: spec.encoding.as_deref(),
            locale: spec.locale.as_deref(),
            extensions: &spec.extensions,
            schemas: &spec.schemas,
            connection_limit,
        })
    }

    /// Checks that the name is the one the database was created with on
    /// server `key`, as recorded in the status.
    ///
    /// # Errors
    /// `InvalidSpec` naming the field of the name.
    fn check_name_kept(&self, status: &CredentialsStatus, key: &str) -> Result<(), PluginError> {
        match &status.database_name {
            Some(previous) if status.server.as_deref() == Some(key) => {
                unchanged(self.name_field, previous, &self.name)
            }
            _ => Ok(()),
        }
    }
}

/// The database's name on the server and the field it comes from:
/// `spec.databaseName`, or `metadata.name` when that is unset.
pub(crate) fn database_name(object: &Object, spec: &DatabaseSpec) -> (String, &'static str) {
    match &spec.database_name {
        Some(name) => (name.clone(), "spec.databaseName"),
        None => (object.name().to_owned(), "metadata.name"),
    }
}

/// Checks a database name taken from `field`.
///
/// # Errors
/// `InvalidSpec` naming `field`; for a `metadata.name` too long for
/// PostgreSQL, saying how to choose another name.
pub(crate) fn check_name(field: &str, name: &str) -> Result<(), PluginError> {
    if field == "metadata.name" {
        check_identifier(field, name).map_err(|e| {
            PluginError::invalid_spec(format!(
                "{} (set spec.databaseName to a shorter name)",
                e.message
            ))
        })?;
    }
    check_database_name(field, name)
}

impl Plugin for DatabasePlugin {
    fn describe() -> PluginInfo {
        let mut info = PluginInfo::new(NAME, env!("CARGO_PKG_VERSION"), database_kind())
            .child_kind(secret_kind());
        for kind in instance::child_kinds() {
            info = info.child_kind(kind);
        }
        info.read_kind(postgres_server_kind())
            .sql()
            .settings::<settings::DatabaseSettings>()
    }

    fn reconcile(ctx: &Context<'_>, req: &Request) -> Result<Response, PluginError> {
        let object = &req.object;
        let spec: DatabaseSpec = object.spec()?;
        let full: DatabaseStatus = object.status().unwrap_or_default();
        let namespace = namespace(object)?;
        let desired = Desired::validate(object, &spec)?;
        let Some(server_ref) = &spec.server_ref else {
            return instance::reconcile(ctx, req, &spec, &desired, full);
        };
        if full.current_primary.is_some() {
            return Err(server_ref_added());
        }
        let status = full.credentials;
        let key = server_ref.key(namespace);
        desired.check_name_kept(&status, &key)?;
        let secret = secret_name(object.name());
        let Some(server) = granted_server(ctx, req, &key)? else {
            let message = not_allowed_message(&key, "Database", namespace);
            return not_ready(
                ctx,
                req,
                &secret_name(object.name()),
                status,
                SERVER_NOT_ALLOWED,
                message,
            );
        };
        let managed = manage(ctx, req, &spec, &desired, &status, &key, &server)?;
        let ready = Condition::ready(
            READY_REASON,
            format!(
                "database {:?} owned by role {:?} is ready on server {key}",
                desired.name, desired.owner
            ),
        );
        let ignored = dedicated::ignored(&spec, &key, managed.server_version_num);
        let ignored_event = ignored.as_ref().and_then(|condition| {
            let previous = Conditions::from_object(object).get(SPEC_IGNORED);
            (previous.as_ref().map(|p| &p.message) != Some(&condition.message))
                .then(|| Event::warning(&condition.reason, "Reconcile", condition.message.clone()))
        });
        let mut all = Conditions::from_object(object).set(ready, ctx.now());
        all = match ignored {
            Some(condition) => all.set(condition, ctx.now()),
            None => all.remove(SPEC_IGNORED),
        };
        let status = CredentialsStatus {
            server: Some(key.clone()),
            database_name: Some(desired.name.clone()),
            binding: Some(Binding { name: secret }),
            password: Some(managed.password.clone()),
            common: CommonStatus {
                conditions: match all.into_value() {
                    serde_json::Value::Array(all) => all,
                    _ => Vec::new(),
                },
                ..CommonStatus::default()
            },
        };
        let mut response = Response::new().child(managed.secret).status_of(&status)?;
        for plan in managed.plans {
            response = response.sql(plan);
        }
        for event in managed.events.into_iter().chain(ignored_event) {
            response = response.event(event);
        }
        if let Some(after) = managed.requeue_after {
            response = response.requeue_after(after);
        }
        Ok(response)
    }

    fn finalize(ctx: &Context<'_>, req: &Request) -> Result<FinalizeResponse, PluginError> {
        let object = &req.object;
        let spec: DatabaseSpec = object.spec()?;
        let status: CredentialsStatus = object.status().unwrap_or_default();
        let namespace = namespace(object)?;
        let Some(server_ref) = &spec.server_ref else {
            return Ok(instance::finalize(req, &spec));
        };
        if spec.reclaim_policy == ReclaimPolicy::Retain {
            ctx.info(
                "reclaimPolicy is Retain: leaving the database and its role on the server",
                &[("database", object.name())],
            );
            return Ok(FinalizeResponse::done());
        }
        let key = status
            .server
            .clone()
            .unwrap_or_else(|| server_ref.key(namespace));
        let name = status
            .database_name
            .clone()
            .or_else(|| spec.database_name.clone())
            .unwrap_or_else(|| object.name().to_owned());
        if let Err(error) = check_database_name("database name", &name) {
            // Never created (validation refuses it), and never dropped: it may
            // be a server's own database.
            ctx.warn(
                "not dropping a database this plugin cannot have created",
                &[("reason", &error.message)],
            );
            return Ok(FinalizeResponse::done());
        }
        let owner = spec.credentials.username.as_str();
        let owner_droppable = check_role_name("spec.credentials.username", owner).is_ok();

        let unavailable = |why: String| {
            PluginError::retryable(
                SERVER_UNAVAILABLE,
                format!(
                    "cannot drop database {name:?} (reclaimPolicy Delete): {why}; fix the server, \
                     or remove the finalizer {} from the Database by hand to leave the \
                     database on the server",
                    finalizer_name(NAME)
                ),
            )
        };
        if !is_granted(req, &key) {
            return Err(unavailable(not_allowed_message(
                &key, "Database", namespace,
            )));
        }
        let params = [SqlValue::from(owner), SqlValue::from(name.as_str())];
        let result = ctx
            .query(&key, None, FINALIZE_QUERY, &params)
            .map_err(|e| unavailable(format!("server {key} cannot be queried: {}", e.message)))?;
        let version = int(&result, "server_version_num").unwrap_or(0);
        // Only what this Database created goes: never what it adopted, what
        // another resource owns, or what exists without a mark.
        let me = Owner::of(object)?;
        let drop_database = Mark::created_by(text(&result, "database_mark").as_deref(), &me);
        let drop_role = owner_droppable
            && Mark::created_by(text(&result, "role_mark").as_deref(), &me)
            && !flag(&result, "owns_other_databases");
        let mut response = FinalizeResponse::done();
        let mut kept = Vec::new();
        if !drop_database {
            kept.push(format!("database {name:?}"));
        }
        if !drop_role {
            kept.push(format!("role {owner:?}"));
        }
        if !kept.is_empty() {
            let message = format!(
                "keeping {} on server {key} (reclaimPolicy Delete): not created by this \
                 Database, adopted, or the role still owns other databases",
                kept.join(" and ")
            );
            ctx.warn(&message, &[("database", &name), ("server", &key)]);
            response = response.event(wasm_operator_sdk::Event::warning(
                "Kept",
                "DropDatabase",
                message,
            ));
        }
        if !(drop_database || drop_role) {
            return Ok(response);
        }
        let plan = plan::drop_plan(
            &key,
            drop_database.then_some(name.as_str()),
            drop_role.then_some(owner),
            version,
        )?;
        let dropped = match (drop_database, drop_role) {
            (true, true) => format!("database {name:?} and its owner role {owner:?}"),
            (true, false) => format!("database {name:?}"),
            _ => format!("role {owner:?}"),
        };
        Ok(response.sql(plan).event(wasm_operator_sdk::Event::normal(
            "Deleted",
            "DropDatabase",
            format!("dropping {dropped} on server {key} (reclaimPolicy Delete)"),
        )))
    }
}

/// The refusal of a `spec.serverRef` added to a Database that has a
/// dedicated instance: the instance's children, its volumes with them,
/// would be deleted, and the database would not move.
pub(crate) fn server_ref_added() -> PluginError {
    PluginError::invalid_spec(
        "spec.serverRef: this Database has a dedicated instance; adding a serverRef would          delete the instance and its volumes without moving the database (remove          spec.serverRef, or create another Database on the server)",
    )
}

/// What managing the database and its owner on one server decided.
pub(crate) struct Managed {
    /// The SQL plans, in order.
    pub(crate) plans: Vec<SqlPlan>,
    /// Events for what they change.
    pub(crate) events: Vec<Event>,
    /// The credentials Secret child.
    pub(crate) secret: serde_json::Value,
    /// The password bookkeeping for the status.
    pub(crate) password: PasswordStatus,
    /// The server's `server_version_num`.
    pub(crate) server_version_num: i64,
    /// When the password rotation wants another reconcile.
    pub(crate) requeue_after: Option<std::time::Duration>,
}

/// Observes the database and its owner role on server `key` (read-only)
/// and plans only what differs from `desired`: the machinery of a Database
/// on an existing server, which a dedicated instance's primary uses too.
/// Clients reach the database at `server.endpoint` (for a dedicated
/// instance, its `-rw` Service).
///
/// # Errors
/// A retryable `SqlQueryFailed` when the server cannot be queried;
/// `InvalidSpec`, `OwnedByAnother`, `AlreadyExists` or `PrivilegedRole`
/// when the spec cannot be had there.
pub(crate) fn manage(
    ctx: &Context<'_>,
    req: &Request,
    spec: &DatabaseSpec,
    desired: &Desired<'_>,
    status: &CredentialsStatus,
    key: &str,
    server: &Server,
) -> Result<Managed, PluginError> {
    let object = &req.object;
    let namespace = namespace(object)?;
    let secret = secret_name(object.name());
    let password = password::decide(
        Rotation {
            existing: existing_password(req, &secret),
            annotation: rotation_annotation(object),
            status: status.password.as_ref(),
            interval: spec.credentials.password_rotation.as_ref().map(|r| {
                (
                    "spec.credentials.passwordRotation.interval",
                    r.interval.as_str(),
                )
            }),
        },
        ctx.now(),
    )?;
    let observed = observe::observe(ctx, key, desired)?;
    let owner = Owner::of(object)?;
    let role_claim = claim_role(
        desired.owner,
        observed.role.as_ref(),
        &owner,
        key,
        server.adoption,
    )?;
    let database_claim = claim_database(
        &desired.name,
        observed
            .database
            .as_ref()
            .map(|d| (d.comment.as_deref(), d.owner.as_deref())),
        desired.owner,
        role_claim,
        &owner,
        key,
        server.adoption,
    )?;
    observe::check_possible(desired, &observed, key)?;
    let inside = match &observed.database {
        Some(_) if !(desired.extensions.is_empty() && desired.schemas.is_empty()) => {
            Some(observe::inside(ctx, key, desired)?)
        }
        _ => None,
    };
    let existed_before = status.server.as_deref() == Some(key)
        && status.database_name.as_deref() == Some(desired.name.as_str());
    let (plans, changes) = plan::plan(
        ctx,
        &plan::Inputs {
            key,
            desired,
            observed: &observed,
            inside: inside.as_ref(),
            password: &password,
            existed_before,
            status_is_current: status_is_current(object),
            owner: &owner,
            role_claim,
            database_claim,
        },
    )?;
    let mut child = Credentials {
        endpoint: &server.endpoint,
        dbname: &desired.name,
        username: desired.owner,
        password: &password.password,
    }
    .secret(&secret, namespace);
    // The password of a role that outlives this resource must too.
    if spec.reclaim_policy == ReclaimPolicy::Retain {
        retain_on_delete(&mut child);
    }
    ctx.info(
        "reconciled database",
        &[
            ("database", &desired.name),
            ("server", key),
            ("statements", &count(&plans).to_string()),
        ],
    );
    Ok(Managed {
        plans,
        events: changes.events(key),
        secret: child,
        password: password.status.clone(),
        server_version_num: observed.server_version_num,
        requeue_after: password.requeue_after(),
    })
}

fn namespace(object: &Object) -> Result<&str, PluginError> {
    object
        .namespace()
        .ok_or_else(|| PluginError::permanent("InvalidObject", "a Database must have a namespace"))
}

fn count(plans: &[wasm_operator_sdk::SqlPlan]) -> usize {
    plans.iter().map(|plan| plan.statements.len()).sum()
}

#[cfg(test)]
mod tests;
