#!/usr/bin/env bash
# Check the database and the three services (exit 0 healthy, 1 degraded, 2 critical).
# A thin wrapper over `tradingsystem health`; arguments are passed through (see `tradingsystem health --help`).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../lib/tradingsystem.sh"
run_tradingsystem health "$@"
