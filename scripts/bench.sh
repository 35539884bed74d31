#!/usr/bin/env bash
# The bench command: release builds, numbers printed side by side.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/build-plugins.sh
cargo bench -p wasm-operator --bench runtime
