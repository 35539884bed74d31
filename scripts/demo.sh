#!/usr/bin/env bash
# The run command: a one-command local demo on a machine without a cluster.
# Starts a throwaway PostgreSQL server, the project's *test* Kubernetes API
# server (tests/apiserver: a stand-in, not Kubernetes) and the real operator
# with the Postgres plugins; applies a PostgresServer and the seed's Database
# (with a serverRef); waits for Ready; prints the connection URI and a psql
# line; runs until Ctrl-C. For a real cluster see README.md.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
  echo "==> installing PostgreSQL (the demo starts a throwaway server)"
  scripts/install-postgres.sh
fi
scripts/build-plugins.sh
cargo build --release -p wasm-operator -p wasm-operator-demo
exec target/release/wasm-operator-demo
