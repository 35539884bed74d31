//! The fields that describe a dedicated instance (`size`, `version`,
//! `replication`): checked whatever the mode, and what they mean for a
//! Database on an existing server (nothing, said so in a condition), and
//! how an update may change them.

use postgres_api::DatabaseSpec;
use wasm_operator_sdk::{Condition, ConditionStatus, PluginError};

use crate::admission::unchanged;

/// PostgreSQL major versions a Database may ask for.
pub const SUPPORTED_VERSIONS: std::ops::RangeInclusive<u32> = 14..=19;
/// The smallest and largest `spec.size`.
const SIZE_RANGE: (u128, u128) = (1 << 30, 1 << 50);
/// The condition type set while a Database on an existing server has
/// fields that do not apply there.
pub const SPEC_IGNORED: &str = "SpecIgnored";
/// Its reason when `size` or `replication` is set.
pub const DEDICATED_ONLY: &str = "DedicatedOnly";
/// Its reason when the server's major version is not `spec.version`.
pub const VERSION_MISMATCH: &str = "VersionMismatch";

/// Checks `spec.size` and `spec.version`.
///
/// # Errors
/// `InvalidSpec` naming the field and the reason.
pub(crate) fn check(spec: &DatabaseSpec) -> Result<(), PluginError> {
    if let Some(size) = &spec.size {
        let bytes = quantity_bytes(size).ok_or_else(|| {
            PluginError::invalid_spec(format!(
                "spec.size: {size:?} is not a storage quantity (a whole or decimal number with \
                 a unit such as Gi or G, e.g. \"120Gi\")"
            ))
        })?;
        if !(SIZE_RANGE.0..=SIZE_RANGE.1).contains(&bytes) {
            return Err(PluginError::invalid_spec(format!(
                "spec.size: {size:?} is outside 1Gi to 1Pi"
            )));
        }
    }
    if let Some(version) = spec.version
        && !SUPPORTED_VERSIONS.contains(&version)
    {
        return Err(PluginError::invalid_spec(format!(
            "spec.version: {version} is not a supported PostgreSQL major version ({} to {})",
            SUPPORTED_VERSIONS.start(),
            SUPPORTED_VERSIONS.end()
        )));
    }
    Ok(())
}

/// Checks an update of `spec.size` and `spec.version` against the spec it
/// replaces: storage may grow but not shrink, and the major version may be
/// set or unset but not changed (an upgrade is not supported). Admission
/// only: reconcile sees no old spec.
///
/// # Errors
/// `InvalidSpec` naming the field.
pub(crate) fn check_change(old: &DatabaseSpec, new: &DatabaseSpec) -> Result<(), PluginError> {
    if let (Some(old_size), Some(new_size)) = (&old.size, &new.size)
        && let (Some(old_bytes), Some(new_bytes)) =
            (quantity_bytes(old_size), quantity_bytes(new_size))
        && new_bytes < old_bytes
    {
        return Err(PluginError::invalid_spec(format!(
            "spec.size: {new_size:?} is smaller than {old_size:?}; storage can grow but not shrink"
        )));
    }
    if let (Some(old_version), Some(new_version)) = (old.version, new.version) {
        unchanged("spec.version", &old_version, &new_version)?;
    }
    Ok(())
}

/// The `SpecIgnored` condition for a Database on server `key` running
/// `server_version_num`, or `None` when every field it sets applies.
pub(crate) fn ignored(
    spec: &DatabaseSpec,
    key: &str,
    server_version_num: i64,
) -> Option<Condition> {
    let mut fields = Vec::new();
    if spec.size.is_some() {
        fields.push("spec.size");
    }
    if spec.replication.is_some() {
        fields.push("spec.replication");
    }
    let server_major = server_version_num / 10_000;
    let mismatch = spec
        .version
        .filter(|version| server_version_num > 0 && i64::from(*version) != server_major);
    let mut messages = Vec::new();
    if let Some(version) = mismatch {
        messages.push(format!(
            "spec.version is {version} but server {key} runs PostgreSQL {server_major}"
        ));
    }
    if !fields.is_empty() {
        messages.push(format!(
            "{} apply to dedicated instances only; on server {key} the server's own storage \
             and replicas are used",
            fields.join(" and ")
        ));
    }
    if messages.is_empty() {
        return None;
    }
    let reason = if mismatch.is_some() {
        VERSION_MISMATCH
    } else {
        DEDICATED_ONLY
    };
    Some(Condition::new(
        SPEC_IGNORED,
        ConditionStatus::True,
        reason,
        messages.join("; "),
    ))
}

