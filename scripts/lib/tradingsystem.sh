#!/usr/bin/env bash
# Shared by the wrapper scripts: run the project's `tradingsystem` command from the project directory.
# Usage (after `source`): run_tradingsystem SUBCOMMAND [ARGS...]
set -euo pipefail
TS_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"

run_tradingsystem() {
  local cmd
  cd "$TS_ROOT"
  if [ -x "$TS_ROOT/.venv/bin/tradingsystem" ]; then
    cmd="$TS_ROOT/.venv/bin/tradingsystem"
  elif command -v tradingsystem >/dev/null 2>&1; then
    cmd="$(command -v tradingsystem)"
  else
    echo "tradingsystem is not installed: run 'make venv' in $TS_ROOT first" >&2
    exit 127
  fi
  exec "$cmd" "$@"
}
