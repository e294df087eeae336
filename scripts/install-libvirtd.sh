#!/usr/bin/env bash
# What tests/realhv needs: a real libvirtd with the QEMU driver (software emulation, TCG).
# Idempotent: installs only missing packages, creates the libvirt-qemu user/group only when
# missing, edits /etc/libvirt/qemu.conf only when it does not already run guests as root.
# Runs as root, or with sudo. Deliberately NOT libvirt-daemon-system (it pulls systemd
# upgrades, iptables, dnsmasq and a NAT network): tests/realhv starts its own daemons.
set -euo pipefail

PACKAGES=(libvirt-daemon libvirt-daemon-driver-qemu qemu-system-x86 libvirt-clients tini)
QEMU_CONF=/etc/libvirt/qemu.conf
BACKUP="$QEMU_CONF.virtq-orig"

. "$(dirname "$0")/install-lib.sh"

mapfile -t missing < <(missing_packages "${PACKAGES[@]}")
if [ ${#missing[@]} -gt 0 ]; then
  install_packages "${missing[@]}"
fi

# The QEMU driver refuses to load without its build-time user and group.
if ! getent group libvirt-qemu >/dev/null; then
  as_root groupadd --system libvirt-qemu
fi
if ! getent passwd libvirt-qemu >/dev/null; then
  as_root useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin \
    -g libvirt-qemu libvirt-qemu
fi

# Guests run as root: /dev/kvm and test files stay reachable, and QEMU capabilities are
# probed once instead of at every define.
conf_says() {  # conf_says KEY VALUE: the file's active setting for KEY is VALUE
  [ -f "$QEMU_CONF" ] && [ "$(sed -nE "s/^[[:space:]]*$1[[:space:]]*=[[:space:]]*\"([^\"]*)\".*/\\1/p" \
    "$QEMU_CONF" | tail -n 1)" = "$2" ]
}
if ! conf_says user root || ! conf_says group root; then
  echo "install-libvirtd: setting user/group = \"root\" in $QEMU_CONF"
  as_root mkdir -p "$(dirname "$QEMU_CONF")"
  if [ -f "$QEMU_CONF" ]; then
    [ -e "$BACKUP" ] || as_root cp -p "$QEMU_CONF" "$BACKUP"
    as_root sed -i -E '/^[[:space:]]*(user|group)[[:space:]]*=/d' "$QEMU_CONF"
  fi
  note="# Added by virtq scripts/install-libvirtd.sh"
  [ -e "$BACKUP" ] && note="$note (original: $BACKUP)"
  printf '%s\nuser = "root"\ngroup = "root"\n' "$note" | as_root tee -a "$QEMU_CONF" >/dev/null
  if pidof libvirtd >/dev/null 2>&1; then
    echo "install-libvirtd: a running libvirtd reads $QEMU_CONF only when it restarts" >&2
  fi
fi
