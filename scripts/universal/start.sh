#!/usr/bin/env bash
# Start every service (the embedded PostgreSQL unless a database is configured, Workspace, TP Capital API, gateway) and wait until healthy.
# A thin wrapper over `tradingsystem up`; arguments are passed through (see `tradingsystem up --help`).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../lib/tradingsystem.sh"
run_tradingsystem up "$@"
