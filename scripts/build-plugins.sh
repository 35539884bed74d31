#!/usr/bin/env bash
# Builds every plugin component (the example, its version 2 for the hot-swap
# tests, the contract-version test guests — one built against the frozen WIT
# 0.1.0, one admission-only — and the hostile test guests) for wasm32-wasip2
# with the `plugin` profile and copies them to
# <repo>/target/plugins/<package>.wasm. Also builds
# the SDK's admission example (a component exporting `admission` too) as
# target/plugins/example-admission.wasm.
#
#   scripts/build-plugins.sh            # from any directory
#   CARGO_TARGET_DIR=/tmp/t scripts/build-plugins.sh
#
# Cargo's own output honours CARGO_TARGET_DIR; the components always land in
# <repo>/target/plugins/.
set -euo pipefail

readonly TARGET=wasm32-wasip2
readonly PROFILE=plugin

repo="$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd)"

# A relative CARGO_TARGET_DIR is relative to where the caller stands: resolve
# it before changing directory.
cargo_target="${CARGO_TARGET_DIR:-$repo/target}"
case "$cargo_target" in
    /*) ;;
    *) cargo_target="$PWD/$cargo_target" ;;
esac
export CARGO_TARGET_DIR="$cargo_target"

cd -- "$repo"

if ! rustup target list --installed | grep -qx "$TARGET"; then
    rustup target add "$TARGET"
fi

# The package name of a crate directory: the first `name = "…"` of its manifest.
package_name() {
    sed -n 's/^name[[:space:]]*=[[:space:]]*"\([^"]*\)".*/\1/p' "$1/Cargo.toml" | head -n 1
}

packages=("$(package_name plugins/example)")
for dir in host/tests/plugins/swap-v2 host/tests/plugins/compat-v0-1 host/tests/plugins/admission-only; do
    packages+=("$(package_name "$dir")")
done
for dir in plugins/postgres/server plugins/postgres/database plugins/postgres/user plugins/postgres/inject; do
    packages+=("$(package_name "$dir")")
done
for dir in host/tests/plugins/hostile/*/; do
    packages+=("$(package_name "${dir%/}")")
done

cargo_args=()
for package in "${packages[@]}"; do
    cargo_args+=(-p "$package")
done
cargo build --target "$TARGET" --profile "$PROFILE" "${cargo_args[@]}"
cargo build --target "$TARGET" --profile "$PROFILE" -p wasm-operator-sdk --example admission

out="$repo/target/plugins"
mkdir -p -- "$out"

# Checks that $1 is a component and copies it to $out/$2.wasm.
install_component() {
    local built="$1" name="$2"
    if [[ ! -f "$built" ]]; then
        echo "error: $name did not produce $built" >&2
        exit 1
    fi
    # Bytes 4..7 of a Wasm binary are its version and layer: 01 00 00 00 for a
    # core module, 0d 00 01 00 for a component.
    header="$(od -An -tx1 -j4 -N4 -- "$built" | tr -d ' \n')"
    if [[ "$header" != "0d000100" ]]; then
        echo "error: $built is not a component (header $header); is the crate a cdylib?" >&2
        exit 1
    fi
    cp -- "$built" "$out/$name.wasm.tmp"
    mv -- "$out/$name.wasm.tmp" "$out/$name.wasm"
    printf '%8d bytes  %s\n' "$(stat -c %s -- "$out/$name.wasm")" "$out/$name.wasm"
}

for package in "${packages[@]}"; do
    install_component "$cargo_target/$TARGET/$PROFILE/${package//-/_}.wasm" "$package"
done
install_component "$cargo_target/$TARGET/$PROFILE/examples/admission.wasm" example-admission
