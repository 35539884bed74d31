//! wasm-operator: a Kubernetes operator host that delegates reconcile
//! decisions to sandboxed WebAssembly components.
//!
//! The modules, from the words they share to the binary's entry:
//!
//! - [`vocabulary`]: kinds, server keys, the names the host writes;
//! - [`grants`]: what a bound plugin may do, and every check of it;
//! - [`runtime`]: the Wasm engine and sandbox (the only module that uses
//!   wasmtime); a plugin's answers parsed into typed decisions;
//! - [`crd`]: the `ReconcilerPlugin` resource;
//! - [`binding`]: a `ReconcilerPlugin` turned into a running plugin, and
//!   hot swap of its versions;
//! - [`postgres`]: the `PostgresServer` directory and the SQL executor;
//! - [`reconcile`]: one controller per binding, each reconcile a pipeline
//!   (gather, decide, check, execute, report);
//! - [`admission`]: the HTTPS server answering admission reviews with the
//!   plugins' `validate` and `mutate`;
//! - [`events`], [`metrics`], [`http`], [`leader`]: what the operator
//!   reports and how replicas share the work;
//! - [`operator`]: `wasm-operator run`; [`publish`]: `plugin push`.

pub mod admission;
pub mod binding;
pub mod crd;
pub mod events;
pub mod grants;
pub mod http;
pub mod leader;
pub mod metrics;
pub mod operator;
pub mod postgres;
pub mod publish;
pub mod rbac;
pub mod reconcile;
pub mod runtime;
pub mod vocabulary;
