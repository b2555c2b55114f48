#!/usr/bin/env bash
# Show each service's state, pid, uptime and port (exit 0 all running, 1 some not, 3 none).
# A thin wrapper over `tradingsystem status`; arguments are passed through (see `tradingsystem status --help`).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../lib/tradingsystem.sh"
run_tradingsystem status "$@"
