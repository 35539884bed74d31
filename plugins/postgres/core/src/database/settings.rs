//! The Database plugin binding's settings: what a dedicated instance runs
//! (the image of each PostgreSQL major version, container resources, extra
//! server parameters) and how long a primary may be unhealthy before a
//! replica takes over. Every field is optional; `{}` gives the defaults.

use std::collections::BTreeMap;
use std::time::Duration;

use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::Value;
use wasm_operator_sdk::PluginError;

/// The images used when the settings map none: the official images.
const DEFAULT_IMAGES: [(u32, &str); 3] = [
    (14, "postgres:14"),
    (15, "postgres:15"),
    (16, "postgres:16"),
];
/// The default of `failoverDelaySeconds`.
const DEFAULT_FAILOVER_DELAY_SECONDS: u64 = 10;

/// The binding's `spec.settings`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct DatabaseSettings {
    /// Image of each PostgreSQL major version (`"14": "postgres:14.23"`),
    /// added to and overriding the defaults `postgres:14`, `postgres:15` and
    /// `postgres:16`. The image must have `initdb`, `postgres`,
    /// `pg_basebackup` and `pg_isready` on `PATH` and a user 999.
    #[serde(default)]
    pub(crate) images: BTreeMap<String, String>,
    /// The `resources` of every instance's containers (requests and limits,
    /// as in a Pod spec). Default: none.
    #[serde(default)]
    #[schemars(schema_with = "resources_schema")]
    pub(crate) resources: Option<Value>,
    /// Extra `postgresql.conf` parameters of every instance (`name: value`).
    /// Those the plugin decides (listen addresses, replication, WAL
    /// retention, files) cannot be set.
    #[serde(default)]
    pub(crate) parameters: BTreeMap<String, String>,
    /// How long the primary may be gone or not ready before a streaming
    /// replica is promoted (default 10).
    #[serde(default)]
    #[schemars(range(min = 1, max = 3600))]
    pub(crate) failover_delay_seconds: Option<u64>,
    /// StorageClass of new volumes (default: the cluster's default class).
    #[serde(default)]
    pub(crate) storage_class_name: Option<String>,
}

/// The parameters the plugin sets itself.
const RESERVED_PARAMETERS: [&str; 12] = [
    "config_file",
    "data_directory",
    "hba_file",
    "ident_file",
    "listen_addresses",
    "port",
    "cluster_name",
    "hot_standby",
    "wal_level",
    "max_slot_wal_keep_size",
    "primary_conninfo",
    "primary_slot_name",
];

impl DatabaseSettings {
    /// The image for major `version`.
    ///
    /// # Errors
    /// `InvalidSpec` naming `spec.version` and the versions that have an image.
    pub(crate) fn image(&self, version: u32) -> Result<String, PluginError> {
        let images = self.images();
        images.get(&version).cloned().ok_or_else(|| {
            let available: Vec<String> = images.keys().map(ToString::to_string).collect();
            PluginError::invalid_spec(format!(
                "spec.version: no image for PostgreSQL {version} in this operator's settings; \
                 available versions: {}",
                available.join(", ")
            ))
        })
    }

    /// Every mapped major version and its image (settings over defaults);
    /// keys that are not a number are ignored.
    fn images(&self) -> BTreeMap<u32, String> {
        let mut images: BTreeMap<u32, String> = DEFAULT_IMAGES
            .iter()
            .map(|(version, image)| (*version, (*image).to_owned()))
            .collect();
        for (version, image) in &self.images {
            if let Ok(version) = version.parse::<u32>() {
                images.insert(version, image.clone());
            }
        }
        images
    }

    /// How long a primary may be unhealthy before a failover.
    pub(crate) fn failover_delay(&self) -> Duration {
        Duration::from_secs(
            self.failover_delay_seconds
                .unwrap_or(DEFAULT_FAILOVER_DELAY_SECONDS),
        )
    }

    /// The extra parameters, checked: plain names, not reserved, and values
    /// that a quoted `postgresql.conf` string can hold.
    ///
    /// # Errors
    /// `InvalidSettings` naming the parameter.
    pub(crate) fn parameters(&self) -> Result<&BTreeMap<String, String>, PluginError> {
        for (name, value) in &self.parameters {
            let plain = !name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '.');
            if !plain || RESERVED_PARAMETERS.contains(&name.as_str()) {
                return Err(PluginError::permanent(
                    "InvalidSettings",
                    format!(
                        "settings.parameters.{name}: not a parameter the settings may set (plain \
                         lower-case names only; {} are decided by the plugin)",
                        RESERVED_PARAMETERS.join(", ")
                    ),
                ));
            }
            if value.chars().any(char::is_control) {
                return Err(PluginError::permanent(
                    "InvalidSettings",
                    format!("settings.parameters.{name}: the value has control characters"),
                ));
            }
        }
        Ok(&self.parameters)
    }
}

/// `resources` as a Pod spec has it: an object the API server checks.
fn resources_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": ["object", "null"],
        "properties": {
            "requests": {"type": "object", "additionalProperties": {"type": ["string", "number"]}},
            "limits": {"type": "object", "additionalProperties": {"type": ["string", "number"]}}
        },
        "additionalProperties": false
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_images_are_the_official_ones_for_14_to_16_and_settings_override_them() {
        let defaults = DatabaseSettings::default();
        assert_eq!(defaults.image(14).unwrap(), "postgres:14");
        assert_eq!(defaults.image(16).unwrap(), "postgres:16");
        let error = defaults.image(17).unwrap_err();
        assert_eq!(error.reason, "InvalidSpec");
        assert_eq!(
            error.message,
            "spec.version: no image for PostgreSQL 17 in this operator's settings; available \
             versions: 14, 15, 16"
        );
        let settings: DatabaseSettings = serde_json::from_value(serde_json::json!({
            "images": {"14": "registry.local/postgres:14.23", "17": "postgres:17.6"}
        }))
        .unwrap();
        assert_eq!(settings.image(14).unwrap(), "registry.local/postgres:14.23");
        assert_eq!(settings.image(17).unwrap(), "postgres:17.6");
    }

    #[test]
    fn reserved_or_odd_parameters_are_refused_naming_them() {
        for (name, value) in [
            ("listen_addresses", "*"),
            ("hba_file", "/tmp/x"),
            ("Work_Mem", "4MB"),
            ("work_mem\nhba_file", "x"),
            ("work_mem", "4MB\nhba_file='/tmp/x'"),
        ] {
            let settings = DatabaseSettings {
                parameters: BTreeMap::from([(name.to_owned(), value.to_owned())]),
                ..DatabaseSettings::default()
            };
            let error = settings.parameters().unwrap_err();
            assert_eq!(error.reason, "InvalidSettings");
            assert!(
                error
                    .message
                    .starts_with(&format!("settings.parameters.{name}"))
            );
        }
    }
}
