//! The `postgres-inject` plugin component: exports
//! [`postgres_plugins::CredentialsInjectorPlugin`], an admission plugin for
//! core/v1 Pods (world `admission-plugin`; its reconcile changes nothing).
//!
//! Build with `scripts/build-plugins.sh` (→ `target/plugins/postgres-inject-plugin.wasm`);
//! the logic and its tests are in `plugins/postgres/core`.

wasm_operator_sdk::export_admission_plugin!(postgres_plugins::CredentialsInjectorPlugin);
