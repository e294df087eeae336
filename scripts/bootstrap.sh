#!/usr/bin/env bash
# Bring a fresh Debian/Ubuntu machine to the point where `make demo` and `make test` run:
# system packages (only those missing), then .venv with `pip install -e .[test,agent,cli]` (the console library
# with the agent's and the CLI's extras, and what the tests need).
# Idempotent: a second run checks and does nothing.
set -euo pipefail
cd "$(dirname "$0")/.."

# systemd: systemd-analyze, which checks the unit offline (tests/integration/test_systemd_unit.py).
APT_PACKAGES=(libvirt-dev pkg-config python3-venv gcc systemd)
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"

missing=()
for pkg in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
# python3-venv is only needed when the interpreter cannot make a venv by itself.
if python3 -c 'import venv, ensurepip' 2>/dev/null; then
  missing=("${missing[@]/python3-venv}")
fi
missing=($(printf '%s\n' "${missing[@]}" | grep -v '^$' || true))
if [ ${#missing[@]} -gt 0 ]; then
  echo "bootstrap: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

stamp=.venv/.bootstrap-stamp
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
# pip runs again when what it installs may have changed: setup.cfg, pyproject.toml or the extras named here.
if [ ! -f "$stamp" ] || [ setup.cfg -nt "$stamp" ] || [ pyproject.toml -nt "$stamp" ] || [ scripts/bootstrap.sh -nt "$stamp" ]; then
  .venv/bin/pip install -q --upgrade pip
  .venv/bin/pip install -q -e '.[test,agent,cli]'
  touch "$stamp"
fi
