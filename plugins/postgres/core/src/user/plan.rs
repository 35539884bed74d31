//! The statements that bring a DatabaseUser's role and privileges to the
//! spec, decided from what was observed: only what differs is planned.

use postgres_api::DatabaseUserSpec;
use wasm_operator_sdk::{Context, PluginError, SqlPlan};

use super::{Observed, Placement};
use crate::grants::{self, Profile, Target as GrantTarget};
use crate::names::{ident, literal};
use crate::outcome::Changes;
use crate::ownership::{Claim, How, Owner, Target};
use crate::password::PasswordDecision;
use crate::role;

/// What the role statements are decided from.
pub(super) struct RoleInputs<'a> {
    pub(super) key: &'a str,
    pub(super) database: &'a str,
    pub(super) access: &'a str,
    pub(super) user: &'a str,
    pub(super) connection_limit: i64,
    pub(super) valid_until: &'a str,
    pub(super) password: &'a PasswordDecision,
    pub(super) existed_before: bool,
    pub(super) drift: bool,
    /// The resource the role is marked for.
    pub(super) owner: &'a Owner,
    /// What the resource may do with the role.
    pub(super) claim: Claim,
}

/// Role statements for the maintenance database: create it, or alter what differs.
pub(super) fn role_plan(
    ctx: &Context<'_>,
    inputs: &RoleInputs<'_>,
    observed: &Observed,
    changes: &mut Changes,
) -> Result<SqlPlan, PluginError> {
    let RoleInputs {
        key,
        database,
        access,
        user,
        connection_limit,
        valid_until,
        password,
        existed_before,
        drift,
        owner,
        claim,
    } = *inputs;
    let role = ident(user)?;
    let mut plan = SqlPlan::new(key);
    let limit_option = format!("CONNECTION LIMIT {connection_limit}");
    let valid_option = format!("VALID UNTIL {}", literal(valid_until)?);
    if claim == Claim::Create {
        let options = format!(" {limit_option} {valid_option}");
        plan = plan
            .statement(role::create_role(user, &password.password, &options)?)
            .statement(Target::Role(user).mark(owner, How::Created)?);
        if existed_before {
            changes
                .repaired
                .push(format!("role {role} was missing and was recreated"));
        } else {
            changes.created.push(format!(
                "role {role} with {access} access to database {}",
                ident(database)?
            ));
        }
    } else {
        if claim == Claim::Adopt {
            plan = plan.statement(Target::Role(user).mark(owner, How::Adopted)?);
            changes
                .updated
                .push(format!("existing role {role} adopted"));
        }
        if let Some(statement) =
            role::existing_role_password(ctx, key, user, password, existed_before, changes)?
        {
            plan = plan.statement(statement);
        }
        let mut options = Vec::new();
        if !observed.can_login {
            options.push("LOGIN".to_owned());
        }
        if observed.connection_limit != connection_limit {
            options.push(limit_option);
        }
        if !observed.valid_until_matches {
            options.push(valid_option);
        }
        if !options.is_empty() {
            let options = options.join(" ");
            plan = plan.statement(role::alter_role(user, &options)?);
            changes.drift_or_update(drift, format!("role {role} set to {options}"));
        }
    }
    changes.rotated = role::rotation_note(user, password);
    Ok(plan)
}

/// Grant statements for the database itself: the whole grant set when
/// anything is missing, revocations beyond the profile, membership changes.
pub(super) fn grants_plan(
    placement: &Placement,
    spec: &DatabaseUserSpec,
    profile: &Profile,
    observed: &Observed,
    drift: bool,
    changes: &mut Changes,
) -> Result<SqlPlan, PluginError> {
    let target = GrantTarget {
        database: &placement.database,
        user: &spec.username,
        owner: &placement.owner,
        schemas: &observed.schemas,
    };
    let access = access_name(spec.access);
    let database = ident(&placement.database)?;
    let mut plan = SqlPlan::new(&placement.key).database(placement.database.clone());
    // Grants for a role created by this plan are part of creating it, and
    // reported with it.
    let mut record = |what: String| {
        if observed.role.is_some() {
            changes.drift_or_update(drift, what);
        }
    };
    if profile.member != observed.member {
        plan = plan.statement(grants::membership(profile.member, &target)?);
        let owner = ident(&placement.owner)?;
        record(if profile.member {
            format!("membership in owner role {owner} granted")
        } else {
            format!("membership in owner role {owner} revoked")
        });
    }
    if !profile.member && observed.missing {
        for statement in grants::grant_all(profile, &target)? {
            plan = plan.statement(statement);
        }
        record(format!("{access} privileges on {database} granted"));
    }
    if observed.extra {
        for statement in grants::revoke_extra(profile, &target)? {
            plan = plan.statement(statement);
        }
        record(format!("privileges beyond {access} on {database} revoked"));
    }
    Ok(plan)
}

pub(super) fn access_name(access: postgres_api::Access) -> &'static str {
    match access {
        postgres_api::Access::ReadOnly => "readOnly",
        postgres_api::Access::ReadWrite => "readWrite",
        postgres_api::Access::Owner => "owner",
    }
}
