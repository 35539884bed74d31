//! Validation of the names that become SQL identifiers, and their quoting.
//!
//! Every check runs before any SQL is planned, and every refusal is an
//! `InvalidSpec` error whose message starts with the offending field. Any
//! character is allowed (quotes, semicolons, `$$`, Unicode): identifiers are
//! always quoted, never spliced.

use wasm_operator_sdk::{MAX_IDENTIFIER_BYTES, PluginError, quote_identifier, quote_literal};

/// Role names PostgreSQL refuses or that belong to it.
const RESERVED_ROLES: &[&str] = &["postgres", "public", "none"];
/// Database names that belong to the server itself.
const RESERVED_DATABASES: &[&str] = &["postgres", "template0", "template1"];
/// The prefix of names PostgreSQL keeps for itself (roles and schemas).
const SYSTEM_PREFIX: &str = "pg_";

/// Checks that `value` can be a PostgreSQL identifier: 1–63 bytes, no NUL.
///
/// # Errors
/// `InvalidSpec` naming `field`.
pub(crate) fn check_identifier(field: &str, value: &str) -> Result<(), PluginError> {
    if value.is_empty() {
        return Err(PluginError::invalid_spec(format!(
            "{field}: must not be empty"
        )));
    }
    if value.contains('\0') {
        return Err(PluginError::invalid_spec(format!(
            "{field}: {value:?} contains a NUL character, which PostgreSQL names cannot hold"
        )));
    }
    if value.len() > MAX_IDENTIFIER_BYTES {
        return Err(PluginError::invalid_spec(format!(
            "{field}: {value:?} is {} bytes long; PostgreSQL names are at most {MAX_IDENTIFIER_BYTES} bytes",
            value.len()
        )));
    }
    Ok(())
}

/// Checks a role name: an identifier that is not `postgres`, `public`,
/// `none` or `pg_*`.
///
/// # Errors
/// `InvalidSpec` naming `field`.
pub(crate) fn check_role_name(field: &str, value: &str) -> Result<(), PluginError> {
    check_identifier(field, value)?;
    if RESERVED_ROLES.contains(&value) {
        return Err(PluginError::invalid_spec(format!(
            "{field}: {value:?} is reserved (choose another role name)"
        )));
    }
    if value.starts_with(SYSTEM_PREFIX) {
        return Err(PluginError::invalid_spec(format!(
            "{field}: {value:?} is reserved (role names starting with \"pg_\" belong to PostgreSQL)"
        )));
    }
    Ok(())
}

/// Checks a database name: an identifier that is not `postgres`,
/// `template0` or `template1`.
///
/// # Errors
/// `InvalidSpec` naming `field`.
pub(crate) fn check_database_name(field: &str, value: &str) -> Result<(), PluginError> {
    check_identifier(field, value)?;
    if RESERVED_DATABASES.contains(&value) {
        return Err(PluginError::invalid_spec(format!(
            "{field}: {value:?} is reserved (it belongs to the server; choose another database name)"
        )));
    }
    Ok(())
}

/// Checks a schema name: an identifier that does not start with `pg_`.
///
/// # Errors
/// `InvalidSpec` naming `field`.
pub(crate) fn check_schema_name(field: &str, value: &str) -> Result<(), PluginError> {
    check_identifier(field, value)?;
    if value.starts_with(SYSTEM_PREFIX) || value == "information_schema" {
        return Err(PluginError::invalid_spec(format!(
            "{field}: {value:?} is reserved (system schema names belong to PostgreSQL)"
        )));
    }
    Ok(())
}

/// Checks a setting that becomes an SQL literal (`encoding`, `locale`):
/// non-empty, no NUL, at most 63 bytes.
///
/// # Errors
/// `InvalidSpec` naming `field`.
pub(crate) fn check_literal(field: &str, value: &str) -> Result<(), PluginError> {
    check_identifier(field, value)
}

/// Checks a connection limit (absent: no limit) and returns it as
/// PostgreSQL stores it, -1 meaning none.
///
/// # Errors
/// `InvalidSpec` naming `field` for a limit below -1.
pub(crate) fn check_connection_limit(field: &str, limit: Option<i32>) -> Result<i64, PluginError> {
    let limit = i64::from(limit.unwrap_or(-1));
    if limit < -1 {
        return Err(PluginError::invalid_spec(format!(
            "{field}: {limit} is below -1 (-1 means no limit)"
        )));
    }
    Ok(limit)
}

/// The quoted identifier for a name that passed validation.
///
/// # Errors
/// `InvalidSpec` if it was not validated after all (kept as an error rather
/// than a panic: a plugin must never trap on input).
pub(crate) fn ident(value: &str) -> Result<String, PluginError> {
    quote_identifier(value)
        .map_err(|e| PluginError::invalid_spec(format!("{value:?} cannot be quoted: {e}")))
}

/// The quoted literal for text without NUL.
///
/// # Errors
/// `InvalidSpec` if the text holds NUL.
pub(crate) fn literal(value: &str) -> Result<String, PluginError> {
    quote_literal(value).map_err(|e| PluginError::invalid_spec(e.to_string()))
}

