#!/usr/bin/env bash
# Install contrib/systemd/virtq-agent.service with ExecStart pointing at the virtq-agent pip installed
# (`make install-unit`; docs/OPERATIONS.md).
#
#   scripts/install-unit.sh [--agent PATH] [--root DIR]
#
#   --agent PATH  the virtq-agent to run (default: the one on PATH, else this checkout's .venv/bin/virtq-agent)
#   --root DIR    install under DIR instead of / (a package build, a test): no user is made, systemctl is not run
#
# Into ROOT/etc/systemd/system/virtq-agent.service, and contrib/agent.conf as ROOT/etc/virtq/agent.conf unless
# one is there. Installing into / also makes the virtq-agent system user (in the libvirt group, when there
# is one) and reloads systemd. Idempotent: a second run rewrites the unit and changes nothing else.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
agent=""
root=""
while [ $# -gt 0 ]; do
  case "$1" in
    --agent) agent=$2; shift 2 ;;
    --root) root=$2; shift 2 ;;
    -h|--help) sed -n '2,13p' "$0"; exit 0 ;;
    *) echo "install-unit: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
if [ -z "$agent" ]; then
  agent=$(command -v virtq-agent || echo "$here/.venv/bin/virtq-agent")
fi
if [ ! -x "$agent" ]; then
  echo "install-unit: no executable virtq-agent at $agent (pip install 'virtq[agent,cli]' first, or pass --agent)" >&2
  exit 1
fi
agent=$(realpath -s "$agent")  # absolute; a venv's bin/ symlinks are kept (the script's #! names the venv)

unit_dir="$root/etc/systemd/system"
conf_dir="$root/etc/virtq"
unit=$(mktemp)
trap 'rm -f "$unit"' EXIT
escaped=$(printf '%s' "$agent" | sed 's/[&|\\]/\\&/g')
sed "s|^ExecStart=/usr/bin/virtq-agent |ExecStart=$escaped |" "$here/contrib/systemd/virtq-agent.service" >"$unit"
if ! grep -qF "ExecStart=$agent " "$unit"; then
  echo "install-unit: contrib/systemd/virtq-agent.service has no 'ExecStart=/usr/bin/virtq-agent ' line to rewrite" >&2
  exit 1
fi
case "$agent" in
  /home/*|/root/*|/run/user/*)
    # ProtectHome=yes would hide the program itself.
    sed -i 's/^ProtectHome=yes$/ProtectHome=read-only/' "$unit"
    echo "install-unit: $agent is in a home directory: the unit gets ProtectHome=read-only instead of yes" >&2 ;;
esac

mkdir -p "$unit_dir" "$conf_dir"
install -m 0644 "$unit" "$unit_dir/virtq-agent.service"
new_conf=false
if [ ! -e "$conf_dir/agent.conf" ]; then
  install -m 0600 "$here/contrib/agent.conf" "$conf_dir/agent.conf"
  new_conf=true
fi

if [ -z "$root" ]; then
  if ! getent passwd virtq-agent >/dev/null; then
    useradd --system --user-group --home-dir /var/lib/virtq-agent --no-create-home --shell /usr/sbin/nologin \
      --comment "virtq agent" virtq-agent
  fi
  if getent group libvirt >/dev/null; then
    usermod -a -G libvirt virtq-agent  # qemu:///system's socket and libvirt's polkit rule admit the group
  else
    echo "install-unit: no libvirt group here: install libvirt-daemon-system, then run this again" >&2
  fi
  if $new_conf; then
    chown virtq-agent: "$conf_dir/agent.conf"  # the agent reads it; it may hold a broker password
  fi
  if [ -d /run/systemd/system ]; then
    systemctl daemon-reload
  fi
fi
echo "installed $unit_dir/virtq-agent.service (ExecStart=$agent)"
