#!/usr/bin/env bash
# Show each service's state, pid, uptime and port (exit 0 all running, 1 some not, 3 none).
# A thin wrapper over `tradingsystem status`; arguments are passed through (see `tradingsystem status --help`).
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
exec "$tradingsystem" status "$@"
