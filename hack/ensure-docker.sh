#!/usr/bin/env bash
# A Docker engine that answers `docker info`, from Debian's docker.io package. Idempotent: installs the
# package only if dockerd is missing and starts dockerd only if no engine answers.
#
# The engine is started without a bridge or iptables rules: every container this project runs uses
# `--network host` (traffic stays on 127.0.0.1) and image builds use `--network none` (they download nothing).
# A machine that already has a working engine (a GitHub runner, Docker Desktop) is left as it is.
set -euo pipefail

log=${SLUICE_DOCKERD_LOG:-/var/log/sluice-dockerd.log}

if docker info >/dev/null 2>&1; then
  exit 0
fi

if ! command -v dockerd >/dev/null || ! command -v docker >/dev/null; then
  if [ "$(id -u)" != 0 ]; then
    echo "ensure-docker: dockerd is missing; install Debian's docker.io (as root: apt-get install docker.io)" >&2
    exit 1
  fi
  echo "ensure-docker: installing docker.io from Debian" >&2
  apt-get update -q
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends docker.io
fi

# A dockerd that is alive (a killed one may linger as a zombie) is starting: wait for it rather than start another.
dockerd_alive() {
  local pid
  for pid in $(pgrep -x dockerd); do
    case $(ps -o stat= -p "$pid") in Z*) ;; *) return 0 ;; esac
  done
  return 1
}

if ! dockerd_alive; then
  echo "ensure-docker: starting dockerd (log: $log)" >&2
  setsid nohup dockerd --iptables=false --ip6tables=false --bridge=none >"$log" 2>&1 </dev/null &
fi

for _ in $(seq 60); do
  if docker info >/dev/null 2>&1; then
    exit 0
  fi
  sleep 1
done
echo "ensure-docker: dockerd did not answer within 60s; the tail of $log:" >&2
tail -n 30 "$log" >&2 || true
exit 1
