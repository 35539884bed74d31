//! The statements that bring a database and its owner role to the spec,
//! decided from what was observed: only what differs is planned.

use wasm_operator_sdk::{Context, PluginError, SqlPlan, SqlStatement};

use super::Desired;
use super::observe::{DROP_FORCE_FROM, Inside, Observed, PUBLIC_SCHEMA_LOCKED_FROM};
use crate::names::{ident, literal};
use crate::outcome::Changes;
use crate::ownership::{Claim, How, Owner, Target};
use crate::password::PasswordDecision;
use crate::role;

/// What the plan is decided from.
pub(crate) struct Inputs<'a> {
    /// `namespace/name` of the server.
    pub(crate) key: &'a str,
    /// The spec, validated.
    pub(crate) desired: &'a Desired<'a>,
    /// The server as observed.
    pub(crate) observed: &'a Observed,
    /// What is missing inside the database (when it exists and was checked).
    pub(crate) inside: Option<&'a Inside>,
    /// The password decision.
    pub(crate) password: &'a PasswordDecision,
    /// The status says the database and role were in place on this server.
    pub(crate) existed_before: bool,
    /// The status describes the current generation: a difference is drift.
    pub(crate) status_is_current: bool,
    /// The resource the role and database are marked for.
    pub(crate) owner: &'a Owner,
    /// What the resource may do with its owner role.
    pub(crate) role_claim: Claim,
    /// What it may do with the database.
    pub(crate) database_claim: Claim,
}

/// The statements for the maintenance database and for the database itself
/// (in that order), and what they change.
///
/// # Errors
/// `InvalidSpec` when a name cannot be quoted (validation prevents it).
pub(crate) fn plan(
    ctx: &Context<'_>,
    inputs: &Inputs<'_>,
) -> Result<(Vec<SqlPlan>, Changes), PluginError> {
    let Inputs {
        key,
        desired,
        observed,
        password,
        existed_before,
        ..
    } = *inputs;
    let owner = desired.owner;
    let role = ident(owner)?;
    let database = ident(&desired.name)?;
    let drift = existed_before && inputs.status_is_current;
    let mut changes = Changes::default();
    let mut main = SqlPlan::new(key);
    let mut inside = SqlPlan::new(key).database(desired.name.clone());

    match inputs.role_claim {
        Claim::Create => {
            main = main
                .statement(role::create_role(owner, &password.password, "")?)
                .statement(Target::Role(owner).mark(inputs.owner, How::Created)?);
            if existed_before {
                changes
                    .repaired
                    .push(format!("role {role} was missing and was recreated"));
            } else {
                changes.created.push(format!("role {role}"));
            }
        }
        Claim::Adopt | Claim::Owned(_) | Claim::Resume => {
            if inputs.role_claim == Claim::Adopt {
                main = main.statement(Target::Role(owner).mark(inputs.owner, How::Adopted)?);
                changes
                    .updated
                    .push(format!("existing role {role} adopted"));
            }
            if let Some(statement) = role::existing_role_password(
                ctx,
                key,
                owner,
                password,
                existed_before,
                &mut changes,
            )? {
                main = main.statement(statement);
            }
            if !observed.role_can_login {
                main = main.statement(role::alter_role(owner, "LOGIN")?);
                changes.drift_or_update(drift, format!("LOGIN restored for role {role}"));
            }
        }
    }
    match inputs.database_claim {
        Claim::Resume => {
            main =
                main.statement(Target::Database(&desired.name).mark(inputs.owner, How::Created)?);
        }
        Claim::Adopt => {
            main =
                main.statement(Target::Database(&desired.name).mark(inputs.owner, How::Adopted)?);
            changes
                .updated
                .push(format!("existing database {database} adopted"));
        }
        Claim::Create | Claim::Owned(_) => {}
    }

    match &observed.database {
        None => {
            main = main
                .statement(create_database(desired)?)
                .statement(Target::Database(&desired.name).mark(inputs.owner, How::Created)?);
            if existed_before {
                changes.repaired.push(format!(
                    "database {database} was missing and was recreated (empty)"
                ));
            } else {
                changes
                    .created
                    .push(format!("database {database} owned by {role}"));
            }
            if observed.server_version_num < PUBLIC_SCHEMA_LOCKED_FROM {
                // What PostgreSQL 15 does by default: only the database
                // owner may create objects in `public`.
                inside = inside
                    .statement(SqlStatement::new(
                        "REVOKE CREATE ON SCHEMA public FROM PUBLIC",
                        format!("revoke create on schema public from public in {database}"),
                    ))
                    .statement(SqlStatement::new(
                        format!("ALTER SCHEMA public OWNER TO {role}"),
                        format!("alter schema public owner to {role} in {database}"),
                    ));
            }
            inside =
                add_schemas_and_extensions(inside, owner, desired.schemas, desired.extensions)?;
        }
        Some(existing) => {
            if existing.owner.as_deref() != Some(owner) {
                main = main.statement(SqlStatement::new(
                    format!("ALTER DATABASE {database} OWNER TO {role}"),
                    format!("alter database {database} owner to {role}"),
                ));
                changes.drift_or_update(drift, format!("owner of {database} set to {role}"));
            }
            if existing.connection_limit != desired.connection_limit {
                let limit = desired.connection_limit;
                main = main.statement(SqlStatement::new(
                    format!("ALTER DATABASE {database} CONNECTION LIMIT {limit}"),
                    format!("alter database {database} connection limit {limit}"),
                ));
                changes.drift_or_update(
                    drift,
                    format!("connection limit of {database} set to {limit}"),
                );
            }
            if let Some(missing) = inputs.inside {
                let before = inside.statements.len();
                inside = add_schemas_and_extensions(
                    inside,
                    owner,
                    &missing.missing_schemas,
                    &missing.missing_extensions,
                )?;
                if inside.statements.len() > before {
                    let mut names: Vec<String> = Vec::new();
                    for schema in &missing.missing_schemas {
                        names.push(format!("schema {}", ident(schema)?));
                    }
                    for extension in &missing.missing_extensions {
                        names.push(format!("extension {}", ident(extension)?));
                    }
                    changes.drift_or_update(
                        drift,
                        format!("created {} in {database}", names.join(", ")),
                    );
                }
            }
        }
    }

    changes.rotated = role::rotation_note(owner, password);
    Ok((vec![main, inside], changes))
}

