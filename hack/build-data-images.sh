#!/usr/bin/env bash
# Kafka and Cassandra images for the kind end-to-end suite, made on this machine with no container registry from
# the same Maven Central jars the local stack runs (hack/sluice_stack: ~/.cache/sluice/kafka-<v>/lib and
# cassandra-<v>/lib), with the same log and JVM configuration:
#   1. sluice.local/jre:17: Debian bookworm (debootstrap --variant=minbase) with openjdk-17-jre-headless and tini,
#      imported with `docker import`; its root filesystem tarball is cached in ~/.cache/sluice/jre-image/;
#   2. sluice.local/kafka:$KAFKA_VERSION and sluice.local/cassandra:$CASSANDRA_VERSION: `docker build --network
#      none` of hack/images/<name>/Dockerfile on a context staged in ~/.cache/sluice/data-images/<name>/ (the jars
#      hard-linked from the stack's cache, fetched first with `sluice_stack provision <name>` when missing).
# Each image is labelled dev.sluice.inputs with a hash of everything that went into it (base, jars, files): an
# image whose label matches is kept, any other is rebuilt; --force rebuilds anyway (on the cached rootfs: delete
# ~/.cache/sluice/jre-image/ to remake that). What the entrypoints read from the environment is described at the
# top of hack/images/<name>/entrypoint.sh. Cold: about 2 minutes (debootstrap), then seconds per image.
#
#   hack/build-data-images.sh [--force] [jre] [kafka] [cassandra]   (default: kafka and cassandra, on the JRE base)
#
# Environment: SLUICE_DEBIAN_MIRROR (default http://deb.debian.org/debian), PYTHON (the venv's python, for the
# provisioning step; default .venv/bin/python).
. "$(dirname "$0")/lib.sh"
REPO_DIR="$(cd "$HACK_DIR/.." && pwd)"

JRE_IMAGE=sluice.local/jre:17
SUITE=bookworm
MIRROR=${SLUICE_DEBIAN_MIRROR:-http://deb.debian.org/debian}
PACKAGES=openjdk-17-jre-headless,tini
RECIPE=2   # bump when the rootfs steps below change, so the cached tarball is remade
PYTHON=${PYTHON:-$REPO_DIR/.venv/bin/python}

force=false
images=()
for arg in "$@"; do
  case $arg in
    --force) force=true ;;
    kafka | cassandra | jre) images+=("$arg") ;;
    *) echo "usage: $0 [--force] [jre] [kafka] [cassandra]" >&2; exit 2 ;;
  esac
