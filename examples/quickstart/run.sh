#!/usr/bin/env bash
# bagboy's main job end to end, locally: publish three releases of `myapp` to an OCI image
# layout and a Homebrew tap (a bare git repo), record them, preview a rollback of the broken
# v1.2.0 as a pull-request comment would show it, roll back, and show the audit trail.
# No network, no accounts. Everything lands in examples/quickstart/work/ (re-created each run).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"

if ! command -v git >/dev/null 2>&1; then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq git >/dev/null
fi

echo "==> building bagboy"
(cd "$root" && cargo build --quiet --bin bagboy --example publish)
bagboy="$root/target/debug/bagboy"
publish="$root/target/debug/examples/publish"

work="$here/work"
rm -rf "$work"
mkdir -p "$work"
cd "$work"
export BAGBOY_CACHE_DIR="$work/.cache" NO_COLOR=1 BAGBOY_ACTOR="${BAGBOY_ACTOR:-quickstart}"

git init -q --bare -b main tap.git
git clone -q tap.git tap-work 2>/dev/null

cat > bagboy.yaml <<YAML
name: myapp
registries:
  - format: oci-layout
    registry: oci
  - format: brew
    registry: acme/homebrew-tap
    remote: file://$work/tap.git
    branch: main
rollback:
  version_scheme_bump: true
YAML

run() { echo; echo "\$ bagboy $*"; "$bagboy" "$@"; }

for v in v1.0.0 v1.1.0 v1.2.0; do
  echo; echo "==> release $v"
  "$publish" oci tap-work "$v"
  run record --version "$v" --commit "$(printf '%s' "$v" | sha1sum | cut -c1-12)"
done

run versions list
run versions compare previous current
echo; echo "==> v1.2.0 is broken. What would a rollback do? (the markdown a CI job posts on a PR)"
run rollback --dry-run --format markdown
echo; echo "==> roll back every registry to v1.1.0"
run rollback --version v1.1.0 --yes
echo; echo "==> running it again changes nothing"
run rollback --version v1.1.0 --yes
run versions list

echo; echo "==> what users now get"
echo "OCI layout tag latest → $(grep -B4 'ref.name": "latest"' oci/index.json | grep -o "sha256:[0-9a-f]*")"
git clone -q tap.git tap-check 2>/dev/null
echo "Formula/myapp.rb:"; grep -E '^\s+(version|version_scheme) ' tap-check/Formula/myapp.rb
echo "tap log:"; git -C tap-check log --oneline | head -4
echo; echo "Quickstart done: see $work"
