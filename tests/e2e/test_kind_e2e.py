"""End to end on a real cluster (kind): the images, the chart, in-cluster Kafka and Cassandra, and the sample
pipeline. Events go in, rows come out; scaling, losing a worker mid-stream and deleting the pipeline lose
nothing. Skipped, with the reason, where kind cannot run (no node image and no registry to pull it from)."""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
import yaml

from ..images.docker import REPO, build_images
from .cluster import MANIFESTS, Cluster, kind_unavailable, wait_for

REASON = kind_unavailable()
if REASON:
    pytest.skip(REASON, allow_module_level=True)

DATA = "sluice-e2e"  # the namespace of Kafka and Cassandra
PIPELINE, NAMESPACE = "gophers-r-us", "default"  # the sample, applied unchanged
TOPIC, TABLE, GROUP = "store-events", "store.store_events", f"{NAMESPACE}.{PIPELINE}"
WORKERS = f"sluice.dev/pipeline={PIPELINE}"
KAFKA_BIN = "/opt/kafka/bin"
DEPARTMENTS = {"blue-gopher": "gophers", "gosf-sticker": "stickers", "gophercon-uk-shirt": "clothing",
               "gopher-mug": "misc"}  # fmt: skip


@dataclass
class Stream:
    """What the tests produced so far."""

    produced: int = 0


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """A fresh kind cluster with both images loaded, the chart installed and Kafka and Cassandra running."""
    images = build_images()
    made = Cluster("sluice-e2e", tmp_path_factory.mktemp("kind"))
    made.create()
    try:
        for image in (images.worker, images.operator):
            made.load_docker_image(image)
        made.helm("install", "sluice", str(REPO / "charts" / "sluice"), "--namespace", "sluice-system",
                  "--create-namespace", "--wait", "--timeout=5m")  # fmt: skip
        made.kubectl("apply", "-f", str(MANIFESTS / "data-services.yaml"))
        for name in ("kafka", "cassandra"):
            made.kubectl("rollout", "status", f"statefulset/{name}", "-n", DATA, "--timeout=600s", timeout=620)
        kafka(made, "kafka-topics.sh", "--create", "--topic", TOPIC, "--partitions", "3", "--replication-factor", "1")
        yield made
    finally:
        if os.environ.get("SLUICE_E2E_KEEP") != "1":
            made.delete()


@pytest.fixture(scope="module")
def stream() -> Stream:
    return Stream()


def kafka(cluster: Cluster, script: str, *args: str, stdin: str | None = None) -> str:
    """A Kafka command-line tool, run in the broker's pod."""
    exec_args = ["exec", "-i"] if stdin is not None else ["exec"]
    command = [f"{KAFKA_BIN}/{script}", "--bootstrap-server", "localhost:9092", *args]
    return cluster.kubectl(*exec_args, "-n", DATA, "kafka-0", "--", *command, stdin=stdin)


def produce(cluster: Cluster, stream: Stream, count: int) -> None:
    """`count` store events with keys, through kafka-console-producer."""
    items = list(DEPARTMENTS)
    lines = []
    for i in range(stream.produced, stream.produced + count):
        event = {"id": f"evt-{i}", "item": {"name": items[i % len(items)], "price": 1.5 + i % 7}}
        lines.append(f"evt-{i}|{json.dumps(event)}")
    kafka(cluster, "kafka-console-producer.sh", "--topic", TOPIC, "--property", "parse.key=true",
          "--property", "key.separator=|", stdin="\n".join(lines) + "\n")  # fmt: skip
    stream.produced += count


def cql(cluster: Cluster, query: str) -> list[str]:
    out = cluster.kubectl("exec", "-n", DATA, "cassandra-0", "--", "cqlsh", "-e", query)
    return [line.strip() for line in out.splitlines() if line.strip()]


def row_count(cluster: Cluster) -> int:
    lines = cql(cluster, f"SELECT COUNT(*) FROM {TABLE}")
    return int(lines[lines.index(next(line for line in lines if line.startswith("---"))) + 1])


def committed(cluster: Cluster) -> tuple[int, int]:
    """The group's committed offsets and the log-end offsets, each summed over the topic's partitions."""
    out = kafka(cluster, "kafka-consumer-groups.sh", "--describe", "--group", GROUP)
    current = end = 0
    for line in out.splitlines():
        fields = line.split()
        if len(fields) >= 5 and fields[1] == TOPIC:
            current += int(fields[3]) if fields[3].isdigit() else 0
            end += int(fields[4])
    return current, end


