//! Checks that a component speaks a version of the WIT contract this host
//! links, finds what it exports, and names what is missing when it does not.
//!
//! A component is one of two roles:
//! - a **reconciler**: exports `reconciler` (every function of it), maybe
//!   `admission`, and (0.2.0 on) maybe `admission-info` to narrow what it
//!   admits;
//! - **admission-only** (0.2.0 on): exports `admission` and
//!   `admission-info`, and no `reconciler`.
//!
//! Its version is the one its `wasm-operator:plugin` exports carry; every
//! such export must carry the same one.

use wasmtime::Engine;
use wasmtime::component::Component;
use wasmtime::component::types::ComponentItem;

use super::bindings::{LINKED_VERSIONS, WIT_PACKAGE, WIT_VERSION};
use super::digest::PluginDigest;
use super::error::LoadError;

/// The functions of each exported interface the host calls.
const RECONCILER_FUNCTIONS: [&str; 3] = ["describe", "reconcile", "finalize"];
const ADMISSION_FUNCTIONS: [&str; 2] = ["validate", "mutate"];
const ADMISSION_INFO_FUNCTIONS: [&str; 1] = ["describe"];

/// What the contract check learned about a component.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ContractInfo {
    /// The WIT package version the component was built against.
    pub(crate) wit_version: String,
    /// Whether it exports `reconciler` (else it is admission-only).
    pub(crate) reconciles: bool,
    /// Whether it exports `admission`.
    pub(crate) offers_admission: bool,
    /// Whether it exports `admission-info`.
    pub(crate) describes_admission: bool,
}

impl ContractInfo {
    /// The export name of `interface` in the component's version
    /// (`wasm-operator:plugin/reconciler@0.1.0`).
    pub(crate) fn export_name(&self, interface: &str) -> String {
        format!("{WIT_PACKAGE}/{interface}@{}", self.wit_version)
    }
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

    /// Whether the host links this version: one of [`LINKED_VERSIONS`] or a
    /// patch release of one (patch releases change only documentation).
    fn is_linked(self) -> bool {
        linked().any(|v| v == self)
    }
}

fn linked() -> impl Iterator<Item = Version> {
    LINKED_VERSIONS
        .iter()
        .map(|(v, _)| Version::parse(v).expect("LINKED_VERSIONS are semver versions"))
}

/// The versions the host accepts, for messages: `>=0.1.0, <0.3.0 (0.1.x, 0.2.x)`.
pub(crate) fn accepted_range() -> String {
    let oldest = LINKED_VERSIONS[0].0;
    let newest = Version::parse(WIT_VERSION).expect("WIT_VERSION is a semver version");
    let minors: Vec<String> = linked()
        .map(|v| format!("{}.{}.x", v.major, v.minor))
        .collect();
    format!(
        ">={oldest}, <{}.{}.0 ({})",
        newest.major,
        newest.minor + 1,
        minors.join(", ")
    )
}

/// The `wasm-operator:plugin` interfaces a component exports, with the
/// version each carries.
#[derive(Default)]
struct Found {
    reconciler: Option<(String, ComponentItem)>,
    admission: Option<(String, ComponentItem)>,
    admission_info: Option<(String, ComponentItem)>,
}

/// Checks the component's exports against the contract.
///
/// # Errors
/// [`LoadError::IncompatibleWit`] for a version the host does not link (or
/// exports of mixed versions), [`LoadError::MissingExport`] when the
/// exports make neither role or lack a function.
pub(crate) fn check(
    engine: &Engine,
    component: &Component,
    digest: &PluginDigest,
) -> Result<ContractInfo, LoadError> {
    let ty = component.component_type();
    let mut found = Found::default();
    for (name, item) in ty.exports(engine) {
        let Some(rest) = name
            .strip_prefix(WIT_PACKAGE)
            .and_then(|r| r.strip_prefix('/'))
        else {
            continue;
        };
        let (interface, version) = rest.split_once('@').unwrap_or((rest, ""));
        let slot = match interface {
            "reconciler" => &mut found.reconciler,
            "admission" => &mut found.admission,
            "admission-info" => &mut found.admission_info,
            _ => continue,
        };
        *slot = Some((version.to_owned(), item.ty));
    }
    let wit_version = version_of(&found, digest)?;
    let info = ContractInfo {
        wit_version,
        reconciles: found.reconciler.is_some(),
        offers_admission: found.admission.is_some(),
        describes_admission: found.admission_info.is_some(),
    };
    let admission_only = info.offers_admission && info.describes_admission;
    if !(info.reconciles || admission_only) {
        let (export, hint) = if info.offers_admission {
            (
                "admission-info",
                "a component exporting admission without reconciler is admission-only: \
                 export admission-info too (world `admission-only-plugin`, WIT 0.2.0; see \
                 wit/plugin.wit)",
            )
        } else {
            (
                "reconciler",
                "a plugin must export the reconciler interface (world `plugin`), or \
                 admission and admission-info (world `admission-only-plugin`); see \
                 wit/plugin.wit",
            )
        };
        return Err(LoadError::MissingExport {
            digest: digest.clone(),
            export: info.export_name(export),
            hint,
        });
    }
    if info.describes_admission && !info.offers_admission {
        return Err(LoadError::MissingExport {
            digest: digest.clone(),
            export: info.export_name("admission"),
            hint: "admission-info describes the admission export: export admission too",
        });
    }
    let interfaces = [
        ("reconciler", &found.reconciler, &RECONCILER_FUNCTIONS[..]),
        ("admission", &found.admission, &ADMISSION_FUNCTIONS[..]),
        (
            "admission-info",
            &found.admission_info,
            &ADMISSION_INFO_FUNCTIONS[..],
        ),
    ];
    for (interface, export, functions) in interfaces {
        if let Some((_, item)) = export {
            check_functions(engine, &info, digest, interface, item, functions)?;
        }
    }
    Ok(info)
}

