//! Guest SDK for wasm-operator reconciler plugins.
//!
//! A plugin decides; the host acts. Implement [`Plugin`] on a unit struct,
//! read what you need through the [`Context`], return children, status, SQL
//! plans and events as a [`Response`], and export it with [`export_plugin!`].
//! Build with `cargo build --target wasm32-wasip2` (see
//! `scripts/build-plugins.sh`); test the same code natively with [`TestHost`].
//!
//! [`prelude`] brings the everyday items; the crate root has every item,
//! grouped by capability: reconcile, children, status and conditions,
//! events, SQL, passwords, admission and testing. The settings schema is
//! derived from the settings type ([`PluginInfo::settings`]), a status can
//! be typed ([`Response::status_of`]), and an early return keeps existing
//! children ([`Response::keep_child`]) instead of letting the host prune them.
//!
//! ```
//! use schemars::JsonSchema;
//! use serde::{Deserialize, Serialize};
//! use wasm_operator_sdk::TestHost;
//! use wasm_operator_sdk::prelude::*;
//!
//! #[derive(Deserialize)]
//! struct Spec {
//!     motd: String,
//! }
//!
//! /// The binding's settings; the host validates them against the schema
//! /// derived from this type.
//! #[derive(Deserialize, JsonSchema)]
//! #[serde(rename_all = "camelCase", deny_unknown_fields)]
//! struct Settings {
//!     /// Appended to every message.
//!     #[serde(default)]
//!     signature: String,
//! }
//!
//! #[derive(Serialize)]
//! struct Status {
//!     conditions: Conditions,
//! }
//!
//! struct Motd;
//!
//! impl Plugin for Motd {
//!     fn describe() -> PluginInfo {
//!         PluginInfo::new("motd", "0.1.0", GroupVersionKind::new("example.com", "v1", "Motd"))
//!             .child_kind(GroupVersionKind::core("v1", "ConfigMap"))
//!             .settings::<Settings>()
//!     }
//!
//!     fn reconcile(ctx: &Context<'_>, req: &Request) -> Result<Response, PluginError> {
//!         let spec: Spec = req.object.spec()?; // errors name the field: `spec.motd: …`
//!         let settings: Settings = req.settings_as()?;
//!         ctx.info("reconciling", &[("name", req.object.name())]);
//!         let child = ChildBuilder::config_map(format!("{}-motd", req.object.name()))
//!             .namespace(req.object.namespace().unwrap_or_default())
//!             .data("motd", format!("{}{}", spec.motd, settings.signature))
//!             .build();
//!         let conditions = Conditions::from_object(&req.object)
//!             .set(Condition::ready("Reconciled", "motd is published"), ctx.now());
//!         Response::new().child(child).status_of(&Status { conditions })
//!     }
//! }
//!
//! export_plugin!(Motd);
//!
//! // The same logic, natively:
//! let host = TestHost::new();
//! let object = serde_json::json!({
//!     "apiVersion": "example.com/v1", "kind": "Motd",
//!     "metadata": {"name": "hi", "namespace": "demo", "generation": 1},
//!     "spec": {"motd": "hello"}
//! });
//! let response = Motd::reconcile(&Context::new(&host), &Request::new(object)).unwrap();
//! assert_eq!(response.children[0]["data"]["motd"], "hello");
//! assert_eq!(Motd::describe().finalizer(), "plugins.systems.mikemiller.tech/motd");
//! ```
//!
//! # What a plugin may do
//! Only what the host grants: log, read cached objects of the kinds it
//! declared in [`PluginInfo::read_kind`], and query the servers it is given.
//! A component has no files, sockets, environment or arguments; every write
//! is data in the response that the host checks against the grants.

#![warn(missing_docs)]

mod admission;
mod admitter;
#[doc(hidden)]
pub mod bindings;
mod child;
mod conditions;
mod context;
mod error;
mod event;
mod export;
mod kind;
mod object;
mod password;
mod plugin;
mod reconcile;
mod selector;
mod sql;
mod testing;
mod vocabulary;
mod wasm_host;

// Reconcile: the traits, the description, what a call receives and returns.
pub use context::{Context, Host, Level};
pub use error::{HostCall, HostError, PluginError};
pub use kind::GroupVersionKind;
pub use object::{DecodeError, DecodeTarget, Object};
pub use plugin::{Plugin, PluginInfo};
pub use reconcile::{FinalizeResponse, Request, Response};
pub use selector::{LabelSelector, SelectorError};

