#!/usr/bin/env bash
# What `make test` needs beyond Python, make and bash: installed here on Debian as root (apt-get),
# otherwise one line naming what is missing and the command that installs it, and exit 1.
set -euo pipefail

PYTHON=${PYTHON:-python3}
VENV=${VENV:-.venv}
missing=()
packages=()

check() {
  missing=()
  packages=()
  command -v promtool >/dev/null 2>&1 || { missing+=(promtool); packages+=(prometheus); }
  command -v systemd-analyze >/dev/null 2>&1 || { missing+=(systemd-analyze); packages+=(systemd); }
  # Debian splits `python3 -m venv` into its own package; only needed while there is no venv yet.
  if [ ! -x "$VENV/bin/python" ] && ! "$PYTHON" -c 'import ensurepip, venv' >/dev/null 2>&1; then
    missing+=("$PYTHON -m venv"); packages+=(python3-venv)
  fi
}

check
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$EUID" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "prereqs: installing ${packages[*]} with apt-get (for ${missing[*]})"
  log=$(mktemp)
  trap 'rm -f "$log"' EXIT
  export DEBIAN_FRONTEND=noninteractive
  if ! { apt-get update -qq && apt-get install -y -qq --no-install-recommends "${packages[@]}"; } >"$log" 2>&1; then
    tail -n 20 "$log" >&2
    echo "error: apt-get could not install ${packages[*]} (needed by make test for ${missing[*]})" >&2
    exit 1
  fi
  check
  [ ${#missing[@]} -eq 0 ] && exit 0
  echo "error: still missing after apt-get install ${packages[*]}: ${missing[*]}" >&2
  exit 1
fi

echo "error: make test needs ${missing[*]}, not installed; install with: sudo apt-get install -y --no-install-recommends ${packages[*]} (Debian/Ubuntu), then run make test again" >&2
exit 1
