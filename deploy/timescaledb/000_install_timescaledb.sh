#!/usr/bin/env bash
# First start only: create the extension in postgres, template1 (new databases inherit it) and POSTGRES_DB.
set -euo pipefail
preload=$(psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres --no-psqlrc -At -c 'SHOW shared_preload_libraries')
case ",${preload// /}," in
  *,timescaledb,*) ;;
  *) echo "timescaledb is not in shared_preload_libraries ('$preload'): the extension is installed but not created" >&2
     exit 0 ;;
esac
for db in postgres template1 "$POSTGRES_DB"; do
  psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$db" --no-psqlrc --quiet \
    -c 'CREATE EXTENSION IF NOT EXISTS timescaledb CASCADE'
done
