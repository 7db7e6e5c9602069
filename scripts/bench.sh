#!/usr/bin/env bash
# Measure a Docker tag rollback: bagboy vs `skopeo copy` per tag (what a user would otherwise
# run), against a real local docker-registry, in the same run. Prints a markdown table.
# Usage: scripts/bench.sh [TAGS=20] [RUNS=5]
set -euo pipefail
cd "$(dirname "$0")/.."
tags=${1:-20}; runs=${2:-5}
need=()
[ -x /usr/bin/docker-registry ] || need+=(docker-registry)
command -v skopeo >/dev/null || need+=(skopeo)
[ -x /usr/bin/time ] || need+=(time)
if [ ${#need[@]} -gt 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null; fi

cargo build --quiet --release --bin bagboy --example publish
bagboy="$PWD/target/release/bagboy"; publish="$PWD/target/release/examples/publish"
work=$(mktemp -d); trap 'kill $regpid 2>/dev/null || true; rm -rf "$work"' EXIT
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat > "$work/registry.yml" <<YAML
version: 0.1
log: {level: error, accesslog: {disabled: true}}
storage: {filesystem: {rootdirectory: $work/storage}}
http: {addr: 127.0.0.1:$port}
YAML
/usr/bin/docker-registry serve "$work/registry.yml" >"$work/registry.log" 2>&1 & regpid=$!
for _ in $(seq 50); do curl -sf "http://127.0.0.1:$port/v2/" >/dev/null && break; sleep 0.1; done
repo="127.0.0.1:$port/bench/app"
sk=(skopeo --insecure-policy copy -q --all --src-tls-verify=false --dest-tls-verify=false)

cd "$work"
cat > bagboy.yaml <<YAML
name: app
registries:
  - {format: docker, registry: "$repo", insecure: true}
YAML
export BAGBOY_CACHE_DIR="$work/cache" DOCKER_CONFIG="$work/docker"
alias_tags=(latest); for i in $(seq 1 "$tags"); do alias_tags+=("t$i"); done
for v in v1.1.0 v1.2.0; do
  "$publish" layout - "$v" >/dev/null
  "${sk[@]}" "oci:layout:$v" "docker://$repo:$v"
  for t in "${alias_tags[@]}"; do "${sk[@]}" "docker://$repo:$v" "docker://$repo:$t"; done
  "$bagboy" -q record --version "$v" >/dev/null
done
digest() { curl -sfI -H 'Accept: application/vnd.oci.image.manifest.v1+json' "http://127.0.0.1:$port/v2/bench/app/manifests/$1" | tr -d '\r' | awk -F': ' 'tolower($1)=="docker-content-digest"{print $2}'; }
d11=$(digest v1.1.0); d12=$(digest v1.2.0)

measure() { # label, command...: prints "seconds maxrss_kb"
  /usr/bin/time -f '%e %M' -o "$work/time.out" "$@" >/dev/null 2>"$work/err.out" || { cat "$work/err.out" >&2; exit 1; }
  cat "$work/time.out"
}
skopeo_all() { # digest: move every alias tag there, one skopeo copy per tag
  for t in "${alias_tags[@]}"; do "${sk[@]}" "docker://$repo@$1" "docker://$repo:$t"; done
}

b_times=(); b_rss=(); s_times=(); s_rss=()
for r in $(seq "$runs"); do
  for v in v1.1.0 v1.2.0; do
    read -r t m < <(measure "$bagboy" -q rollback --version "$v" --yes)
    b_times+=("$t"); b_rss+=("$m")
    [ "$(digest latest)" = "$([ $v = v1.1.0 ] && echo "$d11" || echo "$d12")" ] || { echo "bagboy did not move latest" >&2; exit 1; }
  done
  for d in "$d11" "$d12"; do
    start=$(date +%s.%N); skopeo_all "$d"; end=$(date +%s.%N)
    s_times+=("$(echo "$end - $start" | bc)")
  done
  read -r _ m < <(measure "${sk[@]}" "docker://$repo@$d11" "docker://$repo:t1"); s_rss+=("$m")
done
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END{print (NR%2)?a[(NR+1)/2]:(a[NR/2]+a[NR/2+1])/2}'; }
bt=$(median "${b_times[@]}"); st=$(median "${s_times[@]}")
brss=$(median "${b_rss[@]}"); srss=$(median "${s_rss[@]}")
n=${#alias_tags[@]}
echo "| what ($n tags moved, median of ${#b_times[@]} runs) | wall time | peak RSS |"
echo "|---|---|---|"
echo "| bagboy rollback (plan + apply + history) | ${bt} s | $((brss/1024)) MiB |"
echo "| skopeo copy per tag ($n processes) | ${st} s | $((srss/1024)) MiB per process |"
echo "| ratio skopeo / bagboy | $(echo "scale=1; $st / $bt" | bc)x | |"
