//! The `postgres-user` plugin: an extra login role on a Database, with an
//! access profile (`readOnly`, `readWrite`, `owner`), a connection limit, an
//! expiry, and its own credentials Secret.
//!
//! Its spec is validated at admission too, with the same checks (see
//! `admission`). It waits for its Database to be Ready, observes the role
//! and its privileges with one query inside the database, and plans only what
//! differs: role options, password, missing grants (the whole grant set),
//! privileges beyond the profile after a downgrade. The role carries the
//! DatabaseUser's ownership mark (see [`crate::ownership`]); a role another
//! resource owns, or one that exists without a mark, is refused.

mod admission;
mod plan;

use std::time::Duration;

use postgres_api::{
    Binding, CommonStatus, CredentialsStatus, DatabaseSpec, DatabaseUserSpec, ReclaimPolicy,
};
use wasm_operator_sdk::{
    Condition, ConditionStatus, Conditions, Context, Event, FinalizeResponse, Object, Plugin,
    PluginError, PluginInfo, READY, Request, Response, SqlPlan, SqlStatement, SqlValue,
    finalizer_name, retain_on_delete,
};

use crate::credentials::{Credentials, existing_password};
use crate::grants::{self, Profile};
use crate::names::{check_connection_limit, check_role_name, check_timestamp, ident};
use crate::outcome::{Changes, READY_REASON, conditions, not_ready, status_is_current};
use crate::ownership::{ExistingRole, Mark, Owner, claim_role};
use crate::password::{self, Rotation, check_interval, rotation_annotation};
use crate::role;
use crate::rows::{flag, int, list, query_failed, text};
use crate::servers::{SERVER_NOT_ALLOWED, granted_server, is_granted, not_allowed_message};
use crate::{NoSettings, database_kind, database_user_kind, postgres_server_kind, secret_kind};
use plan::{RoleInputs, access_name, grants_plan, role_plan};

/// The reason of `Ready=False` while the Database is missing or not Ready.
pub const DATABASE_NOT_READY: &str = "DatabaseNotReady";
/// How soon a DatabaseUser waiting for its Database is reconciled again.
pub const DATABASE_NOT_READY_RECHECK: Duration = Duration::from_secs(10);
/// Whether the role exists, its ownership mark, and who owns the database,
/// for cleanup. `$1` user, `$2` database.
pub const FINALIZE_QUERY: &str = "select exists (select 1 from pg_roles where rolname = $1::text) as role_exists, \
     (select shobj_description(oid, 'pg_authid') from pg_roles where rolname = $1::text) as role_mark, \
     (select r.rolname::text from pg_database d join pg_roles r on r.oid = d.datdba \
       where d.datname = $2::text) as owner";

/// The plugin's name: its binding's and its finalizer's.
const NAME: &str = "postgres-user";

/// The DatabaseUser plugin.
pub struct DatabaseUserPlugin;

/// The name of a DatabaseUser's credentials Secret.
#[must_use]
pub fn secret_name(user: &str) -> String {
    format!("{user}-user-credentials")
}

/// Where the role lives, from its Database.
struct Placement {
    key: String,
    database: String,
    owner: String,
}

/// The role as observed, from [`grants::OBSERVE_QUERY`].
struct Observed {
    /// The role, when it exists.
    role: Option<ExistingRole>,
    can_login: bool,
    connection_limit: i64,
    valid_until_matches: bool,
    member: bool,
    schemas: Vec<String>,
    missing: bool,
    extra: bool,
}

impl Plugin for DatabaseUserPlugin {
    fn describe() -> PluginInfo {
        PluginInfo::new(NAME, env!("CARGO_PKG_VERSION"), database_user_kind())
            .child_kind(secret_kind())
            .read_kind(database_kind())
            .read_kind(postgres_server_kind())
            .sql()
            .settings::<NoSettings>()
    }

