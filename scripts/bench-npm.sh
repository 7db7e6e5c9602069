#!/usr/bin/env bash
# Measure an npm rollback of a package family: bagboy (plan + dist-tag PUTs + history) vs what
# a user would otherwise run, one `npm dist-tag add pkg@V latest` per package, in the same run
# against one local Verdaccio. Prints a markdown table (docs/benchmarks.md, "npm").
# Usage: scripts/bench-npm.sh [PACKAGES=10] [RUNS=3]
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-10}; runs=${2:-3}
vdir=${BAGBOY_VERDACCIO_DIR:-/opt/bagboy-verdaccio}
[ -x "$vdir/node_modules/.bin/verdaccio" ] || { echo "run scripts/test.sh first (it installs verdaccio)" >&2; exit 2; }
cargo build --quiet --release --bin bagboy
bagboy="$PWD/target/release/bagboy"
work=$(mktemp -d); trap 'kill $vpid 2>/dev/null || true; rm -rf "$work"' EXIT
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat > "$work/config.yaml" <<YAML
storage: $work/storage
auth: { htpasswd: { file: $work/htpasswd, max_users: 10 } }
uplinks: {}
packages: { '**': { access: \$all, publish: \$authenticated } }
web: { enable: false }
log: { type: stdout, format: pretty, level: error }
listen: 127.0.0.1:$port
YAML
"$vdir/node_modules/.bin/verdaccio" --config "$work/config.yaml" >/dev/null 2>&1 & vpid=$!
reg="http://127.0.0.1:$port/"
for _ in $(seq 100); do curl -sf "${reg}-/ping" >/dev/null && break; sleep 0.1; done
token=$(curl -sf -X PUT -H 'Content-Type: application/json' -d '{"name":"bench","password":"bench-password"}' "${reg}-/user/org.couchdb.user:bench" | python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])')
echo "//127.0.0.1:$port/:_authToken=$token" > "$work/npmrc"
export NPM_CONFIG_USERCONFIG="$work/npmrc" npm_config_cache="$work/cache"
pkgs=(); for i in $(seq "$n"); do pkgs+=("bench-pkg-$i"); done
cd "$work"
{ echo "name: bench"; echo "registries:"; echo "  - format: npm"; echo "    registry: \"$reg\""; printf '    packages: [%s]\n' "$(IFS=,; echo "${pkgs[*]}")"; } > bagboy.yaml
for v in 1.0.0 1.1.0; do
  pids=()
  for p in "${pkgs[@]}"; do
    mkdir -p "pub/$p-$v"; (cd "pub/$p-$v" && printf '{"name":"%s","version":"%s"}' "$p" "$v" > package.json && npm publish --registry "$reg" --loglevel error >/dev/null) & pids+=($!)
  done; wait "${pids[@]}"
  "$bagboy" -q record --version "v$v" >/dev/null
done
elapsed() { local s e; s=$(date +%s.%N); "$@" >/dev/null 2>&1; e=$(date +%s.%N); echo "$e - $s" | bc; }
npm_loop() { for p in "${pkgs[@]}"; do npm dist-tag add "$p@$1" latest --registry "$reg" --loglevel error; done; }
b=(); l=()
for _ in $(seq "$runs"); do
  b+=("$(elapsed "$bagboy" -q rollback --version v1.0.0 --yes)")
  b+=("$(elapsed "$bagboy" -q rollback --version v1.1.0 --yes --force)")
  l+=("$(elapsed npm_loop 1.0.0)"); l+=("$(elapsed npm_loop 1.1.0)")
done
[ "$(curl -sf "${reg}-/package/bench-pkg-1/dist-tags" | python3 -c 'import json,sys; print(json.load(sys.stdin)["latest"])')" = 1.1.0 ] || { echo "latest did not move" >&2; exit 1; }
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END{print (NR%2)?a[(NR+1)/2]:(a[NR/2]+a[NR/2+1])/2}'; }
bt=$(median "${b[@]}"); lt=$(median "${l[@]}")
echo "| what ($n packages, \`latest\` moved, median of ${#b[@]} runs) | wall time |"
echo "|---|---|"
echo "| bagboy rollback (plan + $n dist-tag PUTs + history) | ${bt} s |"
echo "| \`npm dist-tag add\` per package ($n processes) | ${lt} s |"
echo "| ratio npm / bagboy | $(echo "scale=1; $lt / $bt" | bc)x |"
