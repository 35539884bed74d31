//! Host bindings generated from the WIT contract in `wit/`, in one place.
//!
//! The world `admission-plugin` is the superset of every export a plugin may
//! offer; the runtime looks up each exported interface separately so a
//! component without `admission` still loads.

wasmtime::component::bindgen!({
    path: "../wit",
    world: "admission-plugin",
    imports: { default: async },
    exports: { default: async },
});

pub use self::exports::wasm_operator::plugin::admission;
pub use self::exports::wasm_operator::plugin::reconciler;
pub use self::wasm_operator::plugin::{kube, log, sql, types};

/// The WIT package the host implements, as written in `wit/plugin.wit`.
pub const WIT_PACKAGE: &str = "wasm-operator:plugin";

/// The version of the WIT package the host implements.
pub const WIT_VERSION: &str = "0.1.0";

impl From<types::GroupVersionKind> for crate::vocabulary::ObjectKind {
    fn from(gvk: types::GroupVersionKind) -> Self {
        Self {
            group: gvk.group,
            version: gvk.version,
            kind: gvk.kind,
        }
    }
}