    fn reconcile(ctx: &Context<'_>, req: &Request) -> Result<Response, PluginError> {
        let object = &req.object;
        let spec: DatabaseUserSpec = object.spec()?;
        let status: CredentialsStatus = object.status().unwrap_or_default();
        let namespace = namespace(object)?;
        let connection_limit = check_spec(&spec)?;
        let placement = match placement(ctx, namespace, &spec.database_ref.name)? {
            Ok(placement) => placement,
            Err(message) => {
                let response = not_ready(
                    ctx,
                    req,
                    &secret_name(req.object.name()),
                    status,
                    DATABASE_NOT_READY,
                    message,
                )?;
                return Ok(response.requeue_after(DATABASE_NOT_READY_RECHECK));
            }
        };
        check_not_owner(&spec, &placement.owner)?;
        let key = placement.key.as_str();
        let Some(server) = granted_server(ctx, req, key)? else {
            let message = not_allowed_message(key, "DatabaseUser", namespace);
            return not_ready(
                ctx,
                req,
                &secret_name(req.object.name()),
                status,
                SERVER_NOT_ALLOWED,
                message,
            );
        };
        let secret = secret_name(object.name());
        let password = password::decide(
            Rotation {
                existing: existing_password(req, &secret),
                annotation: rotation_annotation(object),
                status: status.password.as_ref(),
                interval: spec
                    .password_rotation
                    .as_ref()
                    .map(|r| ("spec.passwordRotation.interval", r.interval.as_str())),
            },
            ctx.now(),
        )?;
        let profile = Profile::of(spec.access);
        let valid_until = spec.valid_until.as_deref().unwrap_or("infinity");
        let observed = observe(ctx, &placement, &spec.username, &profile, valid_until)?;
        let existed_before = status.server.as_deref() == Some(key)
            && status.database_name.as_deref() == Some(placement.database.as_str());
        let owner = Owner::of(object)?;
        let role_claim = claim_role(
            &spec.username,
            observed.role.as_ref(),
            &owner,
            key,
            server.adoption,
        )?;
        let drift = existed_before && status_is_current(object) && observed.role.is_some();

        let mut changes = Changes::default();
        let main = role_plan(
            ctx,
            &RoleInputs {
                key,
                database: &placement.database,
                access: access_name(spec.access),
                user: &spec.username,
                connection_limit,
                valid_until,
                password: &password,
                existed_before,
                drift,
                owner: &owner,
                claim: role_claim,
            },
            &observed,
            &mut changes,
        )?;
        let inside = grants_plan(&placement, &spec, &profile, &observed, drift, &mut changes)?;

        let mut child = Credentials {
            endpoint: &server.endpoint,
            dbname: &placement.database,
            username: &spec.username,
            password: &password.password,
        }
        .secret(&secret, namespace);
        // The password of a role that outlives this resource must too.
        if spec.reclaim_policy == ReclaimPolicy::Retain {
            retain_on_delete(&mut child);
        }
        let access = access_name(spec.access);
        let ready = Condition::ready(
            READY_REASON,
            format!(
                "role {:?} has {access} access to database {:?} on server {key}",
                spec.username, placement.database
            ),
        );
        let status = CredentialsStatus {
            server: Some(key.to_owned()),
            database_name: Some(placement.database.clone()),
            binding: Some(Binding { name: secret }),
            password: Some(password.status.clone()),
            common: CommonStatus {
                conditions: conditions(ctx, object, ready),
                ..CommonStatus::default()
            },
        };
        let statements = main.statements.len() + inside.statements.len();
        ctx.info(
            "reconciled database user",
            &[
                ("role", &spec.username),
                ("database", &placement.database),
                ("server", key),
                ("statements", &statements.to_string()),
            ],
        );
        let mut response = Response::new()
            .child(child)
            .status_of(&status)?
            .sql(main)
            .sql(inside);
        for event in changes.events(key) {
            response = response.event(event);
        }
        if let Some(after) = password.requeue_after() {
            response = response.requeue_after(after);
        }
        Ok(response)
    }

