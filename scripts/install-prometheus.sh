#!/usr/bin/env bash
# What tests/prometheus needs: Debian's prometheus package (the server, and promtool to check rules).
# Idempotent: when the package is installed it only checks; otherwise it runs apt-get update and
# installs it (without recommends: no prometheus-node-exporter). Runs as root, or with sudo (asked
# only when something must be installed).
# tests/prometheus starts private servers of its own (virtq.testing.prometheus), never the system
# service: when this script installs the package and the package starts the service (systemd, or
# invoke-rc.d without a policy-rc.d that forbids it), the script stops it again (and disables it under
# systemd). A Prometheus that was running before is left alone.
set -euo pipefail

PACKAGES=(prometheus)
PROGRAMS=(/usr/bin/prometheus /usr/bin/promtool)

. "$(dirname "$0")/install-lib.sh"

service_pids() {  # the system service runs as the prometheus user
  pgrep -u prometheus -x prometheus 2>/dev/null | sort || true
}

service_running() {
  if under_systemd && systemctl is-active --quiet prometheus 2>/dev/null; then
    return 0
  fi
  [ -n "$(service_pids)" ]
}

stop_service() {  # stop (and keep from starting at boot) the service the package just started
  echo "install-prometheus: stopping the prometheus service the package started" \
       "(tests/prometheus runs private servers)"
  stop_service_unit prometheus "a system server"
  for _ in $(seq 1 100); do  # up to 10 s for it to go
    [ -z "$(service_pids)" ] && return 0
    sleep 0.1
  done
  echo "install-prometheus: the prometheus service did not stop (pids $(service_pids | xargs))" >&2
  exit 1
}

mapfile -t missing < <(missing_packages "${PACKAGES[@]}")
if [ ${#missing[@]} -gt 0 ]; then
  was_running=false
  service_running && was_running=true
  install_packages "${missing[@]}"
  if ! $was_running && service_running; then
    stop_service
  fi
fi

problems=()
for program in "${PROGRAMS[@]}"; do
  [ -x "$program" ] || problems+=("$program missing")
done
if [ ${#problems[@]} -gt 0 ]; then
  printf 'install-prometheus: %s\n' "${problems[@]}" >&2
  exit 1
fi