done
[ ${#images[@]} -gt 0 ] || images=(kafka cassandra)

bash "$HACK_DIR/ensure-docker.sh"
started_all=$(date +%s)

# The current value of an image's label, or nothing when the image is missing.
label() { docker image inspect -f "{{index .Config.Labels \"$2\"}}" "$1" 2>/dev/null || true; }
size() { docker image inspect -f '{{.Size}}' "$1" | numfmt --to=iec --format=%.1f; }

# --- 1. the JRE base ---------------------------------------------------------------------------------------------
jre_cache="$SLUICE_CACHE/jre-image"
jre_key=$(printf '%s %s %s %s' "$SUITE" "$MIRROR" "$PACKAGES" "$RECIPE" | sha256sum | cut -c1-12)
jre_label="debootstrap-$SUITE-jre17-$jre_key"
jre_tarball="$jre_cache/rootfs-$SUITE-jre17-$jre_key.tar"

make_jre_rootfs() {
  [ -f "$jre_tarball" ] && return 0
  mkdir -p "$jre_cache"
  command -v debootstrap >/dev/null || {
    apt-get update -q
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends debootstrap
  }
  local root="$jre_cache/rootfs.tmp" t0
  t0=$(date +%s)
  rm -rf "$root" && mkdir -p "$root"
  log "debootstrap $SUITE ($PACKAGES) from $MIRROR"
  debootstrap --variant=minbase --include="$PACKAGES" "$SUITE" "$root" "$MIRROR" >"$jre_cache/debootstrap.log" 2>&1 || {
    tail -n 20 "$jre_cache/debootstrap.log" >&2
    return 1
  }
  # Slim: no package lists, caches, docs, man pages or translations, and dpkg keeps it that way for later
  # installs. Servers never draw text: no fonts either (the JRE's headless libraries do not need them).
  rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/* "$root"/var/cache/debconf/*-old \
    "$root"/usr/share/doc/* "$root"/usr/share/man/* "$root"/usr/share/info/* "$root"/usr/share/locale/* \
    "$root"/usr/share/fonts/* "$root"/var/log/*.log "$root"/var/log/apt/* "$root"/tmp/* "$root"/root/.cache
  # Nor what only javac (ct.sym) or heaps over 32 GB (the class data archive without compressed oops) use.
  rm -f "$root"/usr/lib/jvm/java-17-openjdk-*/lib/ct.sym "$root"/usr/lib/jvm/java-17-openjdk-*/lib/server/classes_nocoops.jsa
  cat >"$root/etc/dpkg/dpkg.cfg.d/slim" <<'CFG'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
CFG
  # JAVA_HOME and the exact JRE version, for the image's ENV and log line.
  dirname "$(dirname "$(readlink -f "$root/usr/bin/java")")" | sed "s|^$root||" >"$jre_cache/java-home.$jre_key"
  # shellcheck disable=SC2016
  chroot "$root" dpkg-query -W -f '${Version}' openjdk-17-jre-headless >"$jre_cache/java-version.$jre_key"
  tar -C "$root" --numeric-owner -cf "$jre_tarball.part" . && mv "$jre_tarball.part" "$jre_tarball"
  rm -rf "$root"
  find "$jre_cache" -maxdepth 1 -type f ! -name "*$jre_key*" ! -name debootstrap.log -delete  # earlier recipes
  log "cached $jre_tarball ($(du -h "$jre_tarball" | cut -f1)) in $(( $(date +%s) - t0 ))s"
}

ensure_jre() {
  if ! $force && [ "$(label "$JRE_IMAGE" dev.sluice.base-image)" = "$jre_label" ]; then
    return 0
  fi
  make_jre_rootfs
  local java_home java_version
  java_home=$(cat "$jre_cache/java-home.$jre_key")
  java_version=$(cat "$jre_cache/java-version.$jre_key")
  docker import \
    -c 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    -c 'ENV LANG=C.UTF-8' \
    -c "ENV JAVA_HOME=$java_home" \
    -c "ENV JAVA_VERSION=$java_version" \
    -c "LABEL dev.sluice.base-image=$jre_label" \
    -c 'CMD ["java", "-version"]' \
    "$jre_tarball" "$JRE_IMAGE" >/dev/null
  docker image prune -f --filter "label=dev.sluice.base-image" >/dev/null  # earlier imports, now untagged
  log "imported $JRE_IMAGE: Debian $SUITE, OpenJDK $java_version ($(size "$JRE_IMAGE"))"
}
with_lock jre-image ensure_jre

# --- 2. Kafka and Cassandra ----------------------------------------------------------------------------------------

# The jars the local stack runs, fetched once by its own provisioning (the same cache, lock and pom).
ensure_jars() {  # NAME VERSION
  local dir="$SLUICE_CACHE/$1-$2"
  [ -f "$dir/.done" ] && return 0
  [ -x "$PYTHON" ] || { echo "no $1 jars in $dir and no $PYTHON to fetch them: run \`make provision\`" >&2; exit 1; }
  log "no $1 jars in $dir yet: fetching them (sluice_stack provision $1)"
  (cd "$REPO_DIR" && PYTHONPATH=hack "$PYTHON" -m sluice_stack provision "$1") || {
    echo "fetching the $1 jars failed; \`make provision\` fetches them into $dir" >&2
    exit 1
  }
  [ -f "$dir/.done" ] || { echo "sluice_stack provision $1 left no $dir/.done" >&2; exit 1; }
}

# stage NAME LIB FILE...: the build context, the jars hard-linked (no copy of ~100 MB) and the files copied.
stage() {
  local name=$1 lib=$2; shift 2
  local context="$SLUICE_CACHE/data-images/$name/context"
  rm -rf "$context" && mkdir -p "$context/lib"
  cp -l "$lib"/*.jar "$context/lib/" 2>/dev/null || cp "$lib"/*.jar "$context/lib/"  # another filesystem: copy
  cp "$HACK_DIR/images/$name/Dockerfile" "$HACK_DIR/images/$name/entrypoint.sh" "$@" "$context/"
  chmod 0755 "$context/entrypoint.sh"
  echo "$context"
}

# The hash of a context: the jars by name and size (a Maven release never changes), every other file by content,
# and the base image it builds on.
inputs_key() {
  (
    cd "$1" || exit 1
    find lib -type f -printf '%p %s\n' | LC_ALL=C sort
    find . -path ./lib -prune -o -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum
    echo "$jre_label"
  ) | sha256sum | cut -c1-16
}

# cassandra.yaml for a pod, from the local stack's template: the same settings (one token, batch commitlog sync,
# no auth, no auto snapshot), with the addresses and the cluster name as placeholders the entrypoint fills in.
pod_cassandra_yaml() {  # SRC DEST
  # shellcheck disable=SC2016  # ${...} are the template's placeholders, not shell expansions
  sed -e 's|^cluster_name: .*|cluster_name: "${cluster_name}"|' \
      -e 's|^listen_address: ${address}$|listen_address: ${listen_address}\nbroadcast_address: ${broadcast_address}|' \
      -e 's|^rpc_address: ${address}$|rpc_address: ${rpc_address}\nbroadcast_rpc_address: ${broadcast_rpc_address}|' \
      -e 's|- seeds: "${seed}:${storage_port}"|- seeds: "${seeds}"|' \
      -e 's|^initial_token: ${initial_token}$|initial_token: 0|' \
      -e 's|^# Everything on loopback; the first node is the seed.|# The addresses and seeds come from the entrypoint.|' \
      -e '1,/^$/{/^#/d}' "$1" >"$2"
  local placeholder
  for placeholder in cluster_name listen_address broadcast_address rpc_address broadcast_rpc_address seeds \
      storage_port native_port dir; do
    grep -qF "\${$placeholder}" "$2" || {
      echo "hack/cassandra/cassandra.yaml changed: no \${$placeholder} in the pod's copy ($2); update $0" >&2
      exit 1
    }
  done
  grep -qE '127\.0\.0\.1|\$\{(address|seed|initial_token)\}' "$2" && {
    echo "a loopback address or a local-stack placeholder is left in the pod's cassandra.yaml ($2)" >&2; exit 1
  }
  sed -i '1i # hack/cassandra/cassandra.yaml with placeholders, made by hack/build-data-images.sh; hack/images/cassandra/entrypoint.sh fills them in.' "$2"
}

build_image() {  # NAME VERSION
  local name=$1 version=$2 image="sluice.local/$1:$2" lib="$SLUICE_CACHE/$1-$2/lib" context key t0 buildlog
  ensure_jars "$name" "$version"
  case $name in
    kafka) context=$(stage kafka "$lib" "$HACK_DIR/kafka/log4j2.properties") ;;
    cassandra)
      context=$(stage cassandra "$lib" "$HACK_DIR/cassandra/logback.xml" "$HACK_DIR/cassandra/jvm17.options")
      pod_cassandra_yaml "$HACK_DIR/cassandra/cassandra.yaml" "$context/cassandra.yaml.template"
      ;;
  esac
  key=$(inputs_key "$context")
  if ! $force && [ "$(label "$image" dev.sluice.inputs)" = "$key" ]; then
    log "$image is up to date (inputs $key, $(size "$image"))"
    return 0
  fi
  log "docker build $image ($(find "$context/lib" -name '*.jar' | wc -l) jars, inputs $key)"
  t0=$(date +%s)
  buildlog="$SLUICE_CACHE/data-images/$name/build.log"
  DOCKER_BUILDKIT=0 docker build --network none -t "$image" \
    --build-arg BASE_IMAGE="$JRE_IMAGE" --build-arg VERSION="$version" --build-arg INPUTS="$key" "$context" \
    >"$buildlog" 2>&1 || { tail -n 40 "$buildlog" >&2; echo "docker build failed: $buildlog" >&2; exit 1; }
  # Earlier builds of this image, now untagged, only take space.
  docker image prune -f --filter "label=org.opencontainers.image.title=sluice.local/$name" >/dev/null
  log "built $image in $(( $(date +%s) - t0 ))s ($(size "$image"))"
}

for name in "${images[@]}"; do
  case $name in
    kafka) with_lock data-image-kafka build_image kafka "$KAFKA_VERSION" ;;
    cassandra) with_lock data-image-cassandra build_image cassandra "$CASSANDRA_VERSION" ;;
    jre) ;;  # made above
  esac
done
log "data images ready in $(( $(date +%s) - started_all ))s"
