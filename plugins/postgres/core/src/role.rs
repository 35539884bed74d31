//! Login roles: checking the stored password against the Secret, and the
//! statements that create a role or set its password.
//!
//! Passwords reach PostgreSQL only as SCRAM-SHA-256 verifiers, in statements
//! marked sensitive; summaries name the role, never the secret.

use wasm_operator_sdk::{Context, PluginError, SqlStatement, SqlValue, scram_sha_256_verifier};

use crate::names::{ident, literal};
use crate::outcome::Changes;
use crate::password::{NewPassword, PasswordDecision};
use crate::scram::verify_scram_sha_256;

/// Reads a role's stored verifier through the function the host provides
/// (plugin queries run as a role that cannot read `pg_authid`); where the
/// server's admin is no superuser the function does not exist, the query
/// fails and the password is not checked for drift.
pub const VERIFIER_QUERY: &str = "select wasm_operator.role_verifier($1::text) as rolpassword";

/// How a role's stored password compares with the Secret's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum PasswordCheck {
    /// The verifier matches the password.
    Matches,
    /// It does not; the reason is safe to show (never the verifier).
    Differs(String),
    /// The verifier could not be read (the admin is not a superuser).
    Unknown,
}

/// Compares role `user`'s stored password on `server` with `password`.
pub(crate) fn check_password(
    ctx: &Context<'_>,
    server: &str,
    user: &str,
    password: &str,
) -> PasswordCheck {
    let result = match ctx.query(server, None, VERIFIER_QUERY, &[SqlValue::from(user)]) {
        Ok(result) => result,
        Err(error) => {
            ctx.debug(
                "cannot read the role's password verifier; not checking password drift",
                &[
                    ("role", user),
                    ("server", server),
                    ("error", &error.message),
                ],
            );
            return PasswordCheck::Unknown;
        }
    };
    match result.rows.first().and_then(|row| row.first()) {
        Some(SqlValue::Text(verifier)) => match verify_scram_sha_256(password, verifier) {
            Ok(true) => PasswordCheck::Matches,
            Ok(false) => PasswordCheck::Differs("does not match the Secret".into()),
            Err(error) => PasswordCheck::Differs(error.to_string()),
        },
        Some(SqlValue::Null) => PasswordCheck::Differs("has no password".into()),
        _ => PasswordCheck::Differs("has no readable password".into()),
    }
}

/// `CREATE ROLE "user" LOGIN PASSWORD '<verifier>'` followed by `options`
/// (` CONNECTION LIMIT 5`, already quoted). Sensitive.
///
/// # Errors
/// `InvalidSpec` when the name cannot be quoted.
pub(crate) fn create_role(
    user: &str,
    password: &str,
    options: &str,
) -> Result<SqlStatement, PluginError> {
    let role = ident(user)?;
    let verifier = literal(&scram_sha_256_verifier(password))?;
    Ok(SqlStatement::new(
        format!("CREATE ROLE {role} LOGIN PASSWORD {verifier}{options}"),
        format!("create role {role}"),
    )
    .sensitive())
}

/// `ALTER ROLE "user" PASSWORD '<verifier>'`. Sensitive.
///
/// # Errors
/// `InvalidSpec` when the name cannot be quoted.
pub(crate) fn set_password(user: &str, password: &str) -> Result<SqlStatement, PluginError> {
    let role = ident(user)?;
    let verifier = literal(&scram_sha_256_verifier(password))?;
    Ok(SqlStatement::new(
        format!("ALTER ROLE {role} PASSWORD {verifier}"),
        format!("set the password of role {role}"),
    )
    .sensitive())
}

/// `ALTER ROLE "user" <options>` (options already quoted, e.g. `LOGIN`).
///
/// # Errors
/// `InvalidSpec` when the name cannot be quoted.
pub(crate) fn alter_role(user: &str, options: &str) -> Result<SqlStatement, PluginError> {
    let role = ident(user)?;
    Ok(SqlStatement::new(
        format!("ALTER ROLE {role} {options}"),
        format!("alter role {role} {options}"),
    ))
}

/// `DROP ROLE IF EXISTS "user"`.
///
/// # Errors
/// `InvalidSpec` when the name cannot be quoted.
pub(crate) fn drop_role(user: &str) -> Result<SqlStatement, PluginError> {
    let role = ident(user)?;
    Ok(SqlStatement::new(
        format!("DROP ROLE IF EXISTS {role}"),
        format!("drop role {role}"),
    ))
}

/// The password statement for a role that exists, if one is needed, and
/// what it changes: a new password (first Secret, rotation), or a reset when
/// the stored verifier does not match the Secret (drift).
///
/// # Errors
/// `InvalidSpec` when the name cannot be quoted.
pub(crate) fn existing_role_password(
    ctx: &Context<'_>,
    server: &str,
    user: &str,
    decision: &PasswordDecision,
    existed_before: bool,
    changes: &mut Changes,
) -> Result<Option<SqlStatement>, PluginError> {
    let role = ident(user)?;
    match &decision.new {
        Some(NewPassword::Missing) => {
            if existed_before {
                changes.repaired.push(format!(
                    "credentials Secret was missing: new password set for role {role}"
                ));
            } else {
                changes
                    .updated
                    .push(format!("new password set for existing role {role}"));
            }
        }
        Some(NewPassword::Requested(_) | NewPassword::IntervalElapsed) => {}
        None => match check_password(ctx, server, user, &decision.password) {
            PasswordCheck::Differs(why) => changes.repaired.push(format!(
                "password of role {role} reset (stored password {why})"
            )),
            PasswordCheck::Matches | PasswordCheck::Unknown => return Ok(None),
        },
    }
    set_password(user, &decision.password).map(Some)
}

/// The `PasswordRotated` note for a rotation, if the password was rotated.
pub(crate) fn rotation_note(user: &str, decision: &PasswordDecision) -> Option<String> {
    let why = match &decision.new {
        Some(NewPassword::Requested(value)) => format!(
            "requested by annotation {}={value:?}",
            postgres_api::ROTATE_PASSWORD_ANNOTATION
        ),
        Some(NewPassword::IntervalElapsed) => "rotation interval elapsed".to_owned(),
        _ => return None,
    };
    Some(format!("password of role {user:?} rotated ({why})"))
}
