//! The `postgres-database` plugin component: exports [`postgres_plugins::DatabasePlugin`].
//!
//! Build with `scripts/build-plugins.sh` (→ `target/plugins/postgres-database-plugin.wasm`);
//! the logic and its tests are in `plugins/postgres/core`.

wasm_operator_sdk::export_plugin!(postgres_plugins::DatabasePlugin);