/// The one version every `wasm-operator:plugin` export carries, if the host
/// links it.
fn version_of(found: &Found, digest: &PluginDigest) -> Result<String, LoadError> {
    let versions: Vec<&str> = [&found.reconciler, &found.admission, &found.admission_info]
        .into_iter()
        .flatten()
        .map(|(version, _)| version.as_str())
        .collect();
    let Some(first) = versions.first().copied() else {
        return Err(LoadError::MissingExport {
            digest: digest.clone(),
            export: format!("{WIT_PACKAGE}/reconciler@{WIT_VERSION}"),
            hint: "a plugin must export the reconciler interface of the wasm-operator:plugin \
                   world `plugin`, or admission and admission-info (world \
                   `admission-only-plugin`); see wit/plugin.wit",
        });
    };
    let incompatible = |found: String| LoadError::IncompatibleWit {
        digest: digest.clone(),
        package: WIT_PACKAGE,
        found,
        accepted: WIT_VERSION,
        compatible: accepted_range(),
    };
    if let Some(other) = versions.iter().find(|v| **v != first) {
        return Err(incompatible(format!("{first} and {other} (mixed)")));
    }
    if !Version::parse(first).is_some_and(Version::is_linked) {
        return Err(incompatible(if first.is_empty() {
            "(unversioned)".into()
        } else {
            first.to_owned()
        }));
    }
    Ok(first.to_owned())
}

fn check_functions(
    engine: &Engine,
    info: &ContractInfo,
    digest: &PluginDigest,
    interface: &str,
    item: &ComponentItem,
    functions: &[&str],
) -> Result<(), LoadError> {
    let ComponentItem::ComponentInstance(instance) = item else {
        return Err(LoadError::MissingExport {
            digest: digest.clone(),
            export: info.export_name(interface),
            hint: "the export exists but is not an interface instance",
        });
    };
    let exported: Vec<String> = instance
        .exports(engine)
        .map(|(n, _)| n.to_owned())
        .collect();
    for function in functions {
        if !exported.iter().any(|n| n == function) {
            return Err(LoadError::MissingExport {
                digest: digest.clone(),
                export: format!("{}#{function}", info.export_name(interface)),
                hint: "implement every function of the interface",
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn linked(text: &str) -> bool {
        Version::parse(text).unwrap().is_linked()
    }

    #[test]
    fn every_minor_version_up_to_the_hosts_own_is_linked_with_its_patch_releases() {
        assert!(linked("0.1.0"));
        assert!(linked("0.1.7"));
        assert!(linked("0.2.0"));
        assert!(linked("0.2.3-rc.1"));
    }

    #[test]
    fn newer_minor_versions_and_other_major_versions_are_not_linked() {
        assert!(!linked("0.3.0"));
        assert!(!linked("0.0.9"));
        assert!(!linked("1.0.0"));
        assert!(!linked("1.2.0"));
    }

    #[test]
    fn the_accepted_range_names_every_linked_minor_version() {
        assert_eq!(accepted_range(), ">=0.1.0, <0.3.0 (0.1.x, 0.2.x)");
    }

    #[test]
    fn malformed_versions_are_not_parsed() {
        assert_eq!(Version::parse("1.0"), None);
        assert_eq!(Version::parse("x.y.z"), None);
        assert!(Version::parse("0.1.0-rc.1").is_some());
    }
}