    fn finalize(ctx: &Context<'_>, req: &Request) -> Result<FinalizeResponse, PluginError> {
        let object = &req.object;
        let spec: DatabaseUserSpec = object.spec()?;
        let status: CredentialsStatus = object.status().unwrap_or_default();
        let namespace = namespace(object)?;
        if spec.reclaim_policy == ReclaimPolicy::Retain {
            ctx.info(
                "reclaimPolicy is Retain: leaving the role on the server",
                &[("role", &spec.username)],
            );
            return Ok(FinalizeResponse::done());
        }
        let user = spec.username.as_str();
        if check_role_name("spec.username", user).is_err() {
            return Ok(FinalizeResponse::done());
        }
        let (key, database) = match (status.server, status.database_name) {
            (Some(key), Some(database)) => (key, database),
            _ => match placement(ctx, namespace, &spec.database_ref.name)? {
                Ok(placement) => (placement.key, placement.database),
                // Never reconciled to a server: nothing was created.
                Err(_) => return Ok(FinalizeResponse::done()),
            },
        };
        let unavailable = |why: String| {
            PluginError::retryable(
                "ServerUnavailable",
                format!(
                    "cannot drop role {user:?} (reclaimPolicy Delete): {why}; fix the server, or \
                     remove the finalizer {} from the DatabaseUser by hand to leave the \
                     role on the server",
                    finalizer_name(NAME)
                ),
            )
        };
        if !is_granted(req, &key) {
            return Err(unavailable(not_allowed_message(
                &key,
                "DatabaseUser",
                namespace,
            )));
        }
        let params = [SqlValue::from(user), SqlValue::from(database.as_str())];
        let result = ctx
            .query(&key, None, FINALIZE_QUERY, &params)
            .map_err(|e| unavailable(format!("server {key} cannot be queried: {}", e.message)))?;
        if !flag(&result, "role_exists") {
            return Ok(FinalizeResponse::done());
        }
        if !Mark::created_by(text(&result, "role_mark").as_deref(), &Owner::of(object)?) {
            let message = format!(
                "keeping role {user:?} on server {key} (reclaimPolicy Delete): it was not \
                 created by this DatabaseUser (adopted, another resource's, or made by hand)"
            );
            ctx.warn(&message, &[("role", user), ("server", &key)]);
            return Ok(FinalizeResponse::done().event(Event::warning("Kept", "DropRole", message)));
        }
        let owner = text(&result, "owner");
        if owner.as_deref() == Some(user) {
            ctx.warn(
                "not dropping the role: it owns the database",
                &[("role", user), ("database", &database)],
            );
            return Ok(FinalizeResponse::done());
        }
        let role = ident(user)?;
        let mut response = FinalizeResponse::done();
        if let Some(owner) = owner {
            let owner = ident(&owner)?;
            response = response.sql(
                SqlPlan::new(&key)
                    .database(database.clone())
                    .statement(SqlStatement::new(
                        format!("REASSIGN OWNED BY {role} TO {owner}"),
                        format!("reassign objects owned by {role} to {owner}"),
                    ))
                    .statement(SqlStatement::new(
                        format!("DROP OWNED BY {role}"),
                        format!("drop privileges and objects of {role}"),
                    )),
            );
        }
        Ok(response
            .sql(SqlPlan::new(&key).statement(role::drop_role(user)?))
            .event(Event::normal(
                "Deleted",
                "DropRole",
                format!("dropping role {user:?} on server {key} (reclaimPolicy Delete)"),
            )))
    }
}