/// `CREATE DATABASE "db" OWNER "u" [ENCODING 'x'] [LC_COLLATE 'y' LC_CTYPE 'y']
/// [CONNECTION LIMIT n] [TEMPLATE template0]`, outside a transaction.
/// `template0` only when an encoding or locale is asked for: it is the only
/// template that accepts any of them.
fn create_database(desired: &Desired<'_>) -> Result<SqlStatement, PluginError> {
    let database = ident(&desired.name)?;
    let owner = ident(desired.owner)?;
    let mut sql = format!("CREATE DATABASE {database} OWNER {owner}");
    if let Some(encoding) = desired.encoding {
        sql.push_str(&format!(" ENCODING {}", literal(encoding)?));
    }
    if let Some(locale) = desired.locale {
        let locale = literal(locale)?;
        sql.push_str(&format!(" LC_COLLATE {locale} LC_CTYPE {locale}"));
    }
    if desired.connection_limit != -1 {
        sql.push_str(&format!(" CONNECTION LIMIT {}", desired.connection_limit));
    }
    if desired.encoding.is_some() || desired.locale.is_some() {
        sql.push_str(" TEMPLATE template0");
    }
    Ok(
        SqlStatement::new(sql, format!("create database {database} owner {owner}"))
            .non_transactional(),
    )
}

fn add_schemas_and_extensions(
    mut plan: SqlPlan,
    owner: &str,
    schemas: &[String],
    extensions: &[String],
) -> Result<SqlPlan, PluginError> {
    let owner = ident(owner)?;
    for schema in schemas {
        let schema = ident(schema)?;
        plan = plan.statement(SqlStatement::new(
            format!("CREATE SCHEMA IF NOT EXISTS {schema} AUTHORIZATION {owner}"),
            format!("create schema {schema} authorization {owner}"),
        ));
    }
    for extension in extensions {
        let extension = ident(extension)?;
        plan = plan.statement(SqlStatement::new(
            format!("CREATE EXTENSION IF NOT EXISTS {extension}"),
            format!("create extension {extension}"),
        ));
    }
    Ok(plan)
}

/// The cleanup of a Database with `reclaimPolicy: Delete`: drop the database
/// (terminating its sessions) and the owner role, each only when given (the
/// caller passes only what this Database created; the role is also kept
/// while it owns other databases).
///
/// # Errors
/// `InvalidSpec` when a name cannot be quoted (validation prevents it).
pub(crate) fn drop_plan(
    key: &str,
    name: Option<&str>,
    owner: Option<&str>,
    server_version_num: i64,
) -> Result<SqlPlan, PluginError> {
    let mut plan = SqlPlan::new(key);
    let Some(name) = name else {
        if let Some(owner) = owner {
            plan = plan.statement(role::drop_role(owner)?);
        }
        return Ok(plan);
    };
    let database = ident(name)?;
    if server_version_num >= DROP_FORCE_FROM {
        plan = plan.statement(
            SqlStatement::new(
                format!("DROP DATABASE IF EXISTS {database} WITH (FORCE)"),
                format!("drop database {database}"),
            )
            .non_transactional(),
        );
    } else {
        plan = plan
            .statement(
                SqlStatement::new(
                    "select pg_terminate_backend(pid) from pg_stat_activity where datname = $1",
                    format!("terminate sessions on {database}"),
                )
                .param(name),
            )
            .statement(
                SqlStatement::new(
                    format!("DROP DATABASE IF EXISTS {database}"),
                    format!("drop database {database}"),
                )
                .non_transactional(),
            );
    }
    if let Some(owner) = owner {
        plan = plan.statement(role::drop_role(owner)?);
    }
    Ok(plan)
}
