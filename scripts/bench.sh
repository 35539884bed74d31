#!/usr/bin/env bash
# The bench command: release builds, numbers printed side by side.
#   scripts/bench.sh              # everything
#   scripts/bench.sh runtime      # compile, cached load, dispatch vs native
#   scripts/bench.sh noop         # no-op reconciles/s and RSS at 1,000 and 10,000 objects
#   scripts/bench.sh postgres     # 1,000 Databases through the operator vs a psql script
#   scripts/bench.sh memory       # the host's peak RSS under hostile guests, per concurrent call
#   scripts/bench.sh admission    # AdmissionReviews/s over HTTPS: the Postgres plugins beside a fixed answer
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/build-plugins.sh
what="${1:-all}"
if [[ "$what" == all || "$what" == runtime ]]; then
  cargo bench -p wasm-operator --bench runtime
fi
if [[ "$what" == all || "$what" == memory ]]; then
  ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || scripts/install-postgres.sh
  cargo bench -p wasm-operator --bench memory
fi
if [[ "$what" == all || "$what" == noop || "$what" == postgres ]]; then
  ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || scripts/install-postgres.sh
  filter=()
  [[ "$what" == all ]] || filter=("$what")
  E2E_LOG="${E2E_LOG:-warn}" cargo bench -p wasm-operator --bench operator -- "${filter[@]}"
fi
if [[ "$what" == all || "$what" == admission ]]; then
  ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || scripts/install-postgres.sh
  E2E_LOG="${E2E_LOG:-warn}" cargo bench -p wasm-operator --bench admission
fi
