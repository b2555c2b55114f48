#!/usr/bin/env bash
# Build the TimescaleDB test image (deploy/timescaledb) from the vendored release source, for machines without a registry.
#
#   tools/ci/timescaledb-image.sh [TAG]     default TAG: tradingsystem-ci/timescaledb:2.28.3-pg15
#
# The source tarball is not part of the repository: it is taken from $TIMESCALEDB_SOURCE, else from
# ../shared/vendor/ beside the checkout (or beside the repository it was cloned from), and checked against its SHA-256. The base image is
# $TIMESCALEDB_BASE (default: the local Debian base from tools/ci/base-image.sh, built if missing).
# An image built from the same Dockerfile, scripts and source is kept; TRADINGSYSTEM_TIMESCALEDB_REBUILD=1 forces a build.
set -euo pipefail

version=2.28.3
sha256=ec2f7de0ba53a473c01e0a57e09053898c6b1f7487228caff0f1d31c8cb2dedb
tag=${1:-tradingsystem-ci/timescaledb:${version}-pg15}
base=${TIMESCALEDB_BASE:-tradingsystem-ci/debian-base:bookworm}
here=$(cd "$(dirname "$0")/../.." && pwd)
log() { printf 'timescaledb-image: %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }

# The classic builder: the docker 28 client on PATH may lack buildx, Debian's 20.10 client does not need it.
docker_bin=docker
[ -x /usr/bin/docker ] && docker_bin=/usr/bin/docker

source=${TIMESCALEDB_SOURCE:-}
if [ -z "$source" ]; then
  # Beside this checkout, beside the main checkout of a worktree, beside the repository a clone came from.
  common=$(git -C "$here" rev-parse --path-format=absolute --git-common-dir 2>/dev/null || true)
  origin=$(git -C "$here" remote get-url origin 2>/dev/null || true)
  for candidate in "$here/../shared/vendor" "${common:+$common/../../shared/vendor}" "${origin:+$origin/../shared/vendor}"; do
    [ -n "$candidate" ] || continue
    if [ -f "$candidate/timescaledb-$version.tar.gz" ]; then source="$candidate/timescaledb-$version.tar.gz"; break; fi
  done
fi
[ -n "$source" ] && [ -f "$source" ] \
  || die "timescaledb-$version.tar.gz not found; set TIMESCALEDB_SOURCE to the release source tarball (github.com/timescale/timescaledb)"
echo "$sha256  $source" | sha256sum -c --quiet - >/dev/null 2>&1 || die "$source does not have the SHA-256 of release $version"

# The build's identity: the image is rebuilt whenever one of its inputs changes.
inputs=$(cd "$here/deploy/timescaledb" && cat Dockerfile docker-entrypoint.sh 000_install_timescaledb.sh | sha256sum | cut -c1-16)
inputs="$inputs-$("$docker_bin" image inspect --format '{{.Id}}' "$base" 2>/dev/null | cut -c8-19)"
if [ "${TRADINGSYSTEM_TIMESCALEDB_REBUILD:-0}" != 1 ] \
   && [ "$("$docker_bin" image inspect --format '{{index .Config.Labels "tradingsystem.inputs"}}' "$tag" 2>/dev/null)" = "$inputs" ]; then
  log "$tag is up to date"
  exit 0
fi

if ! "$docker_bin" image inspect "$base" >/dev/null 2>&1; then
  [ "$base" = tradingsystem-ci/debian-base:bookworm ] || die "base image $base does not exist"
  "$here/tools/ci/base-image.sh" "$base"
  inputs="${inputs%-*}-$("$docker_bin" image inspect --format '{{.Id}}' "$base" | cut -c8-19)"
fi

context=$(mktemp -d /var/tmp/tradingsystem-timescaledb.XXXXXX)
trap 'rm -rf "$context"' EXIT
cp "$here"/deploy/timescaledb/{Dockerfile,docker-entrypoint.sh,000_install_timescaledb.sh} "$context/"
cp "$source" "$context/timescaledb-$version.tar.gz"

start=$(date +%s)
log "building $tag FROM $base (about 5 minutes on 2 cores)"
"$docker_bin" build --network host --build-arg "BASE=$base" --build-arg "TIMESCALEDB_VERSION=$version" \
  --label "tradingsystem.inputs=$inputs" -t "$tag" "$context" >"$context.log" 2>&1 \
  || { tail -40 "$context.log" >&2; rm -f "$context.log"; die "build of $tag failed"; }
rm -f "$context.log"
log "built $tag in $(( $(date +%s) - start )) s"
