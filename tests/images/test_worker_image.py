"""The worker image runs the sample pipeline against the local Kafka and Cassandra, hardened as in a pod,
and `docker stop` reaches the worker through tini: it drains, commits and exits 0 long before the timeout."""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path

import pytest
import yaml
from cassandra.cluster import Cluster
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic
from sluice_stack.process import free_port

from .docker import REPO, Container, Images, docker, unlocked_packages

pytestmark = [pytest.mark.kafka, pytest.mark.cassandra]

EXAMPLE = REPO / "examples" / "gophers-r-us.yaml"
MESSAGES = 300
STOP_TIMEOUT = 30
# Security options of the worker pods: read-only root, no capabilities, no privilege escalation.
HARDENED = ("--read-only", "--tmpfs", "/tmp", "--cap-drop", "ALL", "--security-opt", "no-new-privileges")


def test_image_metadata(images: Images) -> None:
    config = json.loads(docker("image", "inspect", "-f", "{{json .Config}}", images.worker))
    assert config["User"] == "10001:10001"
    # The user's own group is 10001 too: where a pod's group comes from /etc/passwd, it is not 999.
    who = docker("run", "--rm", "--entrypoint", "id", images.worker, "sluice")
    assert who == "uid=10001(sluice) gid=10001(sluice) groups=10001(sluice)", who
    assert config["Entrypoint"] == ["/usr/bin/tini", "--", "sluice-worker"]
    assert config["Cmd"] == ["--pipeline", "/etc/sluice/pipeline.yaml"]
    labels = config["Labels"]
    assert labels["org.opencontainers.image.title"] == "sluice-worker"
    assert labels["org.opencontainers.image.version"] == images.worker.rsplit(":", 1)[1]
    assert len(labels["org.opencontainers.image.revision"]) >= 7
    size = int(docker("image", "inspect", "-f", "{{.Size}}", images.worker))
    print(f"{images.worker}: {size / 1e6:.0f} MB")
    # Its Python packages are the versions constraints.txt locks, the ones the suite ran against.
    assert unlocked_packages(images.worker) == {}


def sample_pipeline(path: Path, name: str) -> tuple[str, str]:
    """The example on a topic and keyspace of its own; offsets are committed only on shutdown."""
    manifest = yaml.safe_load(EXAMPLE.read_text())
    manifest["metadata"]["name"] = name
    spec = manifest["spec"]
    topic, keyspace = f"{name}.events", name.replace("-", "_")
    spec["source"]["topics"] = [topic]
    spec["sink"]["keyspace"] = keyspace
    spec["delivery"]["commitIntervalMs"] = 3_600_000  # so the final commit can only come from SIGTERM
    path.write_text(yaml.safe_dump(manifest))
    path.chmod(0o644)  # readable by the image's unprivileged user
    return topic, keyspace


def produce(bootstrap: str, topic: str, count: int) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(topic, 1, 1)])[topic].result(30)
    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True})
    for i in range(count):
        event = {"id": f"evt-{i}", "item": {"name": "blue-gopher" if i % 2 else "gosf-sticker", "price": 1.5}}
        producer.produce(topic, json.dumps(event).encode(), key=str(i).encode())
    assert producer.flush(30) == 0


def committed(bootstrap: str, group: str, topic: str) -> int:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group})
    try:
        return int(consumer.committed([TopicPartition(topic, 0)], timeout=10)[0].offset)
    finally:
        consumer.close()


def wait_for_rows(contact_point: str, keyspace: str, count: int, timeout: float = 90) -> dict[str, str]:
    host, port = contact_point.rsplit(":", 1)
    cluster = Cluster([host], port=int(port))
    session = cluster.connect()
    deadline = time.monotonic() + timeout
    rows: dict[str, str] = {}
    try:
        while time.monotonic() < deadline:
            try:
                result = session.execute(f"SELECT id, department FROM {keyspace}.store_events")
                rows = {r.id: r.department for r in result}
            except Exception:  # the worker has not created the table yet
                rows = {}
            if len(rows) >= count:
                return rows
            time.sleep(0.5)
    finally:
        cluster.shutdown()
    raise AssertionError(f"{len(rows)} of {count} rows after {timeout:.0f}s")


def test_worker_container_runs_the_sample_and_stops_cleanly(  # type: ignore[no-untyped-def]
    images: Images, kafka, cassandra, tmp_path: Path
) -> None:
    name = f"img-{uuid.uuid4().hex[:8]}"
    manifest = tmp_path / "pipeline.yaml"
    topic, keyspace = sample_pipeline(manifest, name)
    produce(kafka.bootstrap_servers, topic, MESSAGES)
    port = free_port()
    container = Container(
        name, images.worker, "--network", "host", *HARDENED,
        "-v", f"{manifest}:/etc/sluice/pipeline.yaml:ro",
        "-e", f"SLUICE_KAFKA_BOOTSTRAP_SERVERS={kafka.bootstrap_servers}",
        "-e", f"SLUICE_CASSANDRA_CONTACT_POINTS={cassandra.contact_point}",
        "-e", "SLUICE_HTTP_HOST=127.0.0.1", "-e", f"SLUICE_HTTP_PORT={port}",
    )  # fmt: skip
    try:
        container.wait_http(f"http://127.0.0.1:{port}/readyz")
        assert docker("exec", name, "cat", "/proc/1/comm") == "tini"
        assert docker("exec", name, "id", "-u") == "10001"

        rows = wait_for_rows(cassandra.contact_point, keyspace, MESSAGES)
        assert rows["evt-1"] == "gophers" and rows["evt-0"] == "stickers"
        group = f"default.{name}"
        assert committed(kafka.bootstrap_servers, group, topic) < MESSAGES, "committed before the stop"

        seconds = container.stop(STOP_TIMEOUT)
        print(f"docker stop -t {STOP_TIMEOUT}: exited in {seconds:.1f}s")
        logs = container.logs()
        assert container.exit_code() == 0, logs
        assert seconds < STOP_TIMEOUT / 3, f"took {seconds:.1f}s to stop:\n{logs}"
        assert "received SIGTERM" in logs
        assert committed(kafka.bootstrap_servers, group, topic) == MESSAGES
    finally:
        container.remove()
