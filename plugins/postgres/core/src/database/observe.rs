//! What a Database looks like on its server: the read-only queries, and the
//! checks that need their answers (extension availability, immutable
//! encoding and locale).

use wasm_operator_sdk::{Context, PluginError, SqlValue};

use super::Desired;
use crate::ownership::{ExistingRole, role_columns};
use crate::rows::{flag, int, json_list, list, query_failed, text};

/// Server version, owner role and database, in the maintenance database,
/// with their ownership marks. `$1` owner, `$2` database, `$3` the wanted
/// extensions (jsonb array).
pub const OBSERVE_QUERY: &str = concat!(
    "select current_setting('server_version_num')::int as server_version_num, \
     r.rolname is not null as role_exists, \
     coalesce(r.rolcanlogin, false) as role_can_login, ",
    role_columns!(),
    ", ",
    "d.datname is not null as database_exists, \
     shobj_description(d.oid, 'pg_database') as database_mark, \
     pg_encoding_to_char(d.encoding)::text as encoding, \
     d.datcollate::text as locale, \
     o.rolname::text as owner, \
     d.datconnlimit as connection_limit, \
     (select coalesce(jsonb_agg(e), '[]'::jsonb) from jsonb_array_elements_text($3::jsonb) as e \
       where not exists (select 1 from pg_available_extensions a where a.name = e)) as unavailable_extensions \
     from (select 1) as one \
     left join pg_roles r on r.rolname = $1::text \
     left join pg_database d on d.datname = $2::text \
     left join pg_roles o on o.oid = d.datdba"
);

/// Extensions and schemas missing inside the database. `$1` the wanted
/// extensions, `$2` the wanted schemas (jsonb arrays).
pub const INSIDE_QUERY: &str = "select \
     (select coalesce(jsonb_agg(e), '[]'::jsonb) from jsonb_array_elements_text($1::jsonb) as e \
       where not exists (select 1 from pg_extension x where x.extname = e)) as missing_extensions, \
     (select coalesce(jsonb_agg(s), '[]'::jsonb) from jsonb_array_elements_text($2::jsonb) as s \
       where not exists (select 1 from pg_namespace n where n.nspname = s)) as missing_schemas";

/// Server version, the marks of the database and its owner role, and
/// whether the role owns other databases, for cleanup. `$1` owner, `$2`
/// database.
pub const FINALIZE_QUERY: &str = "select current_setting('server_version_num')::int as server_version_num, \
     (select shobj_description(oid, 'pg_authid') from pg_roles where rolname = $1::text) as role_mark, \
     (select shobj_description(oid, 'pg_database') from pg_database where datname = $2::text) as database_mark, \
     exists (select 1 from pg_database d join pg_roles r on r.oid = d.datdba \
       where r.rolname = $1::text and d.datname <> $2::text) as owns_other_databases";

/// The first server version where `public` no longer grants CREATE to everyone.
pub(crate) const PUBLIC_SCHEMA_LOCKED_FROM: i64 = 150_000;
/// The first server version with `DROP DATABASE … WITH (FORCE)`.
pub(crate) const DROP_FORCE_FROM: i64 = 130_000;

/// The state of the database and its owner role on the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Observed {
    /// `server_version_num`.
    pub(crate) server_version_num: i64,
    /// The owner role, when it exists.
    pub(crate) role: Option<ExistingRole>,
    /// Whether it may log in.
    pub(crate) role_can_login: bool,
    /// The database, when it exists.
    pub(crate) database: Option<ExistingDatabase>,
    /// Wanted extensions the server does not offer.
    pub(crate) unavailable_extensions: Vec<String>,
}

/// An existing database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ExistingDatabase {
    /// `pg_encoding_to_char(encoding)`.
    pub(crate) encoding: String,
    /// `datcollate`.
    pub(crate) locale: String,
    /// Its comment (the ownership mark, when it has one).
    pub(crate) comment: Option<String>,
    /// The owner role's name.
    pub(crate) owner: Option<String>,
    /// `datconnlimit`.
    pub(crate) connection_limit: i64,
}

