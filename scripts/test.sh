#!/usr/bin/env bash
# Install what bagboy's tests need on a fresh Debian machine, then run the whole suite.
# Usage: scripts/test.sh [extra cargo test args]
set -euo pipefail
cd "$(dirname "$0")/.."

# Real servers and tools the integration tests start: the CNCF distribution registry,
# git (taps), htpasswd (bcrypt users for registry auth), openssl (token-server keys), ruby
# (`ruby -c` on every formula bagboy restores), the Prometheus Pushgateway (metrics) and
# Prometheus (health-check queries).
need=()
[ -x /usr/bin/docker-registry ] || need+=(docker-registry)
command -v git >/dev/null 2>&1 || need+=(git)
command -v htpasswd >/dev/null 2>&1 || need+=(apache2-utils)
command -v openssl >/dev/null 2>&1 || need+=(openssl)
command -v ruby >/dev/null 2>&1 || need+=(ruby)
[ -x /usr/bin/prometheus-pushgateway ] || need+=(prometheus-pushgateway)
[ -x /usr/bin/prometheus ] || need+=(prometheus)
if [ ${#need[@]} -gt 0 ]; then
  echo "installing: ${need[*]}" >&2
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi
# The Debian packages may start services (registry :5000, pushgateway :9091, prometheus :9090); the tests
# never use them: every test starts its own on an ephemeral port.

cargo test --all-targets "$@"
