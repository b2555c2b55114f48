#!/usr/bin/env bash
# Build the project's images for a test run: tradingsystem/{tp-capital-api,workspace,dev}:${IMAGE_TAG:-local}.
#
#   tools/ci/images.sh
#
# BASE_IMAGE chooses the base (deploy/Dockerfile's build argument). Unset: the public python:3.12-slim when it is
# present or can be pulled, otherwise the local Debian base of tools/ci/base-image.sh (built when missing), for
# machines that reach no image registry. Docker's layer cache is kept, so an unchanged tree rebuilds in seconds.
# The last line printed is `BASE_IMAGE=<the base used>`.
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
