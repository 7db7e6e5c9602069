#!/usr/bin/env bash
# Sweep bagboy's formula edit over every formula and cask of a tap, in dry-run: parsed, placed
# by Homebrew's component order, byte-identical apart from version_scheme; with `ruby -c` on
# the edited files when ruby is installed. Nothing is pushed anywhere.
# Usage: scripts/sweep-tap.sh <tap checkout dir | bare git dir> [REV=HEAD]
set -euo pipefail
cd "$(dirname "$0")/.."
src=${1:?usage: scripts/sweep-tap.sh <tap dir or git dir> [rev]}; rev=${2:-HEAD}
cargo build --quiet --release --example sweep
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
if git --git-dir="$src" rev-parse --verify -q "$rev" >/dev/null 2>&1; then
  mkdir -p "$work/tap"; git --git-dir="$src" archive "$rev" | tar -x -C "$work/tap"; tap="$work/tap"
else
  tap="$src"
fi
./target/release/examples/sweep "$tap" --write-out "$work/out"
if command -v ruby >/dev/null; then
  total=0; bad=0
  while IFS= read -r -d '' f; do
    total=$((total+1)); ruby -c "$f" >/dev/null 2>&1 || { bad=$((bad+1)); echo "ruby -c failed: ${f#$work/out/}" >&2; }
  done < <(find "$work/out" -name '*.rb' -print0)
  echo "| edited formulas accepted by \`ruby -c\` | $((total-bad)) of $total | |"
fi
