#!/usr/bin/env bash
# Builds the operator's container image without a container daemon: an OCI
# image layout at target/image/oci (tag wasm-operator:dev), with the same
# content as the Dockerfile's final stage: the release binary and the glibc
# libraries it links, a non-root user 65532, and the project's plugins under
# /plugins (to ship as ConfigMaps with `wasm-operator plugin push`).
#
# Push it with skopeo, e.g.
#   skopeo copy oci:target/image/oci:dev docker://registry.example/wasm-operator:dev
#
# Needs umoci (Debian: apt-get install umoci), a release build
# (cargo build --release -p wasm-operator) and scripts/build-plugins.sh.
set -euo pipefail
cd "$(dirname "$0")/.."

binary=target/release/wasm-operator
[[ -x $binary ]] || { echo "build-image: $binary is missing; run cargo build --release -p wasm-operator" >&2; exit 1; }
ls target/plugins/*.wasm >/dev/null 2>&1 || { echo "build-image: no plugins in target/plugins; run scripts/build-plugins.sh" >&2; exit 1; }
command -v umoci >/dev/null || { echo "build-image: umoci is missing (apt-get install umoci)" >&2; exit 1; }

out=target/image
rm -rf "$out"
mkdir -p "$out"
layout="$out/oci"
umoci init --layout "$layout"
umoci new --image "$layout:dev"
umoci unpack --image "$layout:dev" "$out/bundle" >/dev/null
rootfs="$out/bundle/rootfs"

# The binary and exactly the shared libraries it links (ldd), at the same paths.
install -D -m 0755 "$binary" "$rootfs/wasm-operator"
ldd "$binary" | awk '$3 ~ /^\// {print $3} $1 ~ /^\// {print $1}' | while read -r lib; do
  install -D -m 0755 "$(readlink -f "$lib")" "$rootfs$lib"
done
# The non-root user of deploy/base (runAsUser 65532), named for logs and tools.
mkdir -p "$rootfs/etc" "$rootfs/tmp"
chmod 1777 "$rootfs/tmp"
echo "root:x:0:0:root:/root:/sbin/nologin" > "$rootfs/etc/passwd"
echo "nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin" >> "$rootfs/etc/passwd"
printf 'root:x:0:\nnonroot:x:65532:\n' > "$rootfs/etc/group"
install -d -m 0755 "$rootfs/plugins"
install -m 0644 target/plugins/example-plugin.wasm target/plugins/postgres-*-plugin.wasm "$rootfs/plugins/"

# Proof that it starts: the binary runs inside the image's root alone (as
# root in a chroot; otherwise through the image's own loader and libraries).
if [[ $EUID -eq 0 ]]; then
  version=$(chroot "$rootfs" /wasm-operator --version)
else
  version=$("$rootfs/lib64/ld-linux-x86-64.so.2" --library-path "$rootfs/lib/x86_64-linux-gnu" "$rootfs/wasm-operator" --version)
fi
echo "build-image: $version runs inside the image root"

umoci repack --image "$layout:dev" "$out/bundle" >/dev/null
umoci config --image "$layout:dev" \
  --config.entrypoint /wasm-operator --config.cmd run \
  --config.user 65532:65532 --config.workingdir / \
  --config.label "org.opencontainers.image.version=${version##* }"
umoci gc --layout "$layout"
rm -rf "$out/bundle"

layers=$(du -cb "$layout"/blobs/sha256/* | tail -1 | cut -f1)
echo "build-image: $layout:dev is $((layers / 1024 / 1024)) MiB compressed (the binary alone: $(( $(stat -c %s "$binary") / 1024 / 1024 )) MiB)"
