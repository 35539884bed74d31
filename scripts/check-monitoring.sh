#!/usr/bin/env bash
# Checks deploy/components/monitoring with promtool:
#   1. `promtool check rules` on the PrometheusRule's groups, as rendered by
#      kustomize (deploy/overlays/postgres-monitoring);
#   2. `promtool test rules` on deploy/components/monitoring/tests/*.yaml:
#      each alert fires on the series that should fire it, and not otherwise;
#   3. every query of the Grafana dashboard parses (checked as recording
#      rules, with the dashboard's variables filled in);
#   4. `promtool check metrics` on a real scrape of the operator: the e2e
#      test controller_runtime_series_move_as_reconciles_happen_and_the_scrape_passes_promtool
#      (host/tests/operator.rs), with promtool required.
#
#   scripts/check-monitoring.sh            # all four
#   scripts/check-monitoring.sh --no-scrape # 1-3 only (no cargo build)
#
# Installs promtool (Debian's prometheus package, ~96 MB, ~12 s) when it is
# missing, without recommended packages and without starting the service.
set -euo pipefail
cd "$(dirname "$0")/.."

scrape=1
[[ "${1:-}" == "--no-scrape" ]] && scrape=0

step() { printf '\n==> %s\n' "$*"; }

if ! command -v promtool >/dev/null; then
  step "installing promtool (apt-get install --no-install-recommends prometheus)"
  # The package would start a Prometheus server; policy-rc.d says no. Keep
  # a policy that is already there, remove only the one made here.
  made_policy=0
  if [[ ! -e /usr/sbin/policy-rc.d ]]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
    chmod 755 /usr/sbin/policy-rc.d
    made_policy=1
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -q --no-install-recommends prometheus >/dev/null \
    || { apt-get update -q >/dev/null && apt-get install -y -q --no-install-recommends prometheus >/dev/null; }
  [[ $made_policy == 1 ]] && rm -f /usr/sbin/policy-rc.d
fi
promtool --version 2>&1 | head -n1

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

step "render deploy/overlays/postgres-monitoring"
kubectl kustomize deploy/overlays/postgres-monitoring >"$work/rendered.yaml"

step "promtool check rules (the PrometheusRule's groups)"
python3 - "$work" <<'PY'
import json, pathlib, re, sys
import yaml

work = pathlib.Path(sys.argv[1])
docs = [d for d in yaml.safe_load_all((work / "rendered.yaml").read_text()) if d]
rules = [d for d in docs if d["kind"] == "PrometheusRule"]
if len(rules) != 1:
    sys.exit(f"expected one PrometheusRule, found {len(rules)}")
(work / "rules.yaml").write_text(yaml.safe_dump({"groups": rules[0]["spec"]["groups"]}, sort_keys=False))

# The dashboard's queries as recording rules, with its variables filled in
# the way Grafana fills them.
dashboards = [d for d in docs if d["kind"] == "ConfigMap" and d["metadata"].get("labels", {}).get("grafana_dashboard") == "1"]
if not dashboards:
    sys.exit("no ConfigMap labelled grafana_dashboard: \"1\"")
records = []
for config_map in dashboards:
    for file, text in config_map["data"].items():
        dashboard = json.loads(text)
        panels = [p for p in dashboard["panels"] for p in [p, *p.get("panels", [])]]
        for panel in panels:
            for target in panel.get("targets", []):
                expr = target["expr"]
                expr = expr.replace("$__rate_interval", "1m").replace("$__interval", "1m")
                expr = re.sub(r"\$\{?\w+\}?", ".*", expr)
                records.append({"record": f"dashboard:panel_{panel['id']}_{target['refId']}", "expr": expr})
        print(f"{file}: {len(records)} queries")
(work / "dashboard-queries.yaml").write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": records}]}, sort_keys=False))
PY
promtool check rules "$work/rules.yaml"

step "promtool test rules (deploy/components/monitoring/tests)"
for test in deploy/components/monitoring/tests/*.yaml; do
  cp "$test" "$work/"
  (cd "$work" && promtool test rules "$(basename "$test")")
done

step "the dashboard's queries parse"
promtool check rules "$work/dashboard-queries.yaml"

if [[ $scrape == 1 ]]; then
  step "promtool check metrics on a real scrape (e2e test)"
  [[ -f target/plugins/hostile-selective.wasm ]] || scripts/build-plugins.sh
  status=0
  WASM_OPERATOR_REQUIRE_PROMTOOL=1 cargo test --release -q -p wasm-operator --test operator \
    controller_runtime_series_move_as_reconciles_happen_and_the_scrape_passes_promtool -- --nocapture \
    >"$work/scrape-test.log" 2>&1 || status=$?
  if [[ $status != 0 ]]; then
    cat "$work/scrape-test.log" >&2
    exit "$status"
  fi
  grep -E "promtool|test result" "$work/scrape-test.log"
fi

step "monitoring checks passed"
