#!/usr/bin/env bash
# Stop every service and the embedded database; frees every port.
# A thin wrapper over `tradingsystem down`; arguments are passed through (see `tradingsystem down --help`).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"
if [ -x "$root/.venv/bin/tradingsystem" ]; then
  tradingsystem="$root/.venv/bin/tradingsystem"
elif command -v tradingsystem >/dev/null 2>&1; then
  tradingsystem="$(command -v tradingsystem)"
else
  echo "tradingsystem is not installed: run 'make venv' in $root first" >&2
  exit 127
fi
exec "$tradingsystem" down "$@"
