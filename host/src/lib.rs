//! wasm-operator: a Kubernetes operator host that delegates reconcile decisions
//! to sandboxed WebAssembly components.
pub mod controller;
pub mod crd;
pub mod http;
pub mod leader;
pub mod metrics;
pub mod publish;
pub mod registry;
pub mod reload;
pub mod runtime;
pub mod servers;
pub mod sql;
