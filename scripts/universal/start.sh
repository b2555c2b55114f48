#!/usr/bin/env bash
# Start every service (the embedded PostgreSQL unless a database is configured, Workspace, TP Capital API, gateway) and wait until healthy.
# A thin wrapper over `tradingsystem up`; arguments are passed through (see `tradingsystem up --help`).
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
exec "$tradingsystem" up "$@"
