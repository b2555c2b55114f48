#!/usr/bin/env bash
# Build the local Debian base image that CI's images start FROM, where no image registry is reachable.
#
#   tools/ci/base-image.sh [TAG]     default TAG: tradingsystem-ci/debian-base:bookworm
#
# The image is a debootstrap'd Debian 12 (minbase) with python3, python3-venv and ca-certificates. This machine's
# CA bundle and apt mirror belong to this local base only (PIP_CERT, SSL_CERT_FILE): never to the project's images.
# An image that already exists is kept (delete it to rebuild): TRADINGSYSTEM_BASE_REBUILD=1 forces a rebuild.
set -euo pipefail

tag=${1:-tradingsystem-ci/debian-base:bookworm}
log() { printf 'base-image: %s\n' "$*" >&2; }

if [ "${TRADINGSYSTEM_BASE_REBUILD:-0}" != 1 ] && docker image inspect "$tag" >/dev/null 2>&1; then
  log "$tag exists"
  exit 0
fi
[ "$(id -u)" = 0 ] || { log "building $tag needs root (debootstrap); run: sudo $0 $tag"; exit 1; }
command -v debootstrap >/dev/null 2>&1 || {
  DEBIAN_FRONTEND=noninteractive apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends debootstrap >/dev/null
}

mirror=$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
[ -n "$mirror" ] || mirror=http://deb.debian.org/debian
root=$(mktemp -d /var/tmp/tradingsystem-base.XXXXXX)
trap 'rm -rf "$root"' EXIT

start=$(date +%s)
log "debootstrap bookworm from $mirror into $root"
debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates bookworm "$root" "$mirror" >"$root.log" 2>&1 \
  || { tail -20 "$root.log" >&2; rm -f "$root.log"; exit 1; }
rm -f "$root.log"

# Local specifics: the CA bundle this network's HTTPS needs, the apt sources of this machine.
ca=/etc/ssl/certs/ca-certificates.crt
mkdir -p "$root/usr/local/share/ca-local"
cp "$ca" "$root/usr/local/share/ca-local/ca-certificates.crt"
cp /etc/apt/sources.list.d/debian.sources "$root/etc/apt/sources.list.d/debian.sources" 2>/dev/null || true
rm -f "$root/etc/apt/sources.list"
rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*

tar -C "$root" -c . | docker import \
  --change 'ENV LANG=C.UTF-8' \
  --change 'ENV PIP_CERT=/usr/local/share/ca-local/ca-certificates.crt' \
  --change 'ENV SSL_CERT_FILE=/usr/local/share/ca-local/ca-certificates.crt' \
  --change 'ENV REQUESTS_CA_BUNDLE=/usr/local/share/ca-local/ca-certificates.crt' \
  --change 'CMD ["/bin/bash"]' \
  - "$tag" >/dev/null
log "built $tag in $(( $(date +%s) - start )) s"