/// The bytes of a Kubernetes quantity without sign or exponent
/// (`120Gi`, `1.5T`, `500M`); `None` when it is not one.
pub(crate) fn quantity_bytes(quantity: &str) -> Option<u128> {
    let split = quantity
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(quantity.len());
    let (number, unit) = quantity.split_at(split);
    let multiplier: u128 = match unit {
        "" => 1,
        "k" => 1_000,
        "M" => 1_000_000,
        "G" => 1_000_000_000,
        "T" => 1_000_000_000_000,
        "P" => 1_000_000_000_000_000,
        "E" => 1_000_000_000_000_000_000,
        "Ki" => 1 << 10,
        "Mi" => 1 << 20,
        "Gi" => 1 << 30,
        "Ti" => 1 << 40,
        "Pi" => 1 << 50,
        "Ei" => 1 << 60,
        _ => return None,
    };
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    if whole.is_empty() && fraction.is_empty()
        || fraction.contains('.')
        || whole.len() + fraction.len() > 24
    {
        return None;
    }
    let whole: u128 = if whole.is_empty() {
        0
    } else {
        whole.parse().ok()?
    };
    let mut bytes = whole.checked_mul(multiplier)?;
    if !fraction.is_empty() {
        let digits: u128 = fraction.parse().ok()?;
        let scale = 10u128.checked_pow(u32::try_from(fraction.len()).ok()?)?;
        bytes = bytes.checked_add(digits.checked_mul(multiplier)? / scale)?;
    }
    Some(bytes)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn spec(fields: serde_json::Value) -> DatabaseSpec {
        let mut base = json!({"credentials": {"username": "foo"}});
        base.as_object_mut()
            .unwrap()
            .extend(fields.as_object().unwrap().clone());
        serde_json::from_value(base).unwrap()
    }

    #[test]
    fn quantities_parse_as_kubernetes_reads_them() {
        assert_eq!(quantity_bytes("120Gi"), Some(120 << 30));
        assert_eq!(quantity_bytes("1.5Gi"), Some(3 << 29));
        assert_eq!(quantity_bytes("2G"), Some(2_000_000_000));
        assert_eq!(quantity_bytes("1073741824"), Some(1 << 30));
        for bad in [
            "",
            "lots",
            "-1Gi",
            "+1Gi",
            "1e9",
            "1gi",
            "Gi",
            ".",
            "1..2Gi",
            "1 Gi",
            "12GiB",
            "99999999999999999999999999Gi",
        ] {
            assert_eq!(quantity_bytes(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn size_and_version_are_checked_naming_the_field() {
        assert!(
            check(&spec(
                json!({"size": "120Gi", "version": 14, "replication": true})
            ))
            .is_ok()
        );
        for (fields, field) in [
            (json!({"size": "-1Gi"}), "spec.size"),
            (json!({"size": "lots"}), "spec.size"),
            (json!({"size": "10Mi"}), "spec.size"),
            (json!({"size": "2Pi"}), "spec.size"),
            (json!({"version": 99}), "spec.version"),
            (json!({"version": 13}), "spec.version"),
        ] {
            let error = check(&spec(fields.clone())).unwrap_err();
            assert_eq!(error.reason, "InvalidSpec");
            assert!(
                error.message.starts_with(field),
                "{fields}: {}",
                error.message
            );
        }
    }

    #[test]
    fn fields_of_a_dedicated_instance_are_reported_as_ignored_on_a_server() {
        let seed = spec(json!({"size": "120Gi", "version": 14, "replication": true}));
        let condition = ignored(&seed, "infra/main", 150_008).unwrap();
        assert_eq!(condition.reason, VERSION_MISMATCH);
        assert!(
            condition
                .message
                .contains("spec.version is 14 but server infra/main runs PostgreSQL 15")
        );
        assert!(
            condition
                .message
                .contains("spec.size and spec.replication apply to dedicated instances only")
        );
        let on_14 = ignored(&seed, "infra/main", 140_011).unwrap();
        assert_eq!(on_14.reason, DEDICATED_ONLY);
        assert_eq!(
            ignored(&spec(json!({"version": 15})), "infra/main", 150_008),
            None
        );
        assert_eq!(ignored(&spec(json!({})), "infra/main", 150_008), None);
    }
}
