//! Access profiles of a DatabaseUser as privileges, how to detect that some
//! are missing (or extra, after a downgrade) with one query, and the
//! statements that grant or revoke them.
//!
//! A profile covers every non-system schema of the database (`pg_*` and
//! `information_schema` excluded): the tables and sequences there now, and
//! through default privileges those the owner role creates later.

use postgres_api::Access;
use wasm_operator_sdk::{PluginError, SqlStatement, SqlValue};

use crate::names::ident;

/// Observes the role and its privileges, inside the database.
///
/// `$1` user, `$2` owner, `$3`/`$4` wanted table/sequence privileges,
/// `$5`/`$6` privileges the profile must not have (comma-separated),
/// `$7` wanted `VALID UNTIL` (`infinity` when unset). Only direct grants
/// count, and objects the user owns are left out. The role's ownership mark
/// and privileged attributes come last.
pub const OBSERVE_QUERY: &str = concat!(
    "with u as (select oid, rolcanlogin, rolconnlimit, rolvaliduntil \
       from pg_roles where rolname = $1::text), \
     o as (select oid from pg_roles where rolname = $2::text), \
     ns as (select n.oid, n.nspname, n.nspacl, n.nspowner from pg_namespace n \
       where n.nspname not like 'pg\\_%' and n.nspname <> 'information_schema'), \
     rel as (select c.relkind = 'S' as is_sequence, c.relacl from pg_class c \
       join ns on ns.oid = c.relnamespace \
       where c.relkind in ('r', 'p', 'v', 'm', 'f', 'S') \
       and c.relowner is distinct from (select oid from u)), \
     have as (select r.is_sequence, array(select a.privilege_type from aclexplode(r.relacl) a \
       where a.grantee = (select oid from u)) as privileges from rel r), \
     want as (select string_to_array($3::text, ',') as tables, \
       string_to_array($4::text, ',') as sequences, \
       string_to_array($5::text, ',') as extra_tables, \
       string_to_array($6::text, ',') as extra_sequences), \
     defaults as (select k.objtype, array(select a.privilege_type \
       from pg_default_acl d, aclexplode(d.defaclacl) a \
       where d.defaclrole = (select oid from o) and d.defaclnamespace = ns.oid \
       and d.defaclobjtype = k.objtype and a.grantee = (select oid from u)) as privileges \
       from ns cross join (values ('r'::\"char\"), ('S'::\"char\")) as k(objtype)) \
     select exists (select 1 from u) as role_exists, \
     coalesce((select rolcanlogin from u), false) as can_login, \
     (select rolconnlimit from u) as connection_limit, \
     coalesce((select coalesce(rolvaliduntil, 'infinity') = $7::text::timestamptz from u), false) \
       as valid_until_matches, \
     exists (select 1 from pg_auth_members m where m.roleid = (select oid from o) \
       and m.member = (select oid from u)) as member, \
     coalesce((select jsonb_agg(nspname::text order by nspname) from ns), '[]'::jsonb) as schemas, \
     (not exists (select 1 from pg_database d, aclexplode(d.datacl) a \
         where d.datname = current_database() and a.grantee = (select oid from u) \
         and a.privilege_type = 'CONNECT') \
       or exists (select 1 from ns where ns.nspowner is distinct from (select oid from u) \
         and not exists (select 1 from aclexplode(ns.nspacl) a \
           where a.grantee = (select oid from u) and a.privilege_type = 'USAGE')) \
       or exists (select 1 from have, want where not (case when have.is_sequence \
         then want.sequences else want.tables end) <@ have.privileges) \
       or exists (select 1 from defaults, want where not (case when defaults.objtype = 'S' \
         then want.sequences else want.tables end) <@ defaults.privileges)) as missing, \
     (exists (select 1 from have, want where (case when have.is_sequence \
         then want.extra_sequences else want.extra_tables end) && have.privileges) \
       or exists (select 1 from defaults, want where (case when defaults.objtype = 'S' \
         then want.extra_sequences else want.extra_tables end) && defaults.privileges)) as extra, ",
    crate::ownership::role_columns!(),
    " from (select 1) as one left join pg_roles r on r.rolname = $1::text"
);

/// Privileges on tables a profile may hold (what `readWrite` grants).
const TABLE_PRIVILEGES: &[&str] = &["SELECT", "INSERT", "UPDATE", "DELETE"];
/// Privileges on sequences a profile may hold (what `readWrite` grants).
const SEQUENCE_PRIVILEGES: &[&str] = &["SELECT", "USAGE", "UPDATE"];

/// The direct privileges of a profile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Profile {
    /// Privileges on every table (and view) of every schema.
    pub(crate) tables: Vec<&'static str>,
    /// Privileges on every sequence.
    pub(crate) sequences: Vec<&'static str>,
    /// Table privileges to take away.
    pub(crate) extra_tables: Vec<&'static str>,
    /// Sequence privileges to take away.
    pub(crate) extra_sequences: Vec<&'static str>,
    /// Membership in the owner role.
    pub(crate) member: bool,
}

