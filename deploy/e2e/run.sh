#!/usr/bin/env bash
# End to end on a real cluster (kind or any other): builds and ships the
# image, installs an overlay, pushes the Postgres plugins, runs a throwaway
# PostgreSQL, applies the seed's Database on it and checks that it becomes
# Ready with a Secret that logs in; then removes everything it created.
#
#   deploy/e2e/run.sh                        # kind: KIND_CLUSTER=kind, no registry
#   REGISTRY=registry.example/me deploy/e2e/run.sh
#
# Settings (environment): KIND_CLUSTER (load the image into this kind
# cluster; the default when REGISTRY is unset), REGISTRY (push the image
# there instead), TAG (default e2e), OVERLAY (default
# deploy/overlays/postgres), KEEP=1 (leave everything installed), TIMEOUT
# (for each wait, default 180s). Needs kubectl 1.27+ pointed at the cluster,
# cargo, and docker or umoci+skopeo. See deploy/e2e/README.md.
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
TAG=${TAG:-e2e}
OVERLAY=${OVERLAY:-deploy/overlays/postgres}
TIMEOUT=${TIMEOUT:-180s}
REGISTRY=${REGISTRY:-}
KIND_CLUSTER=${KIND_CLUSTER:-}
if [[ -z $REGISTRY && -z $KIND_CLUSTER ]]; then KIND_CLUSTER=kind; fi
image=${REGISTRY:-localhost}/wasm-operator:$TAG
work=$(mktemp -d)
step() { printf '\n== %s\n' "$*"; }

cleanup() {
  local status=$?
  if [[ ${KEEP:-} == 1 ]]; then
    echo "KEEP=1: left installed; what was applied is $work/install.yaml"
    exit "$status"
  fi
  step "cleaning up"
  # The Database first, while the operator runs: its finalizer drops what
  # reclaimPolicy says, and the namespace can then go.
  kubectl delete --ignore-not-found --wait --timeout="$TIMEOUT" -f plugins/postgres/examples/database.yaml || true
  kubectl delete --ignore-not-found --wait --timeout="$TIMEOUT" -f deploy/e2e/postgres.yaml -f plugins/postgres/examples/server.yaml || true
  if [[ -f $work/install.yaml ]]; then
    kubectl delete --ignore-not-found --wait --timeout="$TIMEOUT" -f "$work/install.yaml" || true
  fi
  rm -rf "$work"
  exit "$status"
}
trap cleanup EXIT

step "building the operator and the plugins"
cargo build --release -p wasm-operator
scripts/build-plugins.sh
operator=target/release/wasm-operator

step "building and shipping $image"
if command -v docker >/dev/null; then
  docker build -t "$image" .
  archive() { docker save "$image" -o "$1"; }
  push() { docker push "$image"; }
else
  scripts/build-image.sh
  archive() { skopeo copy oci:target/image/oci:dev "docker-archive:$1:$image"; }
  push() { skopeo copy oci:target/image/oci:dev "docker://$image"; }
fi
if [[ -n $REGISTRY ]]; then
  push
else
  archive "$work/image.tar"
  kind load image-archive "$work/image.tar" --name "$KIND_CLUSTER"
  rm "$work/image.tar"
fi

step "installing $OVERLAY"
# The overlay as rendered, naming the image just shipped.
kubectl kustomize "$OVERLAY" | sed "s|image: wasm-operator:dev$|image: $image|" >"$work/install.yaml"
grep -q "image: $image" "$work/install.yaml" || { echo "no image wasm-operator:dev in $OVERLAY" >&2; exit 1; }
# CRDs first, so that the bindings in the overlay have their kind.
kubectl apply --server-side -f crds/
kubectl wait --for=condition=Established --timeout="$TIMEOUT" -f crds/
kubectl apply --server-side -f "$work/install.yaml"
kubectl -n wasm-operator rollout status deployment/wasm-operator --timeout="$TIMEOUT"

step "pushing the Postgres plugins"
for plugin in server database user inject; do
  "$operator" plugin push --name "postgres-$plugin-plugin" "target/plugins/postgres-$plugin-plugin.wasm"
done

step "running PostgreSQL and registering it"
kubectl apply -f plugins/postgres/examples/server.yaml
kubectl apply -f deploy/e2e/postgres.yaml
kubectl -n db wait --for=condition=Ready --timeout="$TIMEOUT" pod/postgres
kubectl -n db wait --for=condition=Ready --timeout="$TIMEOUT" postgresserver/main

step "the seed's Database"
kubectl apply -f plugins/postgres/examples/database.yaml
kubectl -n infra wait --for=condition=Ready --timeout="$TIMEOUT" database/foo-db
secret=$(kubectl -n infra get database foo-db -o jsonpath='{.status.binding.name}')
field() { kubectl -n infra get secret "$secret" -o "jsonpath={.data.$1}" | base64 -d; }
[[ $(field username) == foo && $(field dbname) == foo-db ]] || {
  echo "Secret infra/$secret does not name role foo and database foo-db" >&2
  exit 1
}
# The Secret's URI logs in, from inside the cluster (the server's own Pod).
who=$(kubectl -n db exec postgres -- psql "$(field uri)" -tAc 'select current_user || $$/$$ || current_database()')
[[ $who == foo/foo-db ]] || { echo "logged in as '$who', not foo/foo-db" >&2; exit 1; }
kubectl -n infra get databases,secrets
step "passed: Database infra/foo-db is Ready and Secret infra/$secret logs in as foo"
