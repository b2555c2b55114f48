#!/usr/bin/env bash
# Make a Docker engine with Compose v2 reachable: install it (Debian, root) and start dockerd if needed.
#
#   tools/ci/docker-engine.sh            ensure the engine answers; exit 1 with one clear line if it cannot
#   tools/ci/docker-engine.sh --check    exit 0 if an engine answers and compose v2 works, 1 otherwise (no changes)
#
# dockerd started here logs to ${DOCKERD_LOG:-/var/log/tradingsystem-dockerd.log} and keeps running after this
# script (a test run uses it; the machine's next boot does not). Its PID is in /run/tradingsystem-dockerd.pid.
set -euo pipefail

log() { printf 'docker-engine: %s\n' "$*" >&2; }
die() { printf 'docker-engine: %s\n' "$*" >&2; exit 1; }

engine_ok() { docker info >/dev/null 2>&1; }
compose_ok() { docker compose version >/dev/null 2>&1; }

if [ "${1:-}" = "--check" ]; then
  engine_ok && compose_ok
  exit $?
fi

if engine_ok && compose_ok; then
  exit 0
fi

is_debian_root() { [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; }
in_container() { [ -f /.dockerenv ] || [ -f /run/.containerenv ] || grep -qa 'container=' /proc/1/environ 2>/dev/null; }
# dockerd needs CAP_SYS_ADMIN (bit 21) for its mounts and namespaces: a privileged container has it, an
# ordinary one does not, and there dockerd could only fail after a long install.
has_sys_admin() {
  local eff
  eff=$(awk '/^CapEff:/ {print $2}' /proc/self/status 2>/dev/null || true)
  [ -n "$eff" ] && (( (16#$eff >> 21) & 1 ))
}

if ! engine_ok && in_container && ! has_sys_admin; then
  die "no Docker engine answers, and this container lacks the privileges to start one: run the container suite on a host or a privileged container (tools/ci/docker-engine.sh there)"
fi

if ! is_debian_root; then
  engine_ok || die "no Docker engine answers and this is not root on Debian; install one: sudo apt-get install docker.io containerd runc iptables && sudo systemctl start docker"
  die "Compose v2 is missing ('docker compose version' fails); install the docker-compose-plugin (Debian 13: apt-get install docker-compose)"
fi

export DEBIAN_FRONTEND=noninteractive
apt_updated=0
apt_install() {
  if [ "$apt_updated" = 0 ]; then apt-get update -qq; apt_updated=1; fi
  apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

if ! command -v dockerd >/dev/null 2>&1; then
  log "installing docker.io, containerd, runc, iptables"
  apt_install docker.io containerd runc iptables
fi
command -v debootstrap >/dev/null 2>&1 || apt_install debootstrap

if ! engine_ok; then
  if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
    systemctl start docker || true
  fi
fi
if ! engine_ok; then
  dockerd_log=${DOCKERD_LOG:-/var/log/tradingsystem-dockerd.log}
  log "starting dockerd (log: $dockerd_log)"
  nohup dockerd >"$dockerd_log" 2>&1 &
  echo $! >/run/tradingsystem-dockerd.pid
  pid=$(cat /run/tradingsystem-dockerd.pid)
  for _ in $(seq 1 60); do
    engine_ok && break
    kill -0 "$pid" 2>/dev/null || { tail -n 5 "$dockerd_log" >&2; die "dockerd exited at start; see $dockerd_log"; }
    sleep 1
  done
  engine_ok || die "dockerd did not answer within 60 s; see $dockerd_log"
fi

if ! compose_ok; then
  # Debian 12 ships only Compose v1; Debian 13's docker-compose (v2) needs nothing newer than bookworm's libc.
  uri=$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
  [ -n "$uri" ] || uri=http://deb.debian.org/debian
  scratch=$(mktemp -d)
  trap 'rm -rf "$scratch"' EXIT
  mkdir -p "$scratch/lists/partial" "$scratch/archives/partial"
  printf 'deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] %s trixie main\n' "$uri" >"$scratch/trixie.list"
  opts=(-o "Dir::Etc::SourceList=$scratch/trixie.list" -o Dir::Etc::SourceParts=/dev/null
        -o "Dir::State::Lists=$scratch/lists" -o "Dir::Cache::Archives=$scratch/archives" -o APT::Sandbox::User=root)
  log "installing Compose v2 from Debian trixie's docker-compose package"
  apt-get "${opts[@]}" update -qq
  (cd "$scratch" && apt-get "${opts[@]}" download docker-compose >/dev/null)
  dpkg -i "$scratch"/docker-compose_*.deb >/dev/null
  # Debian's package installs the v2 binary as a CLI plugin; make it visible to every docker client on PATH.
  plugin=$(dpkg -L docker-compose | grep -E '/cli-plugins/docker-compose$' | head -1 || true)
  if [ -n "$plugin" ] && ! compose_ok; then
    mkdir -p /usr/local/lib/docker/cli-plugins
    ln -sf "$plugin" /usr/local/lib/docker/cli-plugins/docker-compose
  fi
  compose_ok || die "Compose v2 is still not available after installing docker-compose from trixie"
fi

log "engine $(docker version --format '{{.Server.Version}}' 2>/dev/null), $(docker compose version --short 2>/dev/null | sed 's/^/compose /')"
