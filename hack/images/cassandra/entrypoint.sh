#!/usr/bin/env bash
# The entrypoint of sluice.local/cassandra (hack/build-data-images.sh): a single Cassandra node, its own seed, run
# as the local stack runs it (hack/sluice_stack/cassandra.py: the same cassandra.yaml settings, JVM flags from
# jvm17.options, the jamm agent, logback to stdout), with its addresses set for a pod. It writes cassandra.yaml
# into the data volume and execs java CassandraDaemon in the foreground (under tini, which passes SIGTERM on:
# Cassandra drains and exits).
#
# The environment, named as the upstream `cassandra` image names it where it has the same thing:
#   CASSANDRA_LISTEN_ADDRESS         default $POD_IP, else this host's first address (`hostname -i`); `auto` too
#   CASSANDRA_BROADCAST_ADDRESS      default the listen address
#   CASSANDRA_RPC_ADDRESS            where CQL listens; default 0.0.0.0 (so `kubectl port-forward` reaches it too)
#   CASSANDRA_BROADCAST_RPC_ADDRESS  the CQL address told to drivers; default the broadcast address
#   CASSANDRA_SEEDS                  default the broadcast address and storage port: the node is its own seed
#   CASSANDRA_CLUSTER_NAME           default sluice-test (kept in the data: it cannot change later)
#   CASSANDRA_STORAGE_PORT           default 7000
#   CASSANDRA_NATIVE_PORT            default 9042
#   CASSANDRA_HEAP_OPTS              default -Xms512m -Xmx1g; else MAX_HEAP_SIZE (-Xms and -Xmx) and
#                                    HEAP_NEWSIZE (-Xmn) as upstream, when set
#   JVM_EXTRA_OPTS                   more JVM flags, appended
# Data, commitlog, hints, saved caches and java.io.tmpdir are under /var/lib/cassandra (the volume).
set -euo pipefail

home=/opt/cassandra
dir=/var/lib/cassandra

first_address() {
  local address
  address=$(hostname -i 2>/dev/null | awk '{print $1}') || true
  [ -n "$address" ] || { echo "this host has no address (hostname -i): set CASSANDRA_LISTEN_ADDRESS" >&2; exit 2; }
  echo "$address"
}
listen=${CASSANDRA_LISTEN_ADDRESS:-${POD_IP:-auto}}
[ "$listen" = auto ] && listen=$(first_address)
broadcast=${CASSANDRA_BROADCAST_ADDRESS:-$listen}
[ "$broadcast" = auto ] && broadcast=$(first_address)
rpc=${CASSANDRA_RPC_ADDRESS:-0.0.0.0}
broadcast_rpc=${CASSANDRA_BROADCAST_RPC_ADDRESS:-$broadcast}
storage_port=${CASSANDRA_STORAGE_PORT:-7000}
native_port=${CASSANDRA_NATIVE_PORT:-9042}
seeds=${CASSANDRA_SEEDS:-$broadcast:$storage_port}
cluster_name=${CASSANDRA_CLUSTER_NAME:-sluice-test}

mkdir -p "$dir/triggers" "$dir/tmp"  # a missing triggers dir is warned about; tmp gets lz4's and JNA's native libs
escape() { printf '%s' "$1" | sed -e 's/[|&\\]/\\&/g'; }
sed -e "s|\${listen_address}|$(escape "$listen")|g" \
    -e "s|\${broadcast_address}|$(escape "$broadcast")|g" \
    -e "s|\${rpc_address}|$(escape "$rpc")|g" \
    -e "s|\${broadcast_rpc_address}|$(escape "$broadcast_rpc")|g" \
    -e "s|\${seeds}|$(escape "$seeds")|g" \
    -e "s|\${cluster_name}|$(escape "$cluster_name")|g" \
    -e "s|\${storage_port}|$(escape "$storage_port")|g" \
    -e "s|\${native_port}|$(escape "$native_port")|g" \
    -e "s|\${dir}|$dir|g" \
    "$home/conf/cassandra.yaml.template" >"$dir/cassandra.yaml"

# jvm17.options without comments, `--opt value` lines as two words, and without its heap: that comes from here.
jvm_options=()
while read -r line; do
  read -ra words <<<"${line%%#*}"
  for word in "${words[@]}"; do
    case $word in -Xms* | -Xmx* | -Xmn*) ;; *) jvm_options+=("$word") ;; esac
  done
done <"$home/conf/jvm17.options"
if [ -n "${CASSANDRA_HEAP_OPTS:-}" ]; then
  read -ra heap <<<"$CASSANDRA_HEAP_OPTS"
elif [ -n "${MAX_HEAP_SIZE:-}" ]; then
  heap=("-Xms$MAX_HEAP_SIZE" "-Xmx$MAX_HEAP_SIZE" ${HEAP_NEWSIZE:+"-Xmn$HEAP_NEWSIZE"})
else
  heap=(-Xms512m -Xmx1g)
fi
jamm=$(compgen -G "$home/lib/jamm-*.jar")  # the object-size agent Cassandra measures memtables with
read -ra extra_opts <<<"${JVM_EXTRA_OPTS:-}"

echo "starting Cassandra: listen_address=$listen broadcast_address=$broadcast rpc_address=$rpc" \
  "broadcast_rpc_address=$broadcast_rpc seeds=$seeds native_transport_port=$native_port heap=${heap[*]}"
exec java "${jvm_options[@]}" "${heap[@]}" "${extra_opts[@]}" \
  "-javaagent:$jamm" \
  "-Dcassandra.config=file://$dir/cassandra.yaml" \
  "-Dcassandra.storagedir=$dir" \
  "-Dcassandra.triggers_dir=$dir/triggers" \
  "-Djava.io.tmpdir=$dir/tmp" \
  "-Dlogback.configurationFile=$home/conf/logback.xml" \
  -cp "$home/lib/*" \
  org.apache.cassandra.service.CassandraDaemon
