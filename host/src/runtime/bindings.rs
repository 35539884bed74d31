//! Host bindings generated from the WIT contract in `wit/`, in one place,
//! and the contract versions the host links.
//!
//! The world `scoped-admission-plugin` is the superset of every export a
//! component may offer; the runtime looks up each exported interface
//! separately (see `exports`), under the version the component was built
//! for, so a component without `admission` or without `reconciler` still
//! loads.
//!
//! # Older minor versions
//! Within a major version the contract only grows, so every interface of an
//! older minor version is, type for type, the same as the interface of the
//! same name in the newest one. The host therefore links each older
//! version's imports with the newest version's host implementations under
//! the older names ([`add_older_imports`]); wasmtime checks the types
//! structurally, so no second set of bindings is needed. The older texts are
//! kept in `wit/compat/<version>/plugin.wit`, never to be edited.

use wasmtime::component::{HasSelf, Linker};

wasmtime::component::bindgen!({
    path: "../wit",
    world: "scoped-admission-plugin",
    imports: { default: async },
    exports: { default: async },
});

pub use self::exports::wasm_operator::plugin::admission;
pub use self::exports::wasm_operator::plugin::admission_info;
pub use self::exports::wasm_operator::plugin::reconciler;
pub use self::wasm_operator::plugin::{kube, log, sql, types};

/// The WIT package the host implements, as written in `wit/plugin.wit`.
pub const WIT_PACKAGE: &str = "wasm-operator:plugin";

/// The version of the WIT package the host implements.
pub const WIT_VERSION: &str = "0.2.0";

/// Every version of the contract the host links, oldest first, with the
/// host interfaces (imports) each one has. The last is [`WIT_VERSION`].
/// Components built for a patch release of one of these (`0.1.3`) are
/// linked too: wasmtime matches semver-compatible names.
pub(crate) const LINKED_VERSIONS: [(&str, &[&str]); 2] = [
    ("0.1.0", &["types", "log", "kube", "sql"]),
    ("0.2.0", &["types", "log", "kube", "sql"]),
];

/// Links the host imports of every older version of [`LINKED_VERSIONS`]
/// under that version's names, with the same implementations as the
/// newest version's (which `ScopedAdmissionPlugin::add_to_linker` links).
pub(crate) fn add_older_imports<T>(linker: &mut Linker<T>) -> wasmtime::Result<()>
where
    T: types::Host + log::Host + kube::Host + sql::Host + Send + 'static,
{
    let (_newest, older) = LINKED_VERSIONS
        .split_last()
        .expect("the host links at least one version");
    for (version, interfaces) in older {
        for interface in *interfaces {
            let mut instance = linker.instance(&format!("{WIT_PACKAGE}/{interface}@{version}"))?;
            match *interface {
                "types" => types::add_to_linker_instance::<_, HasSelf<_>>(&mut instance, |s| s)?,
                "log" => log::add_to_linker_instance::<_, HasSelf<_>>(&mut instance, |s| s)?,
                "kube" => kube::add_to_linker_instance::<_, HasSelf<_>>(&mut instance, |s| s)?,
                "sql" => sql::add_to_linker_instance::<_, HasSelf<_>>(&mut instance, |s| s)?,
                other => unreachable!("LINKED_VERSIONS names an unknown interface {other}"),
            }
        }
    }
    Ok(())
}

impl From<types::GroupVersionKind> for crate::vocabulary::ObjectKind {
    fn from(gvk: types::GroupVersionKind) -> Self {
        Self {
            group: gvk.group,
            version: gvk.version,
            kind: gvk.kind,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_newest_linked_version_is_the_one_the_host_implements() {
        assert_eq!(LINKED_VERSIONS.last().unwrap().0, WIT_VERSION);
    }

    #[test]
    fn the_host_implements_the_version_written_in_the_contract() {
        let contract = include_str!("../../../wit/plugin.wit");
        assert!(
            contract.contains(&format!("package {WIT_PACKAGE}@{WIT_VERSION};")),
            "WIT_VERSION does not match wit/plugin.wit"
        );
    }

    #[test]
    fn every_older_version_is_kept_frozen_next_to_the_contract() {
        // The 0.1.0 text as released; a change here breaks components
        // built for it.
        let frozen = include_str!("../../../wit/compat/0.1.0/plugin.wit");
        assert!(frozen.contains("package wasm-operator:plugin@0.1.0;"));
        let contract = include_str!("../../../wit/plugin.wit");
        // Additive only: every interface and world of 0.1.0 is in the
        // contract with the same body (doc comments may change).
        for block in code_blocks(frozen) {
            assert!(
                code_blocks(contract).contains(&block),
                "0.1.0's `{}` changed in wit/plugin.wit; the contract may only grow",
                block.lines().next().unwrap_or_default()
            );
        }
    }

    /// The top-level `interface`/`world` blocks of a WIT text, without
    /// comments and blank lines.
    fn code_blocks(text: &str) -> Vec<String> {
        let mut blocks = Vec::new();
        let mut current: Option<String> = None;
        for line in text.lines() {
            let code = line.split("//").next().unwrap_or_default().trim_end();
            if code.trim().is_empty() {
                continue;
            }
            if code.starts_with("interface ") || code.starts_with("world ") {
                current = Some(String::new());
            }
            if let Some(block) = current.as_mut() {
                block.push_str(code.trim());
                block.push('\n');
                if code == "}" {
                    blocks.extend(current.take());
                }
            }
        }
        blocks
    }
}
