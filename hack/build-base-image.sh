#!/usr/bin/env bash
# A local stand-in for the official `python:3.11-slim-bookworm` image, for machines that reach no container
# registry: Debian bookworm (debootstrap --variant=minbase) with Debian's python3 (3.11), python3-venv, tini
# and ca-certificates, imported under the official name so that Dockerfile.worker and Dockerfile.operator
# build unchanged. `python` and `python3` are on PATH in /usr/local/bin, as in the official image.
#
# The root filesystem tarball is cached in ~/.cache/sluice/base-image/ (about 40 s to make on first use).
# An image already present under that name (the real one, pulled, or an earlier stand-in) is kept;
# --force re-imports the stand-in.
#
#   hack/build-base-image.sh [--force]
. "$(dirname "$0")/lib.sh"

IMAGE=python:3.11-slim-bookworm
SUITE=bookworm
MIRROR=${SLUICE_DEBIAN_MIRROR:-http://deb.debian.org/debian}
PACKAGES=python3,python3-venv,tini,ca-certificates
RECIPE=2   # bump when the steps below change, so the cached tarball is remade

force=false
[ "${1:-}" = --force ] && force=true

bash "$HACK_DIR/ensure-docker.sh"
if ! $force && docker image inspect "$IMAGE" >/dev/null 2>&1; then
  log "$IMAGE is present ($(docker image inspect -f '{{index .Config.Labels "dev.sluice.base-image"}}' "$IMAGE" \
    2>/dev/null || true)); --force re-imports the local stand-in"
  exit 0
fi

cache="$SLUICE_CACHE/base-image"
key=$(printf '%s %s %s %s' "$SUITE" "$MIRROR" "$PACKAGES" "$RECIPE" | sha256sum | cut -c1-12)
tarball="$cache/rootfs-$SUITE-$key.tar"

make_rootfs() {
  [ -f "$tarball" ] && return 0
  command -v debootstrap >/dev/null || {
    apt-get update -q
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends debootstrap
  }
  local root="$cache/rootfs.tmp"
  rm -rf "$root" && mkdir -p "$root"
  log "debootstrap $SUITE ($PACKAGES) from $MIRROR"
  debootstrap --variant=minbase --include="$PACKAGES" "$SUITE" "$root" "$MIRROR" >"$cache/debootstrap.log" 2>&1 || {
    tail -n 20 "$cache/debootstrap.log" >&2
    return 1
  }
  # `python` and `python3` where the official image has them.
  ln -sf /usr/bin/python3 "$root/usr/local/bin/python3"
  ln -sf /usr/bin/python3 "$root/usr/local/bin/python"
  # Slim: no package lists, caches, docs or man pages, and dpkg keeps it that way for later installs.
  rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/* "$root"/var/cache/debconf/*-old \
    "$root"/usr/share/doc/* "$root"/usr/share/man/* "$root"/usr/share/info/* "$root"/var/log/*.log \
    "$root"/tmp/* "$root"/root/.cache
  cat >"$root/etc/dpkg/dpkg.cfg.d/slim" <<'CFG'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
CFG
  chroot "$root" python3 -c 'import platform; print(platform.python_version())' >"$cache/python-version.$key"
  tar -C "$root" --numeric-owner -cf "$tarball.part" . && mv "$tarball.part" "$tarball"
  rm -rf "$root"
  log "cached $tarball ($(du -h "$tarball" | cut -f1))"
}
with_lock base-image make_rootfs

python_version=$(cat "$cache/python-version.$key")
docker import \
  -c 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  -c 'ENV LANG=C.UTF-8' \
  -c "ENV PYTHON_VERSION=$python_version" \
  -c "LABEL dev.sluice.base-image=debootstrap-$SUITE-$key" \
  -c 'CMD ["python3"]' \
  "$tarball" "$IMAGE" >/dev/null
log "imported $IMAGE: local stand-in, Debian $SUITE, Python $python_version" \
  "($(docker image inspect -f '{{.Size}}' "$IMAGE" | numfmt --to=iec))"
