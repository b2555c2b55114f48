#!/usr/bin/env bash
# Old entry point kept for operators' scripts: migrates a LowDB library.json into PostgreSQL.
# Usage: scripts/database/migrate-lowdb-to-timescale.sh [PATH]   (default data/library.json)
set -euo pipefail
here="$(cd "$(dirname "$0")/../.." && pwd)"
if [ -x "$here/.venv/bin/tradingsystem" ]; then
  exec "$here/.venv/bin/tradingsystem" workspace migrate-lowdb "$@"
fi
exec tradingsystem workspace migrate-lowdb "$@"
