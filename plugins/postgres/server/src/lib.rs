//! The `postgres-server` plugin component: exports [`postgres_plugins::PostgresServerPlugin`].
//!
//! Build with `scripts/build-plugins.sh` (→ `target/plugins/postgres-server-plugin.wasm`);
//! the logic and its tests are in `plugins/postgres/core`.

wasm_operator_sdk::export_plugin!(postgres_plugins::PostgresServerPlugin);
