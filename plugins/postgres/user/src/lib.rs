//! The `postgres-user` plugin component: exports [`postgres_plugins::DatabaseUserPlugin`]
//! as its reconciler and its admission decisions (world `admission-plugin`).
//!
//! Build with `scripts/build-plugins.sh` (→ `target/plugins/postgres-user-plugin.wasm`);
//! the logic and its tests are in `plugins/postgres/core`.

wasm_operator_sdk::export_admission_plugin!(postgres_plugins::DatabaseUserPlugin);
