# What the scripts/install-*.sh share (sourced, not run): running as root, and installing the Debian
# packages that are missing (apt-get update first; no recommended packages). Messages name the script.
INSTALLER="$(basename "$0" .sh)"

as_root() {  # run a command as root: directly, else through sudo (asked only when a change is needed)
  if [ "$(id -u)" -eq 0 ]; then
    "$@"
  elif command -v sudo >/dev/null; then
    sudo "$@"
  else
    echo "$INSTALLER: needs root or sudo for: $*" >&2
    exit 1
  fi
}

under_systemd() { [ -d /run/systemd/system ]; }

missing_packages() {  # print, one a line, the packages of "$@" that are not installed
  local pkg
  for pkg in "$@"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || echo "$pkg"
  done
}

install_packages() {  # apt-get install "$@", quietly
  echo "$INSTALLER: installing $*"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

stop_service_unit() {  # stop_service_unit NAME WHAT: stop the system service NAME, and disable it under systemd
  if under_systemd; then
    as_root systemctl stop "$1" || true
    as_root systemctl disable --quiet "$1" || true
    echo "$INSTALLER: $1.service is disabled; \`systemctl enable --now $1\` gives you $2" >&2
  elif [ -x "/etc/init.d/$1" ]; then
    as_root "/etc/init.d/$1" stop >/dev/null 2>&1 || true
  fi
}
