#!/usr/bin/env bash
# Measure loading, validating and rewriting large histories (the cost every command pays).
# Usage: scripts/bench-history.sh [ENTRIES...]   (default: 1000 10000 50000)
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x /usr/bin/time ] || { apt-get update -qq && apt-get install -y -qq time >/dev/null; }
cargo build --quiet --release --bin bagboy
bagboy="$PWD/target/release/bagboy"
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
echo "| entries | file size | \`versions list --format json\` | peak RSS | \`record\`-style rewrite (prune --keep all-1) | peak RSS |"
echo "|---|---|---|---|---|---|"
for n in "${@:-1000 10000 50000}"; do
  for count in $n; do
    python3 - "$count" > "$work/h.yml" <<'PY'
import sys
n = int(sys.argv[1])
print("deployments:")
for i in range(n, 0, -1):
    status = "deployed" if i == n else "superseded"
    print(f'  - version: "v1.{i}.0"\n    timestamp: "2026-01-01T00:00:00Z"\n    commit: "{i:040x}"\n    status: {status}')
    print(f'    packages:\n      - format: docker\n        registry: "registry.example.com/acme/app"\n        digest: "sha256:{i:064x}"\n        tags: ["v1.{i}.0", "latest", "1.{i}"]')
    print(f'      - format: brew\n        registry: "acme/homebrew-tap"\n        formula: "app"\n        tap_commit: "{i:040x}"')
PY
    # Same timestamps on purpose: ordering falls back to file order (stable sort).
    size=$(du -h "$work/h.yml" | cut -f1)
    /usr/bin/time -f '%e %M' -o "$work/t1" "$bagboy" --history "$work/h.yml" versions list --format json >/dev/null
    cp "$work/h.yml" "$work/h2.yml"
    /usr/bin/time -f '%e %M' -o "$work/t2" "$bagboy" --history "$work/h2.yml" versions prune --keep $((count - 1)) >/dev/null
    read -r t1 m1 < "$work/t1"; read -r t2 m2 < "$work/t2"
    echo "| $count | $size | ${t1} s | $((m1/1024)) MiB | ${t2} s | $((m2/1024)) MiB |"
  done
done
