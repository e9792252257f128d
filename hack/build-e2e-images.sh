#!/usr/bin/env bash
# Everything the kind end-to-end suite runs, built on this machine with no registry (`make kind-image`):
#   - kind itself and its node image $KIND_NODE_IMAGE (hack/build-kind-node.sh: Debian packages + Go module proxy);
#   - Kafka and Cassandra images from the Maven jars the local stack runs (hack/build-data-images.sh);
#   - the sluice-worker and sluice-operator images (hack/build-images.sh).
# Each step keeps what it already built. Writes build/e2e-images.json: {worker, operator, kafka, cassandra} -> image.
. "$(dirname "$0")/lib.sh"
cd "$HACK_DIR/.."

started=$(date +%s)
bash "$HACK_DIR/ensure-docker.sh"
bash "$HACK_DIR/build-kubernetes.sh" kind
bash "$HACK_DIR/build-kind-node.sh"
bash "$HACK_DIR/build-data-images.sh"
bash "$HACK_DIR/build-images.sh"

version=$(.venv/bin/python -c 'import tomllib; print(tomllib.load(open("pyproject.toml", "rb"))["project"]["version"])')
tag=${SLUICE_IMAGE_TAG:-$version}
mkdir -p build
cat >build/e2e-images.json <<JSON
{
  "node": "$KIND_NODE_IMAGE",
  "worker": "${SLUICE_WORKER_IMAGE:-sluice-worker}:$tag",
  "operator": "${SLUICE_OPERATOR_IMAGE:-sluice-operator}:$tag",
  "kafka": "sluice.local/kafka:$KAFKA_VERSION",
  "cassandra": "sluice.local/cassandra:$CASSANDRA_VERSION"
}
JSON
for image in $(.venv/bin/python -c 'import json; print(" ".join(json.load(open("build/e2e-images.json")).values()))'); do
  log "$image $(docker image inspect -f '{{.Size}}' "$image" | numfmt --to=iec --format=%.1f)"
done
log "e2e images ready in $(( $(date +%s) - started ))s"
