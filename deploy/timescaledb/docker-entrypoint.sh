#!/usr/bin/env bash
# Entrypoint of the TimescaleDB image: the official postgres image's first-start interface, run as postgres.
set -Eeuo pipefail

log() { printf '%s [entrypoint] %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$*" >&2; }
die() { log "FATAL: $*"; exit 1; }

# `docker run image -c name=value` means the server with those options.
if [ "${1:-}" = "" ] || [ "${1:0:1}" = "-" ]; then
  set -- postgres "$@"
fi
if [ "$1" != "postgres" ]; then
  exec "$@"
fi

# Started as root (e.g. `user: root` or a bind mount owned by root): fix ownership, then drop to postgres.
if [ "$(id -u)" = 0 ]; then
  mkdir -p "$PGDATA" /var/run/postgresql
  chown -R postgres:postgres "$PGDATA" /var/run/postgresql
  chmod 0700 "$PGDATA"
  exec setpriv --reuid=postgres --regid=postgres --init-groups "$0" "$@"
fi

# *_FILE variants read the value from a file (docker secrets).
for var in POSTGRES_USER POSTGRES_PASSWORD POSTGRES_DB POSTGRES_INITDB_ARGS; do
  file_var="${var}_FILE"
  if [ -n "${!file_var:-}" ]; then
    [ -z "${!var:-}" ] || die "both $var and $file_var are set; use one"
    export "$var"="$(<"${!file_var}")"
  fi
done
export POSTGRES_USER=${POSTGRES_USER:-postgres}
export POSTGRES_DB=${POSTGRES_DB:-$POSTGRES_USER}
auth=${POSTGRES_HOST_AUTH_METHOD:-scram-sha-256}

psql_run() {
  psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --no-password --no-psqlrc --quiet "$@"
}

run_init_file() {
  local f=$1
  case "$f" in
    *.sh)
      if [ -x "$f" ]; then log "running $f"; "$f"; else log "sourcing $f"; . "$f"; fi ;;
    *.sql)    log "running $f"; psql_run --dbname "$POSTGRES_DB" -f "$f" ;;
    *.sql.gz) log "running $f"; gunzip -c "$f" | psql_run --dbname "$POSTGRES_DB" ;;
    *)        log "ignoring $f" ;;
  esac
}

if [ ! -s "$PGDATA/PG_VERSION" ]; then
  if [ -z "${POSTGRES_PASSWORD:-}" ] && [ "$auth" != trust ]; then
    die "the database is uninitialized and POSTGRES_PASSWORD is not set; set it (or POSTGRES_HOST_AUTH_METHOD=trust, never in production)"
  fi
  [ -w "$PGDATA" ] || die "$PGDATA is not writable by uid $(id -u)"
  log "initializing the cluster in $PGDATA"
  pwfile=$(mktemp)
  trap 'rm -f "$pwfile"' EXIT
  printf '%s' "${POSTGRES_PASSWORD:-}" >"$pwfile"
  # shellcheck disable=SC2086  # POSTGRES_INITDB_ARGS is a list of words, as in the official image
  initdb --username="$POSTGRES_USER" --pwfile="$pwfile" --auth-local=trust --auth-host="$auth" \
    ${POSTGRES_INITDB_ARGS:-} -D "$PGDATA" >/dev/null
  rm -f "$pwfile"
  printf '\nhost all all all %s\n' "$auth" >>"$PGDATA/pg_hba.conf"
  if [ -n "${TS_TUNE_MAX_CONNS:-}" ]; then
    printf 'max_connections = %d\n' "$TS_TUNE_MAX_CONNS" >>"$PGDATA/postgresql.conf"
  fi
  case "${TIMESCALEDB_TELEMETRY:-off}" in
    off|basic) printf 'timescaledb.telemetry_level = %s\n' "${TIMESCALEDB_TELEMETRY:-off}" >>"$PGDATA/postgresql.conf" ;;
    *) die "TIMESCALEDB_TELEMETRY must be off or basic" ;;
  esac

  # A server on the Unix socket only, so that nothing connects before the init scripts are done; it gets the
  # same server options as the real start (as in the official image), so init scripts see the same settings.
  opts=""
  [ $# -lt 2 ] || opts="$(printf '%q ' "${@:2}")"
  pg_ctl -D "$PGDATA" -o "$opts -c listen_addresses='' -c unix_socket_directories=/var/run/postgresql" \
    -w -t 60 start >/dev/null
  if [ "$POSTGRES_DB" != postgres ]; then
    psql_run --dbname postgres --set db="$POSTGRES_DB" <<<'CREATE DATABASE :"db";'
  fi
  for f in /docker-entrypoint-initdb.d/*; do
    [ -e "$f" ] || continue
    run_init_file "$f"
  done
  pg_ctl -D "$PGDATA" -m fast -w stop >/dev/null
  log "initialization complete; starting the server"
fi

exec postgres -D "$PGDATA" "${@:2}"