/// Validates the spec before any lookup: every check that needs neither the
/// Database nor the server. Reconcile and admission both call it. Returns
/// the connection limit as PostgreSQL stores it.
///
/// # Errors
/// `InvalidSpec` naming the first offending field.
pub(crate) fn check_spec(spec: &DatabaseUserSpec) -> Result<i64, PluginError> {
    check_role_name("spec.username", &spec.username)?;
    if let Some(valid_until) = &spec.valid_until {
        check_timestamp("spec.validUntil", valid_until)?;
    }
    let connection_limit = check_connection_limit("spec.connectionLimit", spec.connection_limit)?;
    if let Some(rotation) = &spec.password_rotation {
        check_interval("spec.passwordRotation.interval", &rotation.interval)?;
    }
    Ok(connection_limit)
}

/// Checks that the role is not the owner role of its Database (`owner`).
///
/// # Errors
/// `InvalidSpec` naming `spec.username`.
pub(crate) fn check_not_owner(spec: &DatabaseUserSpec, owner: &str) -> Result<(), PluginError> {
    if spec.username == owner {
        return Err(PluginError::invalid_spec(format!(
            "spec.username: {:?} is the owner role of Database {:?}; choose another name",
            spec.username, spec.database_ref.name
        )));
    }
    Ok(())
}

/// Finds the role's server, database and owner from its Database; `Ok(Err)`
/// with a message while the Database is missing or not Ready.
fn placement(
    ctx: &Context<'_>,
    namespace: &str,
    name: &str,
) -> Result<Result<Placement, String>, PluginError> {
    let Some(database) = ctx.get(&database_kind(), Some(namespace), name)? else {
        return Ok(Err(format!(
            "Database {name:?} does not exist in namespace {namespace:?}"
        )));
    };
    let ready = Conditions::from_object(&database).get(READY);
    match &ready {
        Some(ready) if ready.status == ConditionStatus::True => {}
        Some(ready) => {
            return Ok(Err(format!(
                "Database {name:?} is not ready ({}: {})",
                ready.reason, ready.message
            )));
        }
        None => return Ok(Err(format!("Database {name:?} is not ready yet"))),
    }
    let Ok(spec) = database.spec::<DatabaseSpec>() else {
        return Ok(Err(format!("Database {name:?} has an invalid spec")));
    };
    let Some(server_ref) = &spec.server_ref else {
        return Ok(Err(format!("Database {name:?} has no spec.serverRef")));
    };
    let status: CredentialsStatus = database.status().unwrap_or_default();
    Ok(Ok(Placement {
        key: server_ref.key(namespace),
        database: status
            .database_name
            .or(spec.database_name)
            .unwrap_or_else(|| name.to_owned()),
        owner: spec.credentials.username,
    }))
}

fn observe(
    ctx: &Context<'_>,
    placement: &Placement,
    user: &str,
    profile: &Profile,
    valid_until: &str,
) -> Result<Observed, PluginError> {
    let [tables, sequences, extra_tables, extra_sequences] = profile.params();
    let params = [
        SqlValue::from(user),
        SqlValue::from(placement.owner.as_str()),
        tables,
        sequences,
        extra_tables,
        extra_sequences,
        SqlValue::from(valid_until),
    ];
    let result = ctx
        .query(
            &placement.key,
            Some(&placement.database),
            grants::OBSERVE_QUERY,
            &params,
        )
        .map_err(|e| query_failed("observing the role and its privileges", &placement.key, &e))?;
    Ok(Observed {
        role: flag(&result, "role_exists").then(|| ExistingRole::from_row(&result)),
        can_login: flag(&result, "can_login"),
        connection_limit: int(&result, "connection_limit").unwrap_or(-1),
        valid_until_matches: flag(&result, "valid_until_matches"),
        member: flag(&result, "member"),
        schemas: list(&result, "schemas"),
        missing: flag(&result, "missing"),
        extra: flag(&result, "extra"),
    })
}

fn namespace(object: &Object) -> Result<&str, PluginError> {
    object.namespace().ok_or_else(|| {
        PluginError::permanent("InvalidObject", "a DatabaseUser must have a namespace")
    })
}

#[cfg(test)]
mod tests;