impl Profile {
    /// The profile of `access`. `owner` works through membership alone; the
    /// others are direct grants, and the privileges of `readWrite` that
    /// `readOnly` lacks are revoked.
    pub(crate) fn of(access: Access) -> Self {
        let (tables, sequences, member) = match access {
            Access::ReadOnly => (vec!["SELECT"], vec!["SELECT"], false),
            Access::ReadWrite => (
                TABLE_PRIVILEGES.to_vec(),
                SEQUENCE_PRIVILEGES.to_vec(),
                false,
            ),
            Access::Owner => (Vec::new(), Vec::new(), true),
        };
        let minus = |all: &[&'static str], wanted: &[&'static str]| -> Vec<&'static str> {
            if member {
                Vec::new()
            } else {
                all.iter()
                    .filter(|p| !wanted.contains(p))
                    .copied()
                    .collect()
            }
        };
        Self {
            extra_tables: minus(TABLE_PRIVILEGES, &tables),
            extra_sequences: minus(SEQUENCE_PRIVILEGES, &sequences),
            tables,
            sequences,
            member,
        }
    }

    /// Parameters `$3`–`$6` of [`OBSERVE_QUERY`].
    pub(crate) fn params(&self) -> [SqlValue; 4] {
        [
            SqlValue::from(self.tables.join(",")),
            SqlValue::from(self.sequences.join(",")),
            SqlValue::from(self.extra_tables.join(",")),
            SqlValue::from(self.extra_sequences.join(",")),
        ]
    }
}

/// The names a grant statement needs.
pub(crate) struct Target<'a> {
    /// Database name.
    pub(crate) database: &'a str,
    /// The DatabaseUser's role.
    pub(crate) user: &'a str,
    /// The Database's owner role.
    pub(crate) owner: &'a str,
    /// The database's non-system schemas.
    pub(crate) schemas: &'a [String],
}

/// The whole grant set of a direct-grant profile.
///
/// # Errors
/// `InvalidSpec` when a name cannot be quoted.
pub(crate) fn grant_all(
    profile: &Profile,
    target: &Target<'_>,
) -> Result<Vec<SqlStatement>, PluginError> {
    let user = ident(target.user)?;
    let owner = ident(target.owner)?;
    let database = ident(target.database)?;
    let tables = profile.tables.join(", ");
    let sequences = profile.sequences.join(", ");
    let mut statements = vec![SqlStatement::new(
        format!("GRANT CONNECT ON DATABASE {database} TO {user}"),
        format!("grant connect on database {database} to {user}"),
    )];
    for schema in target.schemas {
        let schema = ident(schema)?;
        let sql = [
            format!("GRANT USAGE ON SCHEMA {schema} TO {user}"),
            format!("GRANT {tables} ON ALL TABLES IN SCHEMA {schema} TO {user}"),
            format!("GRANT {sequences} ON ALL SEQUENCES IN SCHEMA {schema} TO {user}"),
            format!(
                "ALTER DEFAULT PRIVILEGES FOR ROLE {owner} IN SCHEMA {schema} GRANT {tables} ON TABLES TO {user}"
            ),
            format!(
                "ALTER DEFAULT PRIVILEGES FOR ROLE {owner} IN SCHEMA {schema} GRANT {sequences} ON SEQUENCES TO {user}"
            ),
        ];
        statements.extend(sql.into_iter().map(|sql| {
            let summary = sql.clone();
            SqlStatement::new(sql, summary)
        }));
    }
    Ok(statements)
}

/// Revokes the privileges beyond a profile (after a downgrade).
///
/// # Errors
/// `InvalidSpec` when a name cannot be quoted.
pub(crate) fn revoke_extra(
    profile: &Profile,
    target: &Target<'_>,
) -> Result<Vec<SqlStatement>, PluginError> {
    let user = ident(target.user)?;
    let owner = ident(target.owner)?;
    let mut statements = Vec::new();
    for schema in target.schemas {
        let schema = ident(schema)?;
        let mut sql = Vec::new();
        if !profile.extra_tables.is_empty() {
            let tables = profile.extra_tables.join(", ");
            sql.push(format!(
                "REVOKE {tables} ON ALL TABLES IN SCHEMA {schema} FROM {user}"
            ));
            sql.push(format!(
                "ALTER DEFAULT PRIVILEGES FOR ROLE {owner} IN SCHEMA {schema} REVOKE {tables} ON TABLES FROM {user}"
            ));
        }
        if !profile.extra_sequences.is_empty() {
            let sequences = profile.extra_sequences.join(", ");
            sql.push(format!(
                "REVOKE {sequences} ON ALL SEQUENCES IN SCHEMA {schema} FROM {user}"
            ));
            sql.push(format!(
                "ALTER DEFAULT PRIVILEGES FOR ROLE {owner} IN SCHEMA {schema} REVOKE {sequences} ON SEQUENCES FROM {user}"
            ));
        }
        statements.extend(sql.into_iter().map(|sql| {
            let summary = sql.clone();
            SqlStatement::new(sql, summary)
        }));
    }
    Ok(statements)
}

/// `GRANT "owner" TO "user"` (`grant`) or `REVOKE "owner" FROM "user"`.
///
/// # Errors
/// `InvalidSpec` when a name cannot be quoted.
pub(crate) fn membership(grant: bool, target: &Target<'_>) -> Result<SqlStatement, PluginError> {
    let user = ident(target.user)?;
    let owner = ident(target.owner)?;
    let sql = if grant {
        format!("GRANT {owner} TO {user}")
    } else {
        format!("REVOKE {owner} FROM {user}")
    };
    let summary = sql.clone();
    Ok(SqlStatement::new(sql, summary))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_only_revokes_what_read_write_adds() {
        let profile = Profile::of(Access::ReadOnly);
        assert_eq!(profile.tables, ["SELECT"]);
        assert_eq!(profile.extra_tables, ["INSERT", "UPDATE", "DELETE"]);
        assert_eq!(profile.extra_sequences, ["USAGE", "UPDATE"]);
        let read_write = Profile::of(Access::ReadWrite);
        assert!(read_write.extra_tables.is_empty() && read_write.extra_sequences.is_empty());
        let owner = Profile::of(Access::Owner);
        assert!(owner.member && owner.tables.is_empty() && owner.extra_tables.is_empty());
    }
}
