#!/usr/bin/env bash
# What tests/broker needs: rabbitmq-server (Debian; its AMQP 1.0 plugin is bundled) with Erlang's epmd.
# Idempotent: when the package is installed it only checks; otherwise it runs apt-get update and
# installs it. Runs as root, or with sudo (asked only when something must be installed).
# tests/broker starts private nodes of its own (virtq.testing.rabbitmq), never the system service:
# when this script installs the package and the package starts the service (systemd, or invoke-rc.d
# without a policy-rc.d that forbids it), the script stops it again (and disables it under systemd),
# with the epmd that it started. A RabbitMQ that was running before is left alone.
set -euo pipefail

PACKAGES=(rabbitmq-server)
RABBIT_BIN=/usr/lib/rabbitmq/bin
PLUGIN=rabbitmq_amqp1_0
SSL_AUTH_PLUGIN=rabbitmq_auth_mechanism_ssl  # SASL EXTERNAL, for the TLS node of tests/broker (bundled too)

. "$(dirname "$0")/install-lib.sh"

service_pids() {  # the system service's Erlang VMs and epmd run as the rabbitmq user
  pgrep -u rabbitmq -x "$1" 2>/dev/null | sort || true
}

service_running() {
  if under_systemd && systemctl is-active --quiet rabbitmq-server 2>/dev/null; then
    return 0
  fi
  [ -n "$(service_pids beam.smp)" ]
}

stop_service() {  # stop (and keep from starting at boot) the service the package just started
  echo "install-rabbitmq: stopping the rabbitmq-server service the package started" \
       "(tests/broker runs private nodes)"
  stop_service_unit rabbitmq-server "a system broker"
  if ! under_systemd && [ -n "$(service_pids beam.smp)" ]; then
    as_root /usr/sbin/rabbitmqctl stop >/dev/null 2>&1 || true
  fi
  for _ in $(seq 1 100); do  # up to 10 s for the VM to go
    [ -z "$(service_pids beam.smp)" ] && break
    sleep 0.1
  done
  if [ -n "$(service_pids beam.smp)" ]; then
    echo "install-rabbitmq: the rabbitmq-server service did not stop (pids $(service_pids beam.smp | xargs))" >&2
    exit 1
  fi
  # epmd outlives the node that started it: stop the one the service started (not one that ran before).
  local pid
  for pid in $(comm -13 <(echo "$epmd_before") <(service_pids epmd)); do
    as_root kill "$pid" 2>/dev/null || true
  done
}

mapfile -t missing < <(missing_packages "${PACKAGES[@]}")
if [ ${#missing[@]} -gt 0 ]; then
  was_running=false
  service_running && was_running=true
  epmd_before="$(service_pids epmd)"
  install_packages "${missing[@]}"
  if ! $was_running && service_running; then
    stop_service
  fi
fi

# What the harness runs: the server and rabbitmqctl without the /usr/sbin wrappers (they switch to the
# rabbitmq user and its cookie), the AMQP 1.0 and SASL EXTERNAL plugins, and epmd.
problems=()
for program in rabbitmq-server rabbitmqctl; do
  [ -x "$RABBIT_BIN/$program" ] || problems+=("$RABBIT_BIN/$program missing")
done
for plugin in "$PLUGIN" "$SSL_AUTH_PLUGIN"; do
  compgen -G "/usr/lib/rabbitmq/lib/rabbitmq_server-*/plugins/$plugin-*" >/dev/null || \
    problems+=("the $plugin plugin is missing")
done
command -v epmd >/dev/null || compgen -G "/usr/lib/erlang/erts-*/bin/epmd" >/dev/null || \
  problems+=("epmd (erlang-base) is missing")
if [ ${#problems[@]} -gt 0 ]; then
  printf 'install-rabbitmq: %s\n' "${problems[@]}" >&2
  exit 1
fi