/// Checks `validUntil`: RFC 3339 (`2030-01-01T00:00:00Z`, offsets and
/// fractions allowed) or `infinity`. PostgreSQL parses it; this only keeps
/// obvious mistakes out of the SQL.
///
/// # Errors
/// `InvalidSpec` naming `field`.
pub(crate) fn check_timestamp(field: &str, value: &str) -> Result<(), PluginError> {
    if value == "infinity" || is_rfc3339(value) {
        Ok(())
    } else {
        Err(PluginError::invalid_spec(format!(
            "{field}: {value:?} is not an RFC 3339 time (for example 2030-01-01T00:00:00Z)"
        )))
    }
}

fn is_rfc3339(value: &str) -> bool {
    let bytes = value.as_bytes();
    let digits = |range: std::ops::Range<usize>| {
        bytes
            .get(range)
            .is_some_and(|part| part.iter().all(u8::is_ascii_digit))
    };
    let at = |index: usize, allowed: &[u8]| bytes.get(index).is_some_and(|b| allowed.contains(b));
    if !(digits(0..4)
        && at(4, b"-")
        && digits(5..7)
        && at(7, b"-")
        && digits(8..10)
        && at(10, b"Tt ")
        && digits(11..13)
        && at(13, b":")
        && digits(14..16)
        && at(16, b":")
        && digits(17..19))
    {
        return false;
    }
    let mut rest = &bytes[19..];
    if let Some(fraction) = rest.strip_prefix(b".") {
        let count = fraction.iter().take_while(|b| b.is_ascii_digit()).count();
        if count == 0 {
            return false;
        }
        rest = &fraction[count..];
    }
    match rest {
        b"Z" | b"z" => true,
        [sign, h1, h2, b':', m1, m2] => {
            (*sign == b'+' || *sign == b'-') && [h1, h2, m1, m2].iter().all(|b| b.is_ascii_digit())
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reserved_role_names_are_refused_naming_the_field() {
        for name in ["postgres", "public", "none", "pg_monitor", "pg_"] {
            let error = check_role_name("spec.credentials.username", name).unwrap_err();
            assert_eq!(error.reason, "InvalidSpec");
            assert!(!error.retryable);
            assert!(
                error
                    .message
                    .starts_with(&format!("spec.credentials.username: {name:?} is reserved")),
                "{}",
                error.message
            );
        }
        check_role_name("spec.username", "Postgres").unwrap();
        check_role_name("spec.username", "app_pg_user").unwrap();
    }

    #[test]
    fn reserved_database_names_are_refused() {
        for name in ["postgres", "template0", "template1"] {
            let error = check_database_name("spec.databaseName", name).unwrap_err();
            assert!(error.message.contains("is reserved"), "{}", error.message);
        }
    }

    #[test]
    fn names_of_64_bytes_are_refused_and_63_accepted() {
        check_identifier("spec.databaseName", &"d".repeat(63)).unwrap();
        let error = check_identifier("spec.databaseName", &"d".repeat(64)).unwrap_err();
        assert!(
            error.message.starts_with("spec.databaseName: ")
                && error.message.contains("64 bytes long"),
            "{}",
            error.message
        );
        // 22 three-byte characters: 66 bytes but only 22 characters.
        assert!(check_identifier("spec.username", &"€".repeat(22)).is_err());
    }

    #[test]
    fn empty_and_nul_names_are_refused() {
        assert!(check_identifier("spec.username", "").is_err());
        assert!(check_identifier("spec.username", "a\0b").is_err());
    }

    #[test]
    fn hostile_characters_are_allowed_and_quoted() {
        check_role_name("spec.username", "a\"b;drop table x;--").unwrap();
        assert_eq!(
            ident("a\"b;drop table x;--").unwrap(),
            "\"a\"\"b;drop table x;--\""
        );
        assert_eq!(ident("$$").unwrap(), "\"$$\"");
    }

    #[test]
    fn system_schema_names_are_refused() {
        assert!(check_schema_name("spec.schemas[0]", "pg_catalog").is_err());
        assert!(check_schema_name("spec.schemas[0]", "information_schema").is_err());
        check_schema_name("spec.schemas[0]", "public").unwrap();
    }

    #[test]
    fn valid_until_accepts_rfc3339_and_infinity_only() {
        for ok in [
            "2030-01-01T00:00:00Z",
            "2030-01-01T00:00:00.5+02:00",
            "2030-01-01 00:00:00-05:30",
            "infinity",
        ] {
            check_timestamp("spec.validUntil", ok).unwrap();
        }
        for bad in [
            "2030-01-01",
            "tomorrow",
            "2030-01-01T00:00:00",
            "2030-01-01T00:00:00Z'",
        ] {
            let error = check_timestamp("spec.validUntil", bad).unwrap_err();
            assert!(error.message.starts_with("spec.validUntil: "));
        }
    }
}
