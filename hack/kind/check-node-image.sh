#!/usr/bin/env bash
# Proves the offline kind node image ($KIND_NODE_IMAGE, hack/build-kind-node.sh) runs a working cluster: a
# throwaway single-node cluster with the e2e suite's kind config, then node and CoreDNS Ready, a busybox image
# side-loaded with `kind load docker-image`, a two-replica Deployment behind a Service reached by its DNS name
# from another pod, a PVC of the `standard` class bound and written. The cluster is deleted afterwards
# (--keep keeps it). Everything goes through the API server kind publishes on 127.0.0.1.
#
#   hack/kind/check-node-image.sh [--keep] [--config FILE|--no-config]
. "$(dirname "$0")/../lib.sh"

name=nodecheck
keep=false
config="$HACK_DIR/../tests/e2e/manifests/kind-cluster.yaml"
while [ $# -gt 0 ]; do
  case $1 in
    --keep) keep=true ;;
    --config) config=$2; shift ;;
    --no-config) config='' ;;
    *) echo "usage: $0 [--keep] [--config FILE|--no-config]" >&2; exit 2 ;;
  esac
  shift
done

kind="$SLUICE_CACHE/kind-$KIND_VERSION/bin/kind"
kubectl="$SLUICE_CACHE/kubernetes-$KUBERNETES_VERSION/bin/kubectl"   # not /usr/bin/kubectl
work=$(mktemp -d)
export KUBECONFIG="$work/kubeconfig"
k() { "$kubectl" "$@"; }

cleanup() {
  if $keep; then
    log "kept cluster $name (KUBECONFIG=$KUBECONFIG; delete: $kind delete cluster --name $name)"
  else
    "$kind" delete cluster --name "$name" >/dev/null 2>&1 || true
    rm -rf "$work"
  fi
}
trap cleanup EXIT

timed() {
  local title=$1; shift
  local started; started=$(date +%s)
  "$@"
  log "$title: $(($(date +%s) - started))s"
}

bash "$HACK_DIR/build-kind-node.sh"
"$kind" delete cluster --name "$name" >/dev/null 2>&1 || true
args=(--name "$name" --image "$KIND_NODE_IMAGE" --wait 5m)
[ -z "$config" ] || args+=(--config "$config")
timed "kind create cluster (${config:-no config})" "$kind" create cluster "${args[@]}"
grep -q 'server: https://127.0.0.1:' "$KUBECONFIG" || { log "the API server is not on 127.0.0.1"; exit 1; }

k wait node --all --for=condition=Ready --timeout=120s
# kubeadm's CoreDNS pods may not exist yet when the node is Ready.
for _ in $(seq 60); do
  [ -n "$(k -n kube-system get pod -l k8s-app=kube-dns -o name)" ] && break
  sleep 2
done
timed "CoreDNS Ready" k -n kube-system wait pod -l k8s-app=kube-dns --for=condition=Ready --timeout=180s

# An image the node does not have (busybox plus a layer of its own), side-loaded: `ctr images import` in the node.
busybox=$(docker image ls --format '{{.Repository}}:{{.Tag}}' 'sluice.local/busybox' | head -n 1)
image=sluice.local/nodecheck-busybox:loaded
mkdir -p "$work/image" && date >"$work/image/loaded"
printf 'FROM %s\nCOPY loaded /loaded\n' "$busybox" >"$work/image/Dockerfile"
DOCKER_BUILDKIT=0 docker build -q --network none -t "$image" "$work/image" >/dev/null
timed "kind load docker-image" "$kind" load docker-image "$image" --name "$name"
docker rmi "$image" >/dev/null

sed "s|IMAGE|$image|" "$HACK_DIR/kind/check-workloads.yaml" | k apply -f -
k rollout status deploy/web --timeout=180s
k wait pod/client pod/pvc-user --for=condition=Ready --timeout=180s
k get nodes,pods,svc,pvc -A -o wide

# The Service by its DNS name, from another pod (busybox's wget crashes on lookups; nc does not).
k exec client -- nslookup web.default.svc.cluster.local
seen=''
for _ in 1 2 3 4 5 6 7 8; do
  reply=$(k exec client -- sh -c \
    'printf "GET / HTTP/1.0\r\nHost: web\r\n\r\n" | nc -w 5 web.default.svc.cluster.local 80 | tail -n 1')
  echo "$reply"
  case $reply in "hello from web-"*) seen+="$reply"$'\n' ;; *) log "unexpected reply: $reply"; exit 1 ;; esac
done
backends=$(sort -u <<<"$seen" | grep -c .)
log "the Service answered from $backends pod(s)"

[ "$(k get pvc data -o jsonpath='{.status.phase}')" = Bound ] || { log "PVC not Bound"; exit 1; }
[ "$(k exec pvc-user -- cat /data/f)" = persisted ] || { log "PVC not written"; exit 1; }
[ "$(k exec client -- cat /loaded)" = "$(cat "$work/image/loaded")" ] || { log "not the loaded image"; exit 1; }
log "check passed: node Ready, CoreDNS Ready, Service by DNS name ($backends backends), PVC bound and written"
