#!/usr/bin/env bash
# Measure a cargo rollback of a crate family: bagboy (plan from the sparse index, a rights check
# and a yank per crate, history) vs what a user would otherwise run, one `cargo yank` per crate,
# in the same run against one local kellnr. Prints a markdown table (docs/benchmarks.md,
# "cargo"). Usage: scripts/bench-cargo.sh [CRATES=10] [RUNS=3]
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-10}; runs=${2:-3}
kdir=${BAGBOY_CARGO_REGISTRY_DIR:-/opt/bagboy-cargo-registry}
[ -x "$kdir/bin/kellnr" ] || { echo "run scripts/test.sh first (it installs kellnr)" >&2; exit 2; }
cargo build --quiet --release --bin bagboy
bagboy="$PWD/target/release/bagboy"
work=$(mktemp -d); trap 'kill $kpid 2>/dev/null || true; rm -rf "$work"' EXIT
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
token="benchadmintoken$RANDOM$RANDOM"
mkdir -p "$work/data"
env -i PATH="$PATH" KELLNR_REGISTRY__DATA_DIR="$work/data" KELLNR_LOCAL__IP=127.0.0.1 \
  KELLNR_LOCAL__PORT="$port" KELLNR_ORIGIN__PORT="$port" KELLNR_SETUP__ADMIN_TOKEN="$token" \
  KELLNR_DOCS__ENABLED=false KELLNR_PROXY__ENABLED=false KELLNR_LOG__LEVEL=error \
  "$kdir/bin/kellnr" start >/dev/null 2>&1 & kpid=$!
for _ in $(seq 300); do curl -sf "http://127.0.0.1:$port/api/v1/health" >/dev/null && break; sleep 0.1; done
index="sparse+http://127.0.0.1:$port/api/v1/crates/"
export CARGO_HOME="$work/cargo-home" CARGO_TARGET_DIR="$work/target"
export RUSTUP_HOME="${RUSTUP_HOME:-$HOME/.rustup}"
mkdir -p "$CARGO_HOME"
printf '[registries.bench]\nindex = "%s"\n' "$index" > "$CARGO_HOME/config.toml"
printf '[registries.bench]\ntoken = "%s"\n' "$token" > "$CARGO_HOME/credentials.toml"
crates=(); for i in $(seq "$n"); do crates+=("bench-crate-$i"); done
cd "$work"
{ echo "name: bench"; echo "registries:"; echo "  - format: cargo"; echo "    registry: \"$index\"";
  printf '    crates: [%s]\n' "$(IFS=,; echo "${crates[*]}")"; } > bagboy.yaml
for v in 1.0.0 1.1.0; do
  for c in "${crates[@]}"; do
    mkdir -p "pub/$c-$v/src"; : > "pub/$c-$v/src/lib.rs"
    printf '[package]\nname = "%s"\nversion = "%s"\nedition = "2021"\ndescription = "bench"\nlicense = "MIT"\n' "$c" "$v" > "pub/$c-$v/Cargo.toml"
    (cd "pub/$c-$v" && cargo publish --quiet --registry bench --no-verify --allow-dirty 2>/dev/null)
  done
  "$bagboy" -q record --version "v$v" >/dev/null
done
elapsed() { local s e; s=$(date +%s.%N); "$@" >/dev/null 2>&1; e=$(date +%s.%N); echo "$e - $s" | bc; }
yank_loop() { for c in "${crates[@]}"; do cargo yank --quiet --registry bench "$@" "$c@1.1.0"; done; }
b=(); l=()
for _ in $(seq "$runs"); do
  b+=("$(elapsed "$bagboy" -q rollback --version v1.0.0 --yes)")
  b+=("$(elapsed "$bagboy" -q rollback --version v1.1.0 --yes --force)")
  l+=("$(elapsed yank_loop)"); l+=("$(elapsed yank_loop --undo)")
done
# The last run left 1.1.0 unyanked: check both tools did their work.
"$bagboy" -q rollback --version v1.0.0 --yes >/dev/null
curl -sf "http://127.0.0.1:$port/api/v1/crates/be/nc/bench-crate-1" | grep '"vers":"1.1.0"' | grep -q '"yanked":true' \
  || { echo "1.1.0 was not yanked" >&2; exit 1; }
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END{print (NR%2)?a[(NR+1)/2]:(a[NR/2]+a[NR/2+1])/2}'; }
bt=$(median "${b[@]}"); lt=$(median "${l[@]}")
echo "| what ($n crates, one version yanked or unyanked each, median of ${#b[@]} runs) | wall time |"
echo "|---|---|"
echo "| bagboy rollback (plan from the index + $n rights checks + $n yanks + history) | ${bt} s |"
echo "| \`cargo yank\` per crate ($n processes) | ${lt} s |"
echo "| ratio cargo / bagboy | $(echo "scale=1; $lt / $bt" | bc)x |"
