#!/usr/bin/env bash
# Builds etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kubectl, helm and kwok from the Go
# module proxy into $SLUICE_CACHE/<component>-<version>/bin. Idempotent: a finished build is reused.
#
# Also, for the offline kind node image (hack/build-kind-node.sh; not part of `all`): `node` (kubelet, kubeadm,
# kube-proxy into kubernetes-node-<version>), `kind-node-etcd` (etcd at the tag kubeadm asks for),
# `crictl`, `coredns`, `local-path-provisioner` and `kind`.
. "$(dirname "$0")/lib.sh"
export GOFLAGS="${GOFLAGS:--buildvcs=false} -trimpath"
export CGO_ENABLED=0

# build_kube NAME BINARY...: k8s.io/kubernetes/cmd/BINARY for each BINARY into $SLUICE_CACHE/NAME-<version>/bin,
# through a wrapper module that requires k8s.io/kubernetes (which cannot be `go install`ed: it replaces its
# staging modules with local paths).
build_kube() {
  local name=$1; shift
  local bins=("$@")
  local out="$SLUICE_CACHE/$name-$KUBERNETES_VERSION"
  if [ -f "$out/.done" ]; then return 0; fi
  log "building ${bins[*]} of Kubernetes v$KUBERNETES_VERSION (cold: many minutes on 2 cores)"
  local mod="$out/src"; rm -rf "$mod"; mkdir -p "$mod" "$out/bin"
  local minor=${KUBERNETES_VERSION#*.}; minor=${minor%%.*}
  (
    cd "$mod"
    go mod init "sluice.dev/hack/$name" >/dev/null 2>&1
    go mod download -json "k8s.io/kubernetes@v$KUBERNETES_VERSION" >/dev/null
    local upstream; upstream="$(go env GOMODCACHE)/k8s.io/kubernetes@v$KUBERNETES_VERSION/go.mod"
    # k8s.io/kubernetes replaces each staging module with ./staging/...: pin each to its published v0.N.P.
    {
      echo "require k8s.io/kubernetes v$KUBERNETES_VERSION"
      echo "replace ("
      awk '/=> \.\/staging\/src\// {print "\t" $1 " => " $1 " v0.'"${KUBERNETES_VERSION#*.}"'"}' "$upstream"
      echo ")"
    } >>go.mod
    {
      printf '//go:build tools\n\npackage tools\n\nimport (\n'
      printf '\t_ "k8s.io/kubernetes/cmd/%s"\n' "${bins[@]}"
      printf ')\n'
    } >tools.go
    go mod tidy -e >/dev/null 2>&1 || true
    go mod download
    local date; date=$(date -u +%Y-%m-%dT%H:%M:%SZ)
    local ld=""
    for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
      ld+=" -X $pkg.gitVersion=v$KUBERNETES_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
      ld+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=$date"
    done
    for b in "${bins[@]}"; do
      log "  go build $b"
      go build -tags tools -ldflags "-s -w $ld" -o "$out/bin/$b" "k8s.io/kubernetes/cmd/$b"
    done
  )
  touch "$out/.done"
}

# build_etcd VERSION: etcd's server module through a wrapper module, into $SLUICE_CACHE/etcd-VERSION/bin.
build_etcd() {
  local version=$1
  local out="$SLUICE_CACHE/etcd-$version"
  if [ -f "$out/.done" ]; then return 0; fi
  log "building etcd v$version"
  local mod="$out/src"; rm -rf "$mod"; mkdir -p "$mod" "$out/bin"
  (
    cd "$mod"
    go mod init sluice.dev/hack/etcd >/dev/null 2>&1
    printf '//go:build tools\n\npackage tools\n\nimport _ "go.etcd.io/etcd/server/v3"\n' >tools.go
    go get "go.etcd.io/etcd/server/v3@v$version" >/dev/null 2>&1
    go mod tidy -e >/dev/null 2>&1 || true
    go build -tags tools -ldflags "-s -w" -o "$out/bin/etcd" go.etcd.io/etcd/server/v3
  )
  touch "$out/.done"
}

# go_install NAME VERSION PACKAGE [LDFLAGS]: a plain `go install` for modules that need no replaces.
go_install() {
  local name=$1 version=$2 pkg=$3 ldflags=${4:-}
  local out="$SLUICE_CACHE/$name-$version"
  if [ -f "$out/.done" ]; then return 0; fi
  log "building $name v$version"
  mkdir -p "$out/bin"
  GOBIN="$out/bin" go install -ldflags "-s -w $ldflags" "$pkg@v$version"
  touch "$out/.done"
}

what=${1:-all}
case $what in
  kubernetes) with_lock kubernetes build_kube kubernetes kube-apiserver kube-controller-manager kube-scheduler kubectl ;;
  etcd) with_lock etcd build_etcd "$ETCD_VERSION" ;;
  helm) with_lock helm go_install helm "$HELM_VERSION" helm.sh/helm/v3/cmd/helm \
          "-X helm.sh/helm/v3/internal/version.version=v$HELM_VERSION" ;;
  kwok) with_lock kwok go_install kwok "$KWOK_VERSION" sigs.k8s.io/kwok/cmd/kwok ;;
  kind) with_lock kind go_install kind "$KIND_VERSION" sigs.k8s.io/kind ;;
  node) with_lock kubernetes-node build_kube kubernetes-node kubelet kubeadm kube-proxy ;;
  kind-node-etcd) with_lock etcd build_etcd "$KIND_NODE_ETCD_VERSION" ;;
  crictl) with_lock crictl go_install crictl "$CRICTL_VERSION" sigs.k8s.io/cri-tools/cmd/crictl \
            "-X sigs.k8s.io/cri-tools/pkg/version.Version=v$CRICTL_VERSION" ;;
  coredns) with_lock coredns go_install coredns "$COREDNS_VERSION" github.com/coredns/coredns ;;
  local-path-provisioner) with_lock local-path-provisioner go_install local-path-provisioner \
                            "$LOCAL_PATH_PROVISIONER_VERSION" github.com/rancher/local-path-provisioner ;;
  all)
    "$0" etcd
    "$0" kubernetes
    "$0" helm
    "$0" kwok
    ;;
  *)
    echo "usage: $0 [all|kubernetes|etcd|helm|kwok|kind|node|kind-node-etcd|crictl|coredns|local-path-provisioner]" >&2
    exit 2
    ;;
esac
