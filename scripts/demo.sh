#!/usr/bin/env bash
# The run command: builds the plugins and the host, then loads the example
# plugin with the operator's checks and reconciles a sample Greeting with it.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/build-plugins.sh
cargo build --release -p wasm-operator
bin=target/release/wasm-operator
cache=target/plugin-cache

echo
echo "==> wasm-operator plugin inspect target/plugins/example-plugin.wasm"
"$bin" --plugin-cache-dir "$cache" plugin inspect target/plugins/example-plugin.wasm
echo
echo "==> wasm-operator plugin reconcile target/plugins/example-plugin.wasm --object plugins/example/greeting.json"
"$bin" --plugin-cache-dir "$cache" plugin reconcile target/plugins/example-plugin.wasm \
  --object plugins/example/greeting.json --settings '{"defaultAudience": "wasm-operator"}'
