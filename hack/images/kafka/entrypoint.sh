#!/usr/bin/env bash
# The entrypoint of sluice.local/kafka (hack/build-data-images.sh): a single Kafka node in KRaft mode, broker and
# controller in one JVM, configured like the local stack's (hack/sluice_stack/kafka.py: replication factor 1,
# one partition per internal topic, a static voter set, short broker sessions). It writes server.properties from
# the environment, formats the storage once, then execs java (under tini, which passes SIGTERM on: Kafka shuts
# down cleanly in a second or two and the JVM exits with 143).
#
# The environment, in the convention of the upstream apache/kafka image so that one manifest fits both:
#   KAFKA_<NAME>          any broker setting: <name> lower-cased, `_` -> `.`, `__` -> `_`, `___` -> `-`
#                         (KAFKA_ADVERTISED_LISTENERS=... sets advertised.listeners); wins over the defaults:
#     listeners                  PLAINTEXT://:9092,CONTROLLER://:9093
#     advertised.listeners       the PLAINTEXT listener, on this host's first address (`hostname -i`)
#     controller.quorum.voters   <node.id>@127.0.0.1:<the CONTROLLER listener's port>
#     log.dirs                   /var/lib/kafka/data
#   CLUSTER_ID            the cluster id storage is formatted with on the first start (default: a fixed one)
#   KAFKA_HEAP_OPTS       default -Xms512m -Xmx1g
#   KAFKA_JVM_PERFORMANCE_OPTS  default: G1 as in kafka.py (Kafka's own kafka-run-class.sh flags)
#   KAFKA_OPTS            more JVM flags, appended
# server.properties is written to /var/lib/kafka at every start; the volume to mount is the log dir,
# /var/lib/kafka/data (the upstream image declares that path a VOLUME, so a claim must be mounted exactly there).
# Not settings, though they start with KAFKA_: the *_OPTS above and the variables Kubernetes' service links
# define for a Service named kafka (KAFKA_PORT*, KAFKA_SERVICE_*).
set -euo pipefail

home=/opt/kafka
config=/var/lib/kafka/server.properties

declare -A settings=(
  [process.roles]="broker,controller"
  [node.id]=1
  [listeners]="PLAINTEXT://:9092,CONTROLLER://:9093"
  [controller.listener.names]=CONTROLLER
  [inter.broker.listener.name]=PLAINTEXT
  [listener.security.protocol.map]="PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT"
  [log.dirs]=/var/lib/kafka/data
  [num.partitions]=1
  [auto.create.topics.enable]=true
  [default.replication.factor]=1
  [min.insync.replicas]=1
  [offsets.topic.replication.factor]=1
  [offsets.topic.num.partitions]=1
  [transaction.state.log.replication.factor]=1
  [transaction.state.log.min.isr]=1
  [transaction.state.log.num.partitions]=1
  [share.coordinator.state.topic.replication.factor]=1
  [share.coordinator.state.topic.min.isr]=1
  [share.coordinator.state.topic.num.partitions]=1
  [group.initial.rebalance.delay.ms]=0
  [broker.session.timeout.ms]=3000
  [broker.heartbeat.interval.ms]=500
  [num.network.threads]=2
  [num.io.threads]=4
)

# KAFKA_<NAME> -> <name>, as apache/kafka's docker scripts map them.
while IFS='=' read -r var _; do
  case $var in
    KAFKA_HEAP_OPTS | KAFKA_JVM_PERFORMANCE_OPTS | KAFKA_OPTS | KAFKA_GC_LOG_OPTS | KAFKA_JMX_OPTS \
      | KAFKA_LOG4J_OPTS | KAFKA_VERSION | KAFKA_PORT | KAFKA_PORT_* | KAFKA_SERVICE_*) continue ;;
  esac
  key=$(printf '%s' "${var#KAFKA_}" | tr '[:upper:]' '[:lower:]' | sed -e 's/___/-/g' -e 's/__/\x01/g' -e 's/_/./g' -e 's/\x01/_/g')
  settings[$key]=${!var}
done < <(env | grep -E '^KAFKA_[A-Z0-9_]+=' || true)

# A listener's port: listener_port NAME
listener_port() {
  local entry
  IFS=',' read -ra entries <<<"${settings[listeners]}"
  for entry in "${entries[@]}"; do
    [[ $entry == "$1://"* ]] && { echo "${entry##*:}"; return; }
  done
  echo "no $1 listener in listeners=${settings[listeners]}" >&2
  exit 2
}
if [ -z "${settings[controller.quorum.voters]:-}" ] && [ -z "${settings[controller.quorum.bootstrap.servers]:-}" ]; then
  # A static voter set on loopback: nothing about the pod's address is written into the metadata log.
  settings[controller.quorum.voters]="${settings[node.id]}@127.0.0.1:$(listener_port CONTROLLER)"
fi
if [ -z "${settings[advertised.listeners]:-}" ]; then
  address=$(hostname -i 2>/dev/null | awk '{print $1}') || true
  [ -n "$address" ] || { echo "this host has no address (hostname -i): set KAFKA_ADVERTISED_LISTENERS" >&2; exit 2; }
  settings[advertised.listeners]="PLAINTEXT://$address:$(listener_port PLAINTEXT)"
fi

for key in $(printf '%s\n' "${!settings[@]}" | LC_ALL=C sort); do
  printf '%s=%s\n' "$key" "${settings[$key]}"
done >"$config"

# Kafka's own defaults (kafka-run-class.sh), sized down as in kafka.py's JVM_FLAGS.
read -ra heap_opts <<<"${KAFKA_HEAP_OPTS:--Xms512m -Xmx1g}"
read -ra performance_opts <<<"${KAFKA_JVM_PERFORMANCE_OPTS:--XX:+UseG1GC -XX:MaxGCPauseMillis=20 \
-XX:InitiatingHeapOccupancyPercent=35 -XX:+ExplicitGCInvokesConcurrent -XX:+ExitOnOutOfMemoryError -Djava.awt.headless=true}"
read -ra extra_opts <<<"${KAFKA_OPTS:-}"

# Formatted once: a restarted pod finds its volume's meta.properties and keeps its topics and offsets.
first_log_dir=${settings[log.dirs]%%,*}
if [ ! -f "$first_log_dir/meta.properties" ]; then
  cluster_id=${CLUSTER_ID:-c2x1aWNlLWthZmthLTAwMQ}  # base64url("sluice-kafka-001")
  echo "formatting $first_log_dir for cluster $cluster_id, node ${settings[node.id]}"
  java -Xmx256m -cp "$home/lib/*" "-Dlog4j2.configurationFile=$home/config/log4j2.properties" \
    kafka.tools.StorageTool format --config "$config" --cluster-id "$cluster_id"
fi

echo "starting Kafka: advertised.listeners=${settings[advertised.listeners]}" \
  "controller.quorum.voters=${settings[controller.quorum.voters]:-} log.dirs=${settings[log.dirs]}"
exec java "${heap_opts[@]}" "${performance_opts[@]}" "${extra_opts[@]}" \
  "-Dlog4j2.configurationFile=$home/config/log4j2.properties" -cp "$home/lib/*" kafka.Kafka "$config"
