//! wasm-operator: a Kubernetes operator host that delegates reconcile decisions
//! to sandboxed WebAssembly components.
pub mod runtime;
pub mod sql;
