#!/usr/bin/env bash
# Stop every service and the embedded database; frees every port.
# A thin wrapper over `tradingsystem down`; arguments are passed through (see `tradingsystem down --help`).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../lib/tradingsystem.sh"
run_tradingsystem down "$@"