def wait_until_all_written(cluster: Cluster, stream: Stream, timeout: float = 240) -> None:
    """Every produced event is a row and every offset is committed: nothing lost, nothing left behind."""
    wait_for(f"{stream.produced} rows", lambda: row_count(cluster) == stream.produced, timeout)
    wait_for("all offsets committed", lambda: committed(cluster) == (stream.produced, stream.produced), timeout)


def ready_workers(cluster: Cluster) -> int:
    status = cluster.get("datapipeline", PIPELINE, NAMESPACE).get("status", {})
    conditions = {c["type"]: c["status"] for c in status.get("conditions", [])}
    return int(status.get("readyReplicas") or 0) if conditions.get("Ready") == "True" else 0


def test_operator_runs_from_the_chart(cluster: Cluster) -> None:
    deployment = cluster.get("deployment", "sluice", "sluice-system")
    assert deployment["status"]["availableReplicas"] == 1
    assert deployment["spec"]["template"]["spec"]["containers"][0]["image"].startswith("sluice-operator:")


def test_sample_pipeline_turns_events_into_rows(cluster: Cluster, stream: Stream) -> None:
    endpoints = {
        "SLUICE_KAFKA_BOOTSTRAP_SERVERS": f"kafka-0.kafka.{DATA}.svc.cluster.local:9092",
        "SLUICE_CASSANDRA_CONTACT_POINTS": f"cassandra-0.cassandra.{DATA}.svc.cluster.local:9042",
    }
    secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": f"{PIPELINE}-credentials",
              "namespace": NAMESPACE}, "stringData": endpoints}  # fmt: skip
    cluster.kubectl("apply", "-f", "-", stdin=yaml.safe_dump(secret))
    cluster.kubectl("apply", "-f", str(REPO / "examples" / "gophers-r-us.yaml"))
    wait_for("one ready worker", lambda: ready_workers(cluster) == 1, timeout=300)

    produce(cluster, stream, 400)
    wait_until_all_written(cluster, stream)
    for i in (0, 1, 2, 3):
        lines = cql(cluster, f"SELECT department FROM {TABLE} WHERE id = 'evt-{i}'")
        assert list(DEPARTMENTS.values())[i] in lines


def test_kubectl_scale_adds_workers(cluster: Cluster, stream: Stream) -> None:
    cluster.kubectl("scale", "datapipeline", PIPELINE, "-n", NAMESPACE, "--replicas=3")
    wait_for("three ready workers", lambda: ready_workers(cluster) == 3, timeout=300)
    assert len(cluster.pods(NAMESPACE, WORKERS)) == 3
    produce(cluster, stream, 300)
    wait_until_all_written(cluster, stream)


def test_losing_workers_mid_stream_loses_nothing(cluster: Cluster, stream: Stream) -> None:
    def keep_producing() -> None:  # 1000 events over ~20 s
        for _ in range(10):
            produce(cluster, stream, 100)
            time.sleep(1)

    producer = threading.Thread(target=keep_producing)
    producer.start()
    time.sleep(3)
    first, second = (p["metadata"]["name"] for p in cluster.pods(NAMESPACE, WORKERS)[:2])
    cluster.kubectl("delete", "pod", first, "-n", NAMESPACE, "--wait=false")  # SIGTERM: drain and commit
    time.sleep(3)
    cluster.kubectl("delete", "pod", second, "-n", NAMESPACE, "--grace-period=0", "--force")  # a crash
    producer.join(300)
    assert not producer.is_alive()
    wait_for("three ready workers again", lambda: ready_workers(cluster) == 3, timeout=300)
    wait_until_all_written(cluster, stream)


def test_deleting_the_pipeline_stops_its_workers_within_the_grace_period(cluster: Cluster, stream: Stream) -> None:
    pod_spec = cluster.get("deployment", PIPELINE, NAMESPACE)["spec"]["template"]["spec"]
    grace = int(pod_spec["terminationGracePeriodSeconds"])
    started = time.monotonic()
    cluster.kubectl("delete", "datapipeline", PIPELINE, "-n", NAMESPACE, "--wait=false")
    wait_for("no worker pods", lambda: not cluster.pods(NAMESPACE, WORKERS), timeout=grace + 60, interval=1)
    seconds = time.monotonic() - started
    assert seconds <= grace + 15, f"workers took {seconds:.0f}s to go (grace period {grace}s)"
    assert committed(cluster) == (stream.produced, stream.produced)
