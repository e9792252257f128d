#!/usr/bin/env bash
# A kind node image ($KIND_NODE_IMAGE, Kubernetes v$KUBERNETES_VERSION) made without any container registry:
# every binary from the Go module proxy, every file system from Debian's mirror, and kind's own
# `kind build node-image --type file` to put them together.
#
#   1. host tools (debootstrap, gcc for the static pause binary) from Debian if missing; a Docker engine
#      (hack/ensure-docker.sh, which also fixes machines that lack CAP_SYS_RESOURCE);
#   2. debootstrap rootfs tarballs, cached in $SLUICE_CACHE/kind-node/: the node (bookworm minbase, the
#      packages of kind's base image, Debian's containerd 1.6, runc and CNI plugins) and a small iptables one
#      for kube-proxy; a busybox image from Debian's busybox-static;
#   3. Go builds (hack/build-kubernetes.sh, cached in $SLUICE_CACHE/<name>-<version>/): kind, kubectl,
#      kubelet/kubeadm/kube-proxy, the control plane, etcd at kubeadm's tag, CoreDNS, crictl and
#      local-path-provisioner; pause from pause.c in the k8s.io/kubernetes module;
#   4. the base image (what kind's images/base/Dockerfile makes, files from the sigs.k8s.io/kind module): with
#      containerd's restrict_oom_score_adj, a `ctr` shim for the offline builder (hack/kind/ctr) and a static
#      CNI config (hack/kind/10-sluice-ptp.conflist: kind's kindnetd cannot be built offline);
#   5. one image per component under the exact name kubeadm (and kind's storage manifest, and containerd's
#      sandbox setting) asks for, packed as a kubernetes-server tarball;
#   6. `kind build node-image`, then one small layer: a default CNI manifest with nothing to install
#      (hack/kind/default-cni.yaml), for clusters created without networking.disableDefaultCNI.
#
# Single-node clusters (the CNI config has one fixed pod range). Nothing is done when the image exists
# (--force rebuilds it, reusing the caches: about a minute). Cold, on 2 busy cores with the Go module cache
# already filled: about 13 min, 11 of them Go builds.
#
#   hack/build-kind-node.sh [--force]
. "$(dirname "$0")/lib.sh"
export PATH=/usr/local/go/bin:$PATH

