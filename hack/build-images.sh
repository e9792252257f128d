#!/usr/bin/env bash
# Builds the two images from wheels made on the host, so that no image build runs pip against an index:
#   1. a Docker engine (hack/ensure-docker.sh) and the base image (hack/build-base-image.sh, a local stand-in
#      for python:3.11-slim-bookworm when no registry is reachable);
#   2. build/wheelhouse/: the sluice wheel and every pinned dependency as wheels, with this venv's pip;
#   3. `docker build` of Dockerfile.worker and Dockerfile.operator, with no network at all when the base image
#      already has tini (the local stand-in does); the official base needs Debian's tini package. An image whose
#      label dev.sluice.inputs matches the hash of its inputs (Dockerfile, wheels, base, commit) is kept.
#
#   hack/build-images.sh [worker] [operator]       (default: both)
#
# Environment: SLUICE_IMAGE_TAG (default: the version in pyproject.toml), SLUICE_WORKER_IMAGE and
# SLUICE_OPERATOR_IMAGE (default: sluice-worker, sluice-operator), PIP (default: .venv/bin/pip).
. "$(dirname "$0")/lib.sh"
cd "$HACK_DIR/.."

images=("$@")
[ ${#images[@]} -gt 0 ] || images=(worker operator)

PIP=${PIP:-.venv/bin/pip}
PY=$(dirname "$PIP")/python
version=$("$PY" -c 'import tomllib; print(tomllib.load(open("pyproject.toml", "rb"))["project"]["version"])')
tag=${SLUICE_IMAGE_TAG:-$version}
revision=$(git rev-parse HEAD 2>/dev/null || echo unknown)
# Reproducible wheels and a `created` label that changes with the commit, not with every build.
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || date +%s)}
created=$(date -u -d "@$SOURCE_DATE_EPOCH" +%Y-%m-%dT%H:%M:%SZ)

# One build at a time in this tree: the wheelhouse is remade from scratch below.
mkdir -p build
exec {lock}>build/.build-images.lock
flock "$lock"

bash "$HACK_DIR/ensure-docker.sh"
bash "$HACK_DIR/build-base-image.sh"

# The wheelhouse: deps/ (pinned dependencies and two requirement files) and sluice/ (the project's wheel).
wheels=build/wheelhouse
rm -rf "$wheels" && mkdir -p "$wheels/deps" "$wheels/sluice"
"$PY" - "$wheels/deps" <<'PY'
import sys, tomllib
from pathlib import Path

OPERATOR_ONLY = {"kopf", "kubernetes"}  # the worker image leaves these out
deps = tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"]
out = Path(sys.argv[1])
(out / "requirements-operator.txt").write_text("".join(f"{d}\n" for d in deps))
worker = [d for d in deps if d.split("=")[0].split("[")[0].strip().lower() not in OPERATOR_ONLY]
(out / "requirements-worker.txt").write_text("".join(f"{d}\n" for d in worker))
PY
# The dependencies' wheels depend on the pins alone (pyproject.toml's and constraints.txt's for the rest):
# kept under ~/.cache/sluice by the pins' digest.
pins=$(cat "$wheels/deps/requirements-operator.txt" constraints.txt <("$PY" -c 'import sys; print(sys.version)') \
  | sha256sum | cut -c1-16)
deps_cache="$SLUICE_CACHE/wheelhouse/deps-$pins"
mkdir -p "$SLUICE_CACHE/wheelhouse"
exec {wheels_lock}>"$SLUICE_CACHE/wheelhouse.lock"
flock "$wheels_lock"  # two trees building at once make it once
if [ ! -d "$deps_cache" ]; then
  log "wheelhouse: dependencies"
  rm -rf "$deps_cache.tmp" && mkdir -p "$deps_cache.tmp"
  "$PIP" wheel -q --disable-pip-version-check --prefer-binary -w "$deps_cache.tmp" \
    -r "$wheels/deps/requirements-operator.txt" -c constraints.txt
  mv "$deps_cache.tmp" "$deps_cache"
fi
flock -u "$wheels_lock"
log "wheelhouse: dependencies from $deps_cache"
cp "$deps_cache"/*.whl "$wheels/deps/"
log "wheelhouse: sluice $version"
"$PIP" wheel -q --disable-pip-version-check --no-deps -w "$wheels/sluice" .

base=python:3.11-slim-bookworm
network=none
if ! docker run --rm --network none --entrypoint sh "$base" -c 'command -v tini' >/dev/null 2>&1; then
  network=default
  log "$base has no tini: the builds may reach Debian's mirror to install it"
fi

for image in "${images[@]}"; do
  case $image in
    worker) name=${SLUICE_WORKER_IMAGE:-sluice-worker} ;;
    operator) name=${SLUICE_OPERATOR_IMAGE:-sluice-operator} ;;
    *) echo "unknown image $image (worker or operator)" >&2; exit 2 ;;
  esac
  # Everything that goes into the image: kept when an image of that name already carries the same hash.
  key=$( { sha256sum "Dockerfile.$image" "$wheels"/deps/* "$wheels"/sluice/*
           echo "$base $(docker image inspect -f '{{.Id}}' "$base") $network $version $revision $created"; } |
         sha256sum | cut -c1-16)
  if [ "$(docker image inspect -f '{{index .Config.Labels "dev.sluice.inputs"}}' "$name:$tag" 2>/dev/null)" = "$key" ]; then
    log "$name:$tag is up to date (inputs $key)"
    continue
  fi
  log "docker build $name:$tag (Dockerfile.$image, inputs $key)"
  started=$(date +%s)
  buildlog=build/docker-build-$image.log
  DOCKER_BUILDKIT=0 docker build --network "$network" -f "Dockerfile.$image" -t "$name:$tag" \
    --build-arg VERSION="$version" --build-arg REVISION="$revision" --build-arg CREATED="$created" \
    --label dev.sluice.inputs="$key" . \
    >"$buildlog" 2>&1 || { tail -n 40 "$buildlog" >&2; echo "docker build failed: $buildlog" >&2; exit 1; }
  # Earlier builds of this image, now untagged, only take space (the build cache is kept).
  docker image prune -f --filter "label=org.opencontainers.image.title=$name" >/dev/null
  log "built $name:$tag in $(( $(date +%s) - started ))s" \
    "($(docker image inspect -f '{{.Size}}' "$name:$tag" | numfmt --to=iec --format=%.1f))"
done
