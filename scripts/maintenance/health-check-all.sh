#!/usr/bin/env bash
# Check the database and the three services (exit 0 healthy, 1 degraded, 2 critical).
# A thin wrapper over `tradingsystem health`; arguments are passed through (see `tradingsystem health --help`).
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
exec "$tradingsystem" health "$@"