IMAGE=$KIND_NODE_IMAGE
SUITE=bookworm
MIRROR=${SLUICE_DEBIAN_MIRROR:-http://deb.debian.org/debian}
# kind's images/base/Dockerfile packages (without nfs-common and open-iscsi), systemd-sysv for /sbin/init,
# dbus for systemd, socat for `kubectl port-forward`, and Debian's container runtime and CNI plugins.
NODE_PACKAGES=systemd,systemd-sysv,dbus,conntrack,iptables,nftables,iproute2,ethtool,util-linux,mount,kmod
NODE_PACKAGES+=,libseccomp2,pigz,fuse-overlayfs,bash,ca-certificates,curl,jq,procps,socat
NODE_PACKAGES+=,containerd,runc,containernetworking-plugins
IPTABLES_PACKAGES=iptables,nftables,conntrack,iproute2
RECIPE=1   # bump when the steps below change, so that cached rootfs tarballs and images are remade

force=false
[ "${1:-}" = --force ] && force=true

cache="$SLUICE_CACHE/kind-node"
logs="$cache/logs"
mkdir -p "$cache" "$logs"
export DOCKER_BUILDKIT=0

timings=()
# step TITLE CMD...: run CMD, log how long it took and keep that for the summary.
step() {
  local title=$1; shift
  local started; started=$(date +%s)
  log "-- $title"
  "$@"
  local took=$(($(date +%s) - started))
  timings+=("$(printf '%5ss  %s' "$took" "$title")")
  log "   $title: ${took}s"
}

# quiet LOG CMD...: run CMD with its output in $logs/LOG; on failure show the tail of it.
quiet() {
  local file="$logs/$1"; shift
  if ! "$@" >"$file" 2>&1; then
    tail -n 30 "$file" >&2
    log "failed: $* (log: $file)"
    return 1
  fi
}

key_of() { printf '%s\n' "$@" | sha256sum | cut -c1-12; }
size_of() { docker image inspect -f '{{.Size}}' "$1" | numfmt --to=iec --format=%.1f; }

host_tools() {
  local missing=()
  command -v debootstrap >/dev/null || missing+=(debootstrap)
  command -v gcc >/dev/null || missing+=(gcc)
  [ -f /usr/include/stdio.h ] && dpkg -s libc6-dev >/dev/null 2>&1 || missing+=(libc6-dev)
  command -v strip >/dev/null || missing+=(binutils)
  command -v jq >/dev/null || missing+=(jq)
  if [ ${#missing[@]} -gt 0 ]; then
    log "installing ${missing[*]} from Debian"
    apt-get update -q >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
  fi
}

# rootfs NAME PACKAGES: $cache/rootfs-NAME-<key>.tar, a slimmed debootstrap --variant=minbase of PACKAGES.
rootfs_tar() {
  local name=$1 packages=$2
  echo "$cache/rootfs-$name-$(key_of "$SUITE" "$MIRROR" "$packages" "$RECIPE").tar"
}
make_rootfs() {
  local name=$1 packages=$2 tarball root
  tarball=$(rootfs_tar "$name" "$packages")
  [ -f "$tarball" ] && return 0
  root="$cache/rootfs-$name.tmp"
  rm -rf "$root" && mkdir -p "$root"
  log "   debootstrap $SUITE ($packages) from $MIRROR"
  quiet "debootstrap-$name.log" debootstrap --variant=minbase --include="$packages" "$SUITE" "$root" "$MIRROR"
  # Slim, as kind's clean-install does: no package lists, downloaded .debs, docs, man pages or logs.
  rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/* "$root"/var/cache/debconf/*-old \
    "$root"/usr/share/doc/* "$root"/usr/share/man/* "$root"/usr/share/info/* "$root"/usr/share/locale/* \
    "$root"/var/log/* "$root"/tmp/* "$root"/var/tmp/* "$root"/root/.cache
  : >"$root/etc/machine-id"   # made at boot (kind's entrypoint)
  tar -C "$root" --numeric-owner -cf "$tarball.part" . && mv "$tarball.part" "$tarball"
  rm -rf "$root"
  log "   cached $tarball ($(du -h "$tarball" | cut -f1))"
}

# import_rootfs NAME PACKAGES TAG: the cached rootfs tarball as a docker image.
import_rootfs() {
  docker image inspect "$3" >/dev/null 2>&1 && return 0
  docker import -c 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    "$(rootfs_tar "$1" "$2")" "$3" >/dev/null
}

# The busybox image: Debian's busybox-static, each applet a link in /bin. Base of the component images and
# handy for test pods (its wget crashes on name lookups, static glibc; use nc).
BUSYBOX_IMAGE=''
busybox_image() {
  local debs="$cache/debs" deb version root
  mkdir -p "$debs"
  deb=$(find "$debs" -name 'busybox-static_*.deb' | sort | tail -n 1)
  if [ -z "$deb" ]; then
    (cd "$debs" && { apt-get download busybox-static >/dev/null 2>&1 ||
      { apt-get update -q >/dev/null && apt-get download busybox-static >/dev/null; }; })
    deb=$(find "$debs" -name 'busybox-static_*.deb' | sort | tail -n 1)
  fi
  version=$(dpkg-deb -f "$deb" Version)   # e.g. 1:1.35.0-4+b3
  version=${version#*:}; version=${version%%-*}
  BUSYBOX_IMAGE=sluice.local/busybox:$version
  docker image inspect "$BUSYBOX_IMAGE" >/dev/null 2>&1 && return 0
  root="$cache/busybox.tmp"
  rm -rf "$root" && mkdir -p "$root/bb" "$root/fs"/{bin,etc,tmp,root,proc,sys,dev,var}
  dpkg-deb -x "$deb" "$root/bb"
  install -m 0755 "$root/bb/bin/busybox" "$root/fs/bin/busybox"
  local applet
  for applet in $("$root/fs/bin/busybox" --list); do
    [ "$applet" = busybox ] || ln -s busybox "$root/fs/bin/$applet"
  done
  chmod 1777 "$root/fs/tmp"
  printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n' >"$root/fs/etc/passwd"
  printf 'root:x:0:\nnogroup:x:65534:\n' >"$root/fs/etc/group"
  tar -C "$root/fs" --numeric-owner -c . | docker import \
    -c 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' -c 'CMD ["/bin/sh"]' \
    -c "LABEL dev.sluice.busybox=debian-busybox-static-$version" - "$BUSYBOX_IMAGE" >/dev/null
  rm -rf "$root"
}

build_go() {
  local target
  for target in "$@"; do
    step "go: $target" quiet "go-$target.log" bash "$HACK_DIR/build-kubernetes.sh" "$target"
  done
}

# pause: build/pause/linux/pause.c of the k8s.io/kubernetes module (downloaded by the Kubernetes builds).
PAUSE=''
build_pause() {
  local tag=$1 src
  PAUSE="$cache/pause-$tag"
  [ -x "$PAUSE" ] && return 0
  src="$(go env GOMODCACHE)/k8s.io/kubernetes@v$KUBERNETES_VERSION/build/pause/linux/pause.c"
  gcc -Os -Wall -Werror -static -DVERSION="v$tag-sluice" -o "$PAUSE.part" "$src"
  strip "$PAUSE.part" && mv "$PAUSE.part" "$PAUSE"
}

KIND_FILES='' KIND_SRC=''
kind_files() {
  local dir
  dir=$(cd "$cache" && GOFLAGS=-mod=mod go mod download -json "sigs.k8s.io/kind@v$KIND_VERSION" | jq -r .Dir)
  KIND_FILES="$dir/images/base/files"
  KIND_SRC=$dir
  [ -f "$KIND_FILES/usr/local/bin/entrypoint" ]
}

# The base image: kind's images/base/Dockerfile over the debootstrapped rootfs, Debian's containerd for the
# one kind builds from source, and three changes for this offline, capability-poor setting.
base_image() {
  local tag=$1 rootfs_image=$2 ctx="$cache/base-context"
  docker image inspect "$tag" >/dev/null 2>&1 && return 0
  import_rootfs node "$NODE_PACKAGES" "$rootfs_image"
  rm -rf "$ctx" && mkdir -p "$ctx"/usr/local/bin "$ctx"/kind/bin "$ctx"/LICENSES "$ctx"/etc/cni/net.d
  local f=$KIND_FILES
  install -m 0755 "$f"/usr/local/bin/* "$ctx/usr/local/bin/"
  cp -r "$f/kind/." "$ctx/kind/" && chmod -R u+w,go-w "$ctx/kind" && chmod 0755 "$ctx/kind/bin"/*
  install -m 0644 "$f"/LICENSES/* "$ctx/LICENSES/"
  (cd "$f/etc" && find . -type f) | while read -r file; do
    install -D -m 0644 "$f/etc/$file" "$ctx/etc/$file"
  done
  # No containerd-fuse-overlayfs-grpc in Debian; the unit is only for rootless nodes.
  rm -f "$ctx/etc/systemd/system/containerd-fuse-overlayfs.service"
  install -m 0755 "$SLUICE_CACHE/crictl-$CRICTL_VERSION/bin/crictl" "$ctx/usr/local/bin/"
  install -m 0755 "$HACK_DIR/kind/ctr" "$ctx/usr/local/bin/ctr"
  install -m 0644 "$HACK_DIR/kind/10-sluice-ptp.conflist" "$ctx/etc/cni/net.d/"
  cat >"$ctx/Dockerfile" <<EOF
# kind v$KIND_VERSION's images/base/Dockerfile, offline: written by hack/build-kind-node.sh
FROM $rootfs_image
COPY usr/local/bin/ /usr/local/bin/
COPY kind/ /kind/
COPY LICENSES/ /LICENSES/
COPY etc/ /etc/
# - kind's units run /usr/local/bin/containerd (Debian installs /usr/bin/containerd) and containerd looks for
#   CNI plugins in /opt/cni/bin (Debian: /usr/lib/cni);
# - restrict_oom_score_adj: where CAP_SYS_RESOURCE is missing (hack/ensure-docker.sh) nothing in the node may
#   lower an oom_score_adj, and runc fails every pod sandbox ("can't get final child's PID from pipe: EOF")
#   unless containerd clamps the values kubelet asks for (kind's entrypoint does the same for rootless nodes);
# - the rest is kind's Dockerfile: systemd as init in a container, the units enabled, cri-base.json.
RUN set -eux; \\
    ln -sf /usr/bin/containerd /usr/local/bin/containerd; \\
    mkdir -p /opt/cni/bin /etc/kubernetes/manifests; \\
    for p in /usr/lib/cni/*; do ln -sf "\$p" /opt/cni/bin/; done; \\
    sed -i 's/restrict_oom_score_adj = false/restrict_oom_score_adj = true/' /etc/containerd/config.toml; \\
    grep -q 'restrict_oom_score_adj = true' /etc/containerd/config.toml; \\
    find /lib/systemd/system/sysinit.target.wants/ -name systemd-tmpfiles-setup.service -delete; \\
    rm -f /lib/systemd/system/multi-user.target.wants/* /etc/systemd/system/*.wants/* \\
      /lib/systemd/system/local-fs.target.wants/* /lib/systemd/system/sockets.target.wants/*udev* \\
      /lib/systemd/system/sockets.target.wants/*initctl* /lib/systemd/system/basic.target.wants/*; \\
    echo ReadKMsg=no >>/etc/systemd/journald.conf; \\
    systemctl enable kubelet.service containerd.service undo-mount-hacks.service; \\
    systemctl mask systemd-binfmt.service; \\
    /usr/bin/ctr oci spec \\
      | jq '.hooks.createContainer[.hooks.createContainer | length] |= . + {"path": "/kind/bin/mount-product-files.sh"}' \\
      | jq 'del(.process.rlimits)' >/etc/containerd/cri-base.json; \\
    containerd --version; runc --version
ENV container=docker
STOPSIGNAL SIGRTMIN+3
LABEL dev.sluice.kind-base="kind v$KIND_VERSION, Debian $SUITE"
ENTRYPOINT ["/usr/local/bin/entrypoint", "/sbin/init"]
EOF
  quiet base-image.log docker build --network none -t "$tag" "$ctx"
  docker rmi "$rootfs_image" >/dev/null   # its layer stays, as the base image's parent
  rm -rf "$ctx"
}

# The image kube-proxy runs in: Debian's iptables and conntrack behind an iptables wrapper that picks the
# backend the node uses.
iptables_image() {
  local tag=$1 rootfs_image=$2 ctx="$cache/iptables-context"
  docker image inspect "$tag" >/dev/null 2>&1 && return 0
  import_rootfs iptables "$IPTABLES_PACKAGES" "$rootfs_image"
  rm -rf "$ctx" && mkdir -p "$ctx"
  install -m 0755 "$HACK_DIR/kind/iptables-wrapper" "$ctx/"
  cat >"$ctx/Dockerfile" <<EOF
FROM $rootfs_image
COPY iptables-wrapper /usr/sbin/iptables-wrapper
RUN for n in iptables iptables-save iptables-restore ip6tables ip6tables-save ip6tables-restore; do \\
      ln -sf iptables-wrapper /usr/sbin/\$n; \\
    done
EOF
  quiet iptables-image.log docker build --network none -t "$tag" "$ctx"
  docker rmi "$rootfs_image" >/dev/null
  rm -rf "$ctx"
}

# component TAG BASE BINARY DEST [ENTRYPOINT-JSON]: a one-binary image.
component() {
  local tag=$1 base=$2 binary=$3 dest=$4 entrypoint=${5:-} ctx
  ctx="$cache/component-context"
  rm -rf "$ctx" && mkdir -p "$ctx"
  cp "$binary" "$ctx/"
  {
    echo "FROM $base"
    echo "COPY $(basename "$binary") $dest"
    [ -z "$entrypoint" ] || echo "ENTRYPOINT $entrypoint"
    echo "LABEL dev.sluice.kind-node-component=$(basename "$binary")"
  } >"$ctx/Dockerfile"
  quiet "component.log" docker build --network none -t "$tag" "$ctx"
  rm -rf "$ctx"
  log "   $tag ($(size_of "$tag"))"
}

# The images, exactly as named by kubeadm, kind's storage manifest and containerd's sandbox_image, packed
# with kubeadm/kubelet/kubectl in the layout `kind build node-image --type file` reads:
#   kubernetes/version, kubernetes/server/bin/{kubeadm,kubelet,kubectl,<component>.tar}.
# kind side-loads only kube-{apiserver,controller-manager,scheduler,proxy}.tar: the other images ride in
# kube-proxy.tar, a multi-image archive (the builder's `ctr content fetch` of them is a no-op, hack/kind/ctr).
SERVER_TARBALL="$cache/kubernetes-server-linux-amd64.tar.gz"
component_images() {
  local v=v$KUBERNETES_VERSION node="$SLUICE_CACHE/kubernetes-node-$KUBERNETES_VERSION/bin"
  local cp="$SLUICE_CACHE/kubernetes-$KUBERNETES_VERSION/bin"
  local wanted etcd coredns pause sandbox provisioner helper
  wanted=$("$node/kubeadm" config images list --kubernetes-version "$v")
  etcd=$(grep /etcd: <<<"$wanted" || true)
  coredns=$(grep /coredns: <<<"$wanted" || true)
  pause=$(grep /pause: <<<"$wanted" || true)
  sandbox=$(sed -n 's/^ *sandbox_image = "\(.*\)"/\1/p' "$KIND_FILES/etc/containerd/config.toml")
  provisioner=$(sed -n 's/^const storageProvisionerImage = "\(.*\)"/\1/p' "$KIND_SRC/pkg/build/nodeimage/const_storage.go")
  helper=$(sed -n 's/^const storageHelperImage = "\(.*\)"/\1/p' "$KIND_SRC/pkg/build/nodeimage/const_storage.go")
  [ "$etcd" = "registry.k8s.io/etcd:$KIND_NODE_ETCD_VERSION-0" ] || {
    log "kubeadm wants $etcd, versions.env has KIND_NODE_ETCD_VERSION=$KIND_NODE_ETCD_VERSION"; return 1; }
  [ "$coredns" = "registry.k8s.io/coredns/coredns:v$COREDNS_VERSION" ] || {
    log "kubeadm wants $coredns, versions.env has COREDNS_VERSION=$COREDNS_VERSION"; return 1; }
  if [ -z "$pause" ] || [ -z "$sandbox" ] || [ -z "$provisioner" ] || [ -z "$helper" ]; then
    log "could not read the pause, sandbox or storage image names"; return 1
  fi
  log "   images: $(echo "$wanted" "$sandbox" "$provisioner" "$helper" | tr '\n' ' ')"

  local c
  for c in kube-apiserver kube-controller-manager kube-scheduler; do
    component "registry.k8s.io/$c:$v" "$BUSYBOX_IMAGE" "$cp/$c" "/usr/local/bin/$c"
  done
  component "registry.k8s.io/kube-proxy:$v" "$IPTABLES_IMAGE" "$node/kube-proxy" /usr/local/bin/kube-proxy
  component "$etcd" "$BUSYBOX_IMAGE" "$SLUICE_CACHE/etcd-$KIND_NODE_ETCD_VERSION/bin/etcd" /usr/local/bin/etcd
  component "$coredns" "$BUSYBOX_IMAGE" "$SLUICE_CACHE/coredns-$COREDNS_VERSION/bin/coredns" /coredns '["/coredns"]'
  build_pause "${pause##*:}"
  component "$pause" scratch "$PAUSE" /pause '["/pause"]'
  [ "$sandbox" = "$pause" ] || docker tag "$pause" "$sandbox"
  component "$provisioner" "$BUSYBOX_IMAGE" \
    "$SLUICE_CACHE/local-path-provisioner-$LOCAL_PATH_PROVISIONER_VERSION/bin/local-path-provisioner" \
    /usr/local/bin/local-path-provisioner
  docker tag "$BUSYBOX_IMAGE" "$helper"   # the helper pod runs mkdir/rm under sh

  local tree="$cache/server.tmp" bin
  rm -rf "$tree" && bin="$tree/kubernetes/server/bin" && mkdir -p "$bin"
  echo "$v" >"$tree/kubernetes/version"
  install -m 0755 "$node/kubeadm" "$node/kubelet" "$cp/kubectl" "$bin/"
  for c in kube-apiserver kube-controller-manager kube-scheduler; do
    docker save -o "$bin/$c.tar" "registry.k8s.io/$c:$v"
  done
  local extra=("$etcd" "$coredns" "$pause" "$provisioner" "$helper")
  [ "$sandbox" = "$pause" ] || extra+=("$sandbox")
  docker save -o "$bin/kube-proxy.tar" "registry.k8s.io/kube-proxy:$v" "${extra[@]}"
  tar -C "$tree" -c kubernetes | gzip -1 >"$SERVER_TARBALL.part" && mv "$SERVER_TARBALL.part" "$SERVER_TARBALL"
  rm -rf "$tree"
  # They live on in the tarball and the node image; the engine needs no copies (the busybox image stays).
  docker rmi "registry.k8s.io/kube-apiserver:$v" "registry.k8s.io/kube-controller-manager:$v" \
    "registry.k8s.io/kube-scheduler:$v" "registry.k8s.io/kube-proxy:$v" "${extra[@]}" >/dev/null
  log "   $SERVER_TARBALL ($(du -h "$SERVER_TARBALL" | cut -f1))"
}

node_image() {
  local kind="$SLUICE_CACHE/kind-$KIND_VERSION/bin/kind" built="$IMAGE-kind-build" ctx="$cache/node-context"
  # kind first tries `docker pull` of the base image (a few seconds lost offline), then goes on.
  quiet kind-build-node-image.log "$kind" build node-image --type file --base-image "$BASE_IMAGE" \
    --image "$built" "$SERVER_TARBALL"
  rm -rf "$ctx" && mkdir -p "$ctx"
  install -m 0644 "$HACK_DIR/kind/default-cni.yaml" "$ctx/"
  printf '%s\n' "FROM $built" "COPY default-cni.yaml /kind/manifests/default-cni.yaml" \
    "LABEL dev.sluice.kind-node=\"Kubernetes v$KUBERNETES_VERSION, kind v$KIND_VERSION, base $BASE_IMAGE\"" \
    >"$ctx/Dockerfile"
  local previous; previous=$(docker image inspect -f '{{.Id}}' "$IMAGE" 2>/dev/null || true)
  quiet node-image.log docker build --network none -t "$IMAGE" "$ctx"
  docker rmi "$built" >/dev/null
  # A node image this one replaced (--force) only takes space, unless a container still uses it.
  if [ -n "$previous" ] && [ "$previous" != "$(docker image inspect -f '{{.Id}}' "$IMAGE")" ]; then
    docker rmi "$previous" >/dev/null 2>&1 || true
  fi
  rm -rf "$ctx" "$SERVER_TARBALL"
}

main() {
  bash "$HACK_DIR/ensure-docker.sh"
  if ! $force && docker image inspect "$IMAGE" >/dev/null 2>&1; then
    log "$IMAGE is present ($(size_of "$IMAGE")); --force rebuilds it"
    return 0
  fi
  local started; started=$(date +%s)
  step "host tools" host_tools
  step "rootfs: node" make_rootfs node "$NODE_PACKAGES"
  step "rootfs: iptables" make_rootfs iptables "$IPTABLES_PACKAGES"
  build_go kind crictl local-path-provisioner kind-node-etcd coredns kubernetes node
  step "kind's base files" kind_files
  step "busybox image" busybox_image

  local files_key
  files_key=$(cat "$HACK_DIR/kind/ctr" "$HACK_DIR/kind/10-sluice-ptp.conflist" "$HACK_DIR/kind/iptables-wrapper" |
    sha256sum | cut -c1-8)
  local node_key iptables_key
  node_key=$(key_of "$(basename "$(rootfs_tar node "$NODE_PACKAGES")")" "$KIND_VERSION" "$CRICTL_VERSION" "$files_key")
  iptables_key=$(key_of "$(basename "$(rootfs_tar iptables "$IPTABLES_PACKAGES")")" "$files_key")
  BASE_IMAGE=sluice.local/kind-base:$SUITE-$node_key
  IPTABLES_IMAGE=sluice.local/kind-iptables:$SUITE-$iptables_key
  step "base image $BASE_IMAGE" base_image "$BASE_IMAGE" "sluice.local/kind-rootfs:$SUITE-$node_key"
  step "iptables image $IPTABLES_IMAGE" iptables_image "$IPTABLES_IMAGE" \
    "sluice.local/kind-iptables-rootfs:$SUITE-$iptables_key"
  step "component images and server tarball" component_images
  step "kind build node-image $IMAGE" node_image

  log "built $IMAGE ($(size_of "$IMAGE"); base $(size_of "$BASE_IMAGE")) in $(($(date +%s) - started))s:"
  printf '%s\n' "${timings[@]}" | tee "$logs/timings.txt" >&2
}

with_lock kind-node main
