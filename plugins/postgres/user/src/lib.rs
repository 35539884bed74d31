//! The `postgres-user` plugin component: exports [`postgres_plugins::DatabaseUserPlugin`].
//!
//! Build with `scripts/build-plugins.sh` (→ `target/plugins/postgres-user-plugin.wasm`);
//! the logic and its tests are in `plugins/postgres/core`.

wasm_operator_sdk::export_plugin!(postgres_plugins::DatabaseUserPlugin);
