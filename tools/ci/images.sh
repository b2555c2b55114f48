#!/usr/bin/env bash
# Build the project's images for a test run: tradingsystem/{tp-capital-api,workspace,dev}:${IMAGE_TAG:-local}.
#
#   tools/ci/images.sh
#
# BASE_IMAGE chooses the base (deploy/Dockerfile's build argument). Unset: the public python:3.12-slim when it is
# present or can be pulled, otherwise the local Debian base of tools/ci/base-image.sh (built when missing), for
# machines that reach no image registry. Docker's layer cache is kept, so an unchanged tree rebuilds in seconds.
#
# The database: TIMESCALEDB_IMAGE when set; else the compose file's public default when present or pullable; else
# the TimescaleDB image tools/ci/timescaledb-image.sh builds from the vendored source (kept while its inputs do not
# change). Printed on stdout, one `NAME=value` a line: BASE_IMAGE and, when not the compose default, TIMESCALEDB_IMAGE.
set -euo pipefail
cd "$(dirname "$0")/../.."

tag=${IMAGE_TAG:-local}
public=python:3.12-slim
local_base=tradingsystem-ci/debian-base:bookworm
log() { printf 'images: %s\n' "$*" >&2; }

base=${BASE_IMAGE:-}
if [ -z "$base" ]; then
  if docker image inspect "$public" >/dev/null 2>&1 || docker pull -q "$public" >/dev/null 2>&1; then
    base=$public
  else
    log "$public cannot be pulled here: building FROM the local Debian base $local_base"
    tools/ci/base-image.sh "$local_base"
    base=$local_base
  fi
fi

# The classic builder: it needs no buildx plugin and works with every engine version.
export DOCKER_BUILDKIT=0
for spec in api:tp-capital-api workspace:workspace dev:dev; do
  target=${spec%%:*}
  image=tradingsystem/${spec#*:}:$tag
  start=$(date +%s)
  out=$(mktemp)
  if ! docker build --network host --build-arg "BASE_IMAGE=$base" -f deploy/Dockerfile --target "$target" \
      -t "$image" . >"$out" 2>&1; then
    tail -30 "$out" >&2
    rm -f "$out"
    log "building $image failed"
    exit 1
  fi
  rm -f "$out"
  log "built $image FROM $base in $(( $(date +%s) - start )) s"
done
echo "BASE_IMAGE=$base"

database=${TIMESCALEDB_IMAGE:-}
if [ -z "$database" ]; then
  default=$(sed -n 's/.*image: \${TIMESCALEDB_IMAGE:-\([^}]*\)}.*/\1/p' tools/compose/docker-compose.database.yml)
  if [ -n "$default" ] && { docker image inspect "$default" >/dev/null 2>&1 || docker pull -q "$default" >/dev/null 2>&1; }; then
    log "database image $default"
  elif [ -x tools/ci/timescaledb-image.sh ]; then
    database=tradingsystem-ci/timescaledb:${default##*:}
    log "${default:-the public TimescaleDB image} cannot be pulled here: building $database from source"
    tools/ci/timescaledb-image.sh "$database"
  else
    log "no TimescaleDB image: ${default:-the compose default} cannot be pulled and tools/ci/timescaledb-image.sh is missing"
    exit 1
  fi
fi
[ -z "$database" ] || echo "TIMESCALEDB_IMAGE=$database"
