#!/usr/bin/env bash
# A Docker engine that answers `docker info`, from Debian's docker.io package. Idempotent: installs the
# package only if dockerd is missing and starts dockerd only if no engine answers.
#
# The engine is started without a bridge or iptables rules: every container this project runs uses
# `--network host` (traffic stays on 127.0.0.1) and image builds use `--network none` (they download nothing).
# kind works with these flags too: it makes its own network and publishes the API server on 127.0.0.1.
# A machine that already has a working engine (a GitHub runner, Docker Desktop) is left as it is.
#
# One exception: where the capability bounding set lacks CAP_SYS_RESOURCE (some VMs), every --privileged
# container (every kind node) fails with "unable to apply caps: operation not permitted". There dockerd must
# run with hack/kind/runc-nosysres as its default runtime (a runc wrapper that drops that capability from the
# container's spec); an engine running without it is restarted with it. Where the capability is present,
# nothing of this happens.
#
# An engine without iptables rules does no NAT, so nothing a container on one of its bridge networks (kind's)
# sends beyond this machine could be answered; such traffic (a pod's connection to a Service address before
# kube-proxy has written its rules, CoreDNS asking upstream) is refused at the bridge instead of leaving
# through the host's own route: fast failures for the senders, and nothing reaches other addresses.
set -euo pipefail

log=${SLUICE_DOCKERD_LOG:-/var/log/sluice-dockerd.log}
hack_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cache="${SLUICE_CACHE:-$HOME/.cache/sluice}/docker"
# The wrapper lives outside the repository and the cache: dockerd runs it on every container start, whichever
# clone (CI uses another folder) started the engine.
wrapper=/usr/local/libexec/sluice/runc-nosysres
runtime=runc-nosysres

# Bit 24 of CapBnd is CAP_SYS_RESOURCE.
needs_wrapper() {
  local bnd
  bnd=$(awk '/^CapBnd:/ {print $2}' /proc/self/status)
  [ -n "$bnd" ] && [ $(((16#$bnd >> 24) & 1)) = 0 ]
}

as_root() {
  if [ "$(id -u)" != 0 ]; then
    echo "ensure-docker: $1 needs root" >&2
    exit 1
  fi
}

apt_install() {
  as_root "installing $*"
  echo "ensure-docker: installing $* from Debian" >&2
  apt-get update -q
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$@"
}

# Copies the wrapper into place (a new file, so that a runc call in progress keeps the old one) and writes the
# daemon config that makes it the default runtime.
install_wrapper() {
  as_root "installing $wrapper"
  command -v jq >/dev/null || apt_install jq
  if ! cmp -s "$hack_dir/kind/runc-nosysres" "$wrapper"; then
    install -D -m 0755 "$hack_dir/kind/runc-nosysres" "$wrapper"
  fi
  mkdir -p "$cache"
  printf '{\n  "runtimes": {"%s": {"path": "%s"}},\n  "default-runtime": "%s"\n}\n' \
    "$runtime" "$wrapper" "$runtime" >"$cache/daemon.json"
}

# An engine started with --iptables=false (by this script): refuse forwarding out of its bridges (br-*) to
# anywhere but another bridge. Idempotent; needs root and iptables (a dependency of docker.io).
contain_bridges() {
  local pid tool
  [ "$(id -u)" = 0 ] || return 0
  for pid in $(pgrep -x dockerd); do
    tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q -- '--iptables=false' || continue
    for tool in iptables ip6tables; do
      command -v "$tool" >/dev/null || continue
      "$tool" -C FORWARD -i br-+ ! -o br-+ -j REJECT 2>/dev/null ||
        "$tool" -I FORWARD -i br-+ ! -o br-+ -j REJECT || true
    done
    return 0
  done
}

needs=false
if needs_wrapper; then
  needs=true
fi

if docker info >/dev/null 2>&1; then
  contain_bridges
  if ! $needs; then
    exit 0
  fi
  install_wrapper  # keeps the installed copy current
  if [ "$(docker info --format '{{.DefaultRuntime}}' 2>/dev/null)" = "$runtime" ]; then
    exit 0
  fi
  # An engine without the wrapper cannot run kind here: restart it with the wrapper.
  running=$(docker ps -q | wc -l)
  if [ -d /run/systemd/system ] && systemctl is-active --quiet docker.service 2>/dev/null; then
    echo "ensure-docker: this machine lacks CAP_SYS_RESOURCE; restarting docker.service with $runtime as" \
      "its default runtime (in /etc/docker/daemon.json; $running running container(s) stop)" >&2
    mkdir -p /etc/docker
    current=$(cat /etc/docker/daemon.json 2>/dev/null || echo '{}')
    jq -s '.[0] * .[1]' <(printf '%s' "$current") "$cache/daemon.json" >/etc/docker/daemon.json.sluice
    mv /etc/docker/daemon.json.sluice /etc/docker/daemon.json
    systemctl restart docker.service
  else
    pids=$(pgrep -x dockerd || true)
    echo "ensure-docker: this machine lacks CAP_SYS_RESOURCE and dockerd (pid ${pids//$'\n'/ }) runs without" \
      "$runtime: restarting it with that default runtime ($running running container(s) stop)" >&2
    for pid in $pids; do kill -TERM "$pid" 2>/dev/null || true; done
    for _ in $(seq 60); do
      alive=false
      for pid in $pids; do
        case $(ps -o stat= -p "$pid" 2>/dev/null || echo Z) in Z*) ;; *) alive=true ;; esac
      done
      $alive || break
      sleep 1
    done
    if $alive; then
      echo "ensure-docker: dockerd (pid ${pids//$'\n'/ }) did not stop within 60s" >&2
      exit 1
    fi
  fi
fi

if ! command -v dockerd >/dev/null || ! command -v docker >/dev/null; then
  if [ "$(id -u)" != 0 ]; then
    echo "ensure-docker: dockerd is missing; install Debian's docker.io (as root: apt-get install docker.io)" >&2
    exit 1
  fi
  apt_install docker.io
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
  config=()
  if $needs; then
    install_wrapper
    config=(--config-file "$cache/daemon.json")
    echo "ensure-docker: starting dockerd with $runtime as its default runtime (this machine lacks" \
      "CAP_SYS_RESOURCE; log: $log)" >&2
  else
    echo "ensure-docker: starting dockerd (log: $log)" >&2
  fi
  setsid nohup dockerd "${config[@]}" --iptables=false --ip6tables=false --bridge=none >"$log" 2>&1 </dev/null &
fi

for _ in $(seq 60); do
  if docker info >/dev/null 2>&1; then
    # An engine that was already starting when we looked may lack the wrapper: look once more.
    if $needs && [ -z "${SLUICE_ENSURE_DOCKER_AGAIN:-}" ] &&
      [ "$(docker info --format '{{.DefaultRuntime}}' 2>/dev/null)" != "$runtime" ]; then
      SLUICE_ENSURE_DOCKER_AGAIN=1 exec bash "$0" "$@"
    fi
    contain_bridges
    exit 0
  fi
  sleep 1
done
echo "ensure-docker: dockerd did not answer within 60s; the tail of $log:" >&2
tail -n 30 "$log" >&2 || true
exit 1