/// What is missing inside an existing database.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct Inside {
    /// Wanted extensions not created yet.
    pub(crate) missing_extensions: Vec<String>,
    /// Wanted schemas not created yet.
    pub(crate) missing_schemas: Vec<String>,
}

/// Runs [`OBSERVE_QUERY`].
///
/// # Errors
/// A retryable `SqlQueryFailed` when the server cannot be queried.
pub(crate) fn observe(
    ctx: &Context<'_>,
    key: &str,
    desired: &Desired<'_>,
) -> Result<Observed, PluginError> {
    let params = [
        SqlValue::from(desired.owner),
        SqlValue::from(desired.name.as_str()),
        json_list(desired.extensions),
    ];
    let result = ctx
        .query(key, None, OBSERVE_QUERY, &params)
        .map_err(|e| query_failed("observing the database", key, &e))?;
    let exists = flag(&result, "database_exists");
    Ok(Observed {
        server_version_num: int(&result, "server_version_num").unwrap_or(0),
        role: flag(&result, "role_exists").then(|| ExistingRole::from_row(&result)),
        role_can_login: flag(&result, "role_can_login"),
        database: exists.then(|| ExistingDatabase {
            encoding: text(&result, "encoding").unwrap_or_default(),
            locale: text(&result, "locale").unwrap_or_default(),
            comment: text(&result, "database_mark"),
            owner: text(&result, "owner"),
            connection_limit: int(&result, "connection_limit").unwrap_or(-1),
        }),
        unavailable_extensions: list(&result, "unavailable_extensions"),
    })
}

/// Runs [`INSIDE_QUERY`] in the (existing) database.
///
/// # Errors
/// A retryable `SqlQueryFailed` when the database cannot be queried.
pub(crate) fn inside(
    ctx: &Context<'_>,
    key: &str,
    desired: &Desired<'_>,
) -> Result<Inside, PluginError> {
    let params = [json_list(desired.extensions), json_list(desired.schemas)];
    let result = ctx
        .query(key, Some(&desired.name), INSIDE_QUERY, &params)
        .map_err(|e| query_failed("observing extensions and schemas", key, &e))?;
    Ok(Inside {
        missing_extensions: list(&result, "missing_extensions"),
        missing_schemas: list(&result, "missing_schemas"),
    })
}

/// Refuses what the server cannot do or must not change: extensions it does
/// not offer, a different encoding or locale for an existing database.
///
/// # Errors
/// `InvalidSpec` naming the field.
pub(crate) fn check_possible(
    desired: &Desired<'_>,
    observed: &Observed,
    key: &str,
) -> Result<(), PluginError> {
    if let Some(missing) = observed.unavailable_extensions.first() {
        let index = desired
            .extensions
            .iter()
            .position(|e| e == missing)
            .unwrap_or_default();
        return Err(PluginError::invalid_spec(format!(
            "spec.extensions[{index}]: {missing:?} is not available on server {key}"
        )));
    }
    let Some(existing) = &observed.database else {
        return Ok(());
    };
    if let Some(encoding) = desired.encoding
        && normalize(encoding) != normalize(&existing.encoding)
    {
        return Err(PluginError::invalid_spec(format!(
            "spec.encoding: {encoding:?} cannot change after creation (is {:?})",
            existing.encoding
        )));
    }
    if let Some(locale) = desired.locale
        && normalize(locale) != normalize(&existing.locale)
    {
        return Err(PluginError::invalid_spec(format!(
            "spec.locale: {locale:?} cannot change after creation (is {:?})",
            existing.locale
        )));
    }
    Ok(())
}

/// Encoding and locale names as PostgreSQL compares them: case and
/// punctuation do not matter (`UTF-8` = `utf8`, `en_US.UTF-8` = `en_US.utf8`).
pub(crate) fn normalize(name: &str) -> String {
    name.chars()
        .filter(char::is_ascii_alphanumeric)
        .map(|c| c.to_ascii_lowercase())
        .collect()
}
