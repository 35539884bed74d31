//! The `postgres-database` plugin component: exports [`postgres_plugins::DatabasePlugin`]
//! as its reconciler and its admission decisions (world `admission-plugin`).
//!
//! Build with `scripts/build-plugins.sh` (→ `target/plugins/postgres-database-plugin.wasm`);
//! the logic and its tests are in `plugins/postgres/core`.

wasm_operator_sdk::export_admission_plugin!(postgres_plugins::DatabasePlugin);
