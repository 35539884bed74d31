//! Checks that a component speaks a version of the WIT contract this host
//! implements, and names what is missing when it does not.

use wasmtime::Engine;
use wasmtime::component::Component;
use wasmtime::component::types::ComponentItem;

use super::bindings::{WIT_PACKAGE, WIT_VERSION};
use super::digest::PluginDigest;
use super::error::LoadError;

/// The functions every plugin's `reconciler` export must have.
const RECONCILER_FUNCTIONS: [&str; 3] = ["describe", "reconcile", "finalize"];

/// What the contract check learned about a component.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ContractInfo {
    /// The WIT package version the component was built against.
    pub(crate) wit_version: String,
    /// Whether it exports the `admission` interface.
    pub(crate) offers_admission: bool,
}

/// A semver version, as far as this check needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Version {
    major: u64,
    minor: u64,
}

impl Version {
    fn parse(text: &str) -> Option<Self> {
        let core = text.split(['-', '+']).next()?;
        let mut parts = core.split('.');
        let major = parts.next()?.parse().ok()?;
        let minor = parts.next()?.parse().ok()?;
        parts.next()?.parse::<u64>().ok()?;
        Some(Self { major, minor })
    }

    /// Semver compatibility as cargo applies it: 0.x versions are
    /// compatible only within the same minor version.
    fn is_compatible_with(self, host: Self) -> bool {
        if host.major == 0 {
            self.major == 0 && self.minor == host.minor
        } else {
            self.major == host.major
        }
    }
}

/// The range of component versions the host accepts, for messages.
pub(crate) fn accepted_range() -> String {
    let host = Version::parse(WIT_VERSION).expect("WIT_VERSION is a semver version");
    if host.major == 0 {
        format!(">={WIT_VERSION}, <0.{}.0", host.minor + 1)
    } else {
        format!(">={WIT_VERSION}, <{}.0.0", host.major + 1)
    }
}

/// Checks the component's exports against the contract.
pub(crate) fn check(
    engine: &Engine,
    component: &Component,
    digest: &PluginDigest,
) -> Result<ContractInfo, LoadError> {
    let host = Version::parse(WIT_VERSION).expect("WIT_VERSION is a semver version");
    let prefix = format!("{WIT_PACKAGE}/reconciler");
    let ty = component.component_type();
    let mut reconciler = None;
    let mut offers_admission = false;
    for (name, item) in ty.exports(engine) {
        let (interface, version) = name.split_once('@').unwrap_or((name, ""));
        if interface == prefix {
            reconciler = Some((version.to_owned(), item));
        } else if interface == format!("{WIT_PACKAGE}/admission") {
            offers_admission = true;
        }
    }
    let Some((wit_version, item)) = reconciler else {
        return Err(LoadError::MissingExport {
            digest: digest.clone(),
            export: format!("{prefix}@{WIT_VERSION}"),
            hint: "a plugin must export the reconciler interface of the wasm-operator:plugin \
                   world `plugin` (see wit/plugin.wit)",
        });
    };
    let compatible = Version::parse(&wit_version).is_some_and(|v| v.is_compatible_with(host));
    if !compatible {
        return Err(LoadError::IncompatibleWit {
            digest: digest.clone(),
            package: WIT_PACKAGE,
            found: if wit_version.is_empty() {
                "(unversioned)".into()
            } else {
                wit_version
            },
            accepted: WIT_VERSION,
            compatible: accepted_range(),
        });
    }
    let ComponentItem::ComponentInstance(instance) = item.ty else {
        return Err(LoadError::MissingExport {
            digest: digest.clone(),
            export: format!("{prefix}@{wit_version}"),
            hint: "the export exists but is not an interface instance",
        });
    };
    let exported: Vec<String> = instance
        .exports(engine)
        .map(|(n, _)| n.to_owned())
        .collect();
    for function in RECONCILER_FUNCTIONS {
        if !exported.iter().any(|n| n == function) {
            return Err(LoadError::MissingExport {
                digest: digest.clone(),
                export: format!("{prefix}@{wit_version}#{function}"),
                hint: "implement every function of the reconciler interface",
            });
        }
    }
    Ok(ContractInfo {
        wit_version,
        offers_admission,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_major_versions_are_compatible_only_within_their_minor() {
        let host = Version::parse("0.1.0").unwrap();
        assert!(Version::parse("0.1.7").unwrap().is_compatible_with(host));
        assert!(!Version::parse("0.2.0").unwrap().is_compatible_with(host));
        assert!(!Version::parse("1.0.0").unwrap().is_compatible_with(host));
    }

    #[test]
    fn major_versions_from_one_on_are_compatible_within_their_major() {
        let host = Version::parse("1.2.0").unwrap();
        assert!(Version::parse("1.9.3").unwrap().is_compatible_with(host));
        assert!(!Version::parse("2.0.0").unwrap().is_compatible_with(host));
    }

    #[test]
    fn malformed_versions_are_not_parsed() {
        assert_eq!(Version::parse("1.0"), None);
        assert_eq!(Version::parse("x.y.z"), None);
        assert!(Version::parse("0.1.0-rc.1").is_some());
    }
}