// Children, and the names the host writes on them and on their owners.
pub use child::{ChildBuilder, retain_on_delete};
pub use vocabulary::{
    FINALIZER_PREFIX, OWNER_UID_LABEL, PLUGIN_LABEL, RETAIN_ANNOTATION, RETAINED_FROM_ANNOTATION,
    finalizer_name,
};

// Status and conditions.
pub use conditions::{Condition, ConditionStatus, Conditions, READY};

// Events.
pub use event::{Event, EventType};

// SQL: read-only queries, planned writes, quoting.
pub use sql::{
    MAX_IDENTIFIER_BYTES, QueryResult, QuoteError, SqlPlan, SqlStatement, SqlValue,
    quote_identifier, quote_literal,
};

// Passwords.
pub use password::{RandomError, generate_password, scram_sha_256_verifier};

// Admission: a reconciler that also admits, or a component that only admits.
pub use admission::{
    AdmissionRequest, AdmissionScope, MatchCondition, Mutation, Operation, Validation,
};
pub use admitter::{AdmissionOnlyPlugin, AdmitterInfo};
pub use plugin::AdmissionPlugin;

// Testing: an in-memory host for native tests.
pub use testing::{LogRecord, QueryRecord, TestHost};

/// The everyday items of a reconciler plugin, for `use wasm_operator_sdk::prelude::*;`.
///
/// SQL, passwords, admission and testing are imported by name from the
/// crate root.
pub mod prelude {
    pub use crate::{
        ChildBuilder, Condition, Conditions, Context, Event, FinalizeResponse, GroupVersionKind,
        Object, Plugin, PluginError, PluginInfo, Request, Response, export_plugin,
    };
}

/// Items the export macros expand to. Not part of the API.
#[doc(hidden)]
pub mod __private {
    pub use crate::bindings::admission::export_admission_world;
    pub use crate::bindings::plugin::export_plugin_world;
    pub use crate::export::{Exported, ExportedAdmitter};
}

/// Exports a [`Plugin`] as the component's `reconciler` (world `plugin`).
///
/// Invoke it once, at the top level of a `cdylib` crate. It expands to
/// nothing on non-wasm targets, so the same crate can be an `rlib` for native
/// tests and benchmarks.
#[macro_export]
macro_rules! export_plugin {
    ($plugin:ty) => {
        #[cfg(target_arch = "wasm32")]
        const _: () = {
            type __WasmOperatorExported = $crate::__private::Exported<$plugin>;
            $crate::__private::export_plugin_world!(
                __WasmOperatorExported with_types_in $crate::bindings::plugin
            );
        };
    };
}

/// Exports an [`AdmissionPlugin`] as the component's `reconciler`,
/// `admission` and `admission-info` (world `scoped-admission-plugin`: the
/// scope is [`AdmissionPlugin::admission_scope`]). Use instead of
/// [`export_plugin!`].
#[macro_export]
macro_rules! export_admission_plugin {
    ($plugin:ty) => {
        #[cfg(target_arch = "wasm32")]
        const _: () = {
            type __WasmOperatorExported = $crate::__private::Exported<$plugin>;
            $crate::__private::export_plugin_world!(
                __WasmOperatorExported with_types_in $crate::bindings::plugin
            );
            $crate::__private::export_admission_world!(
                __WasmOperatorExported with_types_in $crate::bindings::admission
            );
        };
    };
}

/// Exports an [`AdmissionOnlyPlugin`] as the component's `admission` and
/// `admission-info` (world `admission-only-plugin`): a component without a
/// reconciler, for which the host runs no controller and opens no watch.
/// Invoke it once, at the top level of a `cdylib` crate, instead of the
/// other export macros; like them it expands to nothing on non-wasm targets.
#[macro_export]
macro_rules! export_admission_only_plugin {
    ($plugin:ty) => {
        #[cfg(target_arch = "wasm32")]
        const _: () = {
            type __WasmOperatorExported = $crate::__private::ExportedAdmitter<$plugin>;
            $crate::__private::export_admission_world!(
                __WasmOperatorExported with_types_in $crate::bindings::admission
            );
        };
    };
}
