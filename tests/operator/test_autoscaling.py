"""Lag from a real Kafka drives the workers: divisor steps up to the partition count, a scale-down that waits
for its window, no scale-up while Degraded, kubectl scale overridden; the status, printer column and metrics
show the lag. No worker runs (kwok fakes the pods), so the test commits the group's offsets itself."""

from __future__ import annotations

import socket
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic
from operator_harness import (
    PROGRESS_DEADLINE_SECONDS,
    Kubectl,
    Operator,
    condition,
    events,
    pipeline,
    sample,
    wait_for,
)
from sluice_operator.api import DEPLOYMENTS
from sluice_operator.kube import Kube
from sluice_stack.kafka import SCRAM_USER

pytestmark = [pytest.mark.kube, pytest.mark.kafka]

NAME = "gophers-r-us"
PARTITIONS = 6
TARGET = 100  # messages of lag per worker
LAG_INTERVAL = 1.0  # seconds between the operator's lag checks
STATUS_REFRESH = 10.0  # at most this long a minor change of the lag waits to be written to the status


@pytest.fixture(scope="module")
def module_env() -> dict[str, str]:
    return {
        "SLUICE_LAG_INTERVAL_SECONDS": str(LAG_INTERVAL),
        "SLUICE_KAFKA_TIMEOUT_SECONDS": "5",
        "SLUICE_LAG_STATUS_REFRESH_SECONDS": str(STATUS_REFRESH),
    }


class Topic:
    """A fresh topic of PARTITIONS partitions, filled evenly; offsets committed for a group as a worker would."""

    def __init__(self, bootstrap_servers: str) -> None:
        self.bootstrap_servers = bootstrap_servers
        self.name = f"autoscale-{uuid.uuid4().hex[:8]}"
        admin = AdminClient({"bootstrap.servers": bootstrap_servers})
        admin.create_topics([NewTopic(self.name, PARTITIONS, 1)])[self.name].result(30)
        self.produced = [0] * PARTITIONS

    def produce(self, count: int) -> None:
        """`count` messages (a multiple of PARTITIONS), the same number to each partition."""
        assert count % PARTITIONS == 0
        producer = Producer({"bootstrap.servers": self.bootstrap_servers})
        for i in range(count):
            producer.produce(self.name, value=b'{"id": "%d"}' % i, partition=i % PARTITIONS)
        assert producer.flush(30) == 0
        self.produced = [n + count // PARTITIONS for n in self.produced]

    def commit(self, group: str, per_partition: int) -> None:
        """Commits `per_partition` messages of each partition for `group`, without joining it."""
        consumer = Consumer({"bootstrap.servers": self.bootstrap_servers, "group.id": group})
        try:
            offsets = [TopicPartition(self.name, p, min(per_partition, self.produced[p])) for p in range(PARTITIONS)]
            consumer.commit(offsets=offsets, asynchronous=False)
        finally:
            consumer.close()


@pytest.fixture
def topic(kafka: Any) -> Topic:
    return Topic(kafka.bootstrap_servers)


def autoscaled(namespace: str, topic: Topic, **autoscaling: Any) -> dict[str, Any]:
    source = {"bootstrapServers": topic.bootstrap_servers, "topics": [topic.name], "startFrom": "earliest"}
    policy = {"enabled": True, "targetLagPerReplica": TARGET, "scaleDownStabilizationSeconds": 300, **autoscaling}
    return sample(namespace, source=source, autoscaling=policy)


def workers(admin: Kube, namespace: str) -> int | None:
    found = admin.get(DEPLOYMENTS, namespace, NAME)
    return None if found is None else int(found["spec"]["replicas"])


def ready_workers(admin: Kube, namespace: str, count: int) -> bool:
    """The Deployment runs `count` pods and all of them are ready (kwok's pods become ready in a second)."""
    found = admin.get(DEPLOYMENTS, namespace, NAME)
    status = (found or {}).get("status", {})
    return bool(found and found["spec"]["replicas"] == count and status.get("readyReplicas", 0) == count)


def status(admin: Kube, namespace: str) -> dict[str, Any]:
    return dict(pipeline(admin, namespace).get("status", {}))


def messages(admin: Kube, namespace: str, reason: str) -> list[str]:
    """The messages of the pipeline's events with that reason, oldest first."""
    found = sorted(events(admin, namespace, reason), key=lambda e: int(e["metadata"]["resourceVersion"]))
    return [e["message"] for e in found]


def printed(kubectl: Kubectl, namespace: str, *args: str) -> dict[str, str]:
    """`kubectl get dp` as the user sees it: column -> value."""
    header, row = kubectl.run("get", "dp", NAME, "-n", namespace, *args).stdout.splitlines()
    return dict(zip(header.split(), row.split(), strict=True))


def test_a_backlog_scales_the_workers_in_divisor_steps_up_to_the_partition_count(
    operator: Operator, kubectl: Kubectl, admin: Kube, namespace: str, topic: Topic
) -> None:
    topic.produce(300)  # 300 / 100 = 3 workers: a divisor of 6 already
    kubectl.apply(autoscaled(namespace, topic))
    wait_for(lambda: ready_workers(admin, namespace, 3), what="3 ready workers")
    topic.produce(90)  # 390 / 100 -> 4, rounded up to 6: each worker gets one partition
    wait_for(lambda: ready_workers(admin, namespace, 6), what="6 ready workers")
    topic.produce(1200)  # 1590 / 100 -> 16, capped at the partition count
    wait_for(lambda: status(admin, namespace).get("lag") == 1590, what="status.lag 1590")
    time.sleep(3 * LAG_INTERVAL)

    assert workers(admin, namespace) == 6
    done = pipeline(admin, namespace)
    assert done["spec"]["replicas"] == done["status"]["desiredReplicas"] == 6  # the operator owns spec.replicas
    assert done["status"]["lastScaleTime"].endswith("Z")
    assert messages(admin, namespace, "ScaledUp") == [
        "Scaled up from 1 to 3 workers: lag 300 at 100 per worker needs 3",
        "Scaled up from 3 to 6 workers: lag 390 at 100 per worker needs 4, rounded up to 6 to divide the 6 "
        "partitions evenly",
    ]
    columns = printed(kubectl, namespace)
    assert (columns["REPLICAS"], columns["LAG"]) == ("6", "1590")
    wide = printed(kubectl, namespace, "-o", "wide")
    assert (wide["AUTOSCALING"], wide["PARTITIONS"]) == ("true", "6")


def test_scale_down_waits_for_the_stabilization_window(
    operator: Operator, kubectl: Kubectl, admin: Kube, namespace: str, topic: Topic
) -> None:
    window = 8
    topic.produce(600)
    kubectl.apply(autoscaled(namespace, topic, scaleDownStabilizationSeconds=window))
    wait_for(lambda: ready_workers(admin, namespace, 6), what="6 ready workers for a lag of 600")

    group = f"{namespace}.{NAME}"
    caught_up = time.monotonic()
    topic.commit(group, 50)  # the workers catch up: 300 left, 3 workers would do
    wait_for(lambda: (status(admin, namespace).get("throughput") or 0) > 0, what="a throughput from the commits")
    topic.commit(group, 100)  # all caught up: 1 worker would do
    wait_for(lambda: status(admin, namespace).get("lag") == 0, what="status.lag 0")
    deferred = wait_for(lambda: messages(admin, namespace, "ScaleDownDeferred"), what="a ScaleDownDeferred event")
    assert f"the lag asked for 6 within the {window}s stabilization window" in deferred[0]

    first_drop = wait_for(
        lambda: workers(admin, namespace) != 6 and time.monotonic(), timeout=window + 15, what="a scale-down"
    )
    # The last check that saw a lag of 600 ran at most one interval before the first commit.
    assert first_drop - caught_up >= window - LAG_INTERVAL - 0.5
    wait_for(lambda: workers(admin, namespace) == 1, timeout=window + 15, what="1 worker once caught up")
    last = messages(admin, namespace, "ScaledDown")[-1]
    assert last.startswith("Scaled down from ")
    assert last.endswith(" to 1 workers: lag 0 at 100 per worker needs 0, raised to minReplicas 1")


def test_scale_up_freezes_while_the_pipeline_is_degraded(
    operator: Operator, kubectl: Kubectl, admin: Kube, namespace: str, topic: Topic
) -> None:
    # The fake node has 32 CPUs: workers asking for 64 stay Pending, and the rollout times out (Degraded).
    manifest = autoscaled(namespace, topic)
    manifest["spec"]["resources"] = {"requests": {"cpu": "64"}}
    kubectl.apply(manifest)
    wait_for(
        lambda: condition(pipeline(admin, namespace), "Degraded").get("status") == "True",
        timeout=PROGRESS_DEADLINE_SECONDS + 45,
        what="Degraded=True",
    )
    topic.produce(600)  # a backlog that asks for 6 workers
    wait_for(lambda: status(admin, namespace).get("lag") == 600, what="status.lag 600")
    time.sleep(3 * LAG_INTERVAL)  # a few more checks while Degraded
    assert workers(admin, namespace) == 1 and pipeline(admin, namespace)["spec"]["replicas"] == 1
    assert status(admin, namespace)["lag"] == 600
    frozen = [e for e in events(admin, namespace, "ScaleUpFrozen") if e["type"] == "Warning"]
    assert len(frozen) == 1, "a lasting freeze is told once"
    why = "Scale-up from 1 to 6 workers frozen: the pipeline is Degraded (ProgressDeadlineExceeded: "
    assert frozen[0]["message"].startswith(why)
    assert not events(admin, namespace, "ScaledUp")

    patch = '{"spec": {"resources": {"requests": {"cpu": "100m"}}}}'
    kubectl.run("patch", "dp", NAME, "-n", namespace, "--type=merge", "-p", patch)
    wait_for(lambda: ready_workers(admin, namespace, 6), timeout=60, what="6 workers once the pipeline recovers")
    (scaled,) = messages(admin, namespace, "ScaledUp")
    assert scaled == "Scaled up from 1 to 6 workers: lag 600 at 100 per worker needs 6"


def test_kubectl_scale_is_overridden_and_never_reaches_the_workers(
    operator: Operator, kubectl: Kubectl, admin: Kube, namespace: str, topic: Topic
) -> None:
    kubectl.apply(autoscaled(namespace, topic, minReplicas=2))
    wait_for(lambda: ready_workers(admin, namespace, 2), what="minReplicas 2")

    kubectl.run("scale", "dp", NAME, "-n", namespace, "--replicas=5")
    seen = set()
    overridden = None
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and not overridden:
        seen.add(workers(admin, namespace))
        overridden = events(admin, namespace, "ScaleOverridden")
        time.sleep(0.1)
    assert overridden, "no ScaleOverridden event"
    assert overridden[0]["type"] == "Warning"
    assert overridden[0]["message"] == (
        "spec.replicas is 5, but spec.autoscaling is enabled and owns it (kubectl scale and edits are overridden): "
        "set to 2"
    )
    wait_for(lambda: pipeline(admin, namespace)["spec"]["replicas"] == 2, what="spec.replicas set back to 2")
    assert seen == {2}, "the Deployment followed the hand edit"


def scrape(operator: Operator) -> str:
    """The operator's /metrics, served next to /healthz."""
    with urllib.request.urlopen(f"http://127.0.0.1:{operator.port}/metrics", timeout=5) as response:
        return str(response.read().decode())


def test_without_autoscaling_the_lag_is_shown_and_the_replicas_left_alone(
    operator: Operator, kubectl: Kubectl, admin: Kube, namespace: str, topic: Topic
) -> None:
    topic.produce(1200)
    manifest = autoscaled(namespace, topic)
    del manifest["spec"]["autoscaling"]
    kubectl.apply(manifest)
    wait_for(lambda: status(admin, namespace).get("lag") == 1200, what="status.lag 1200")
    assert printed(kubectl, namespace)["LAG"] == "1200"
    time.sleep(2 * LAG_INTERVAL)
    assert workers(admin, namespace) == 1 and "desiredReplicas" not in status(admin, namespace)

    series = f'namespace="{namespace}",pipeline="{NAME}"'
    lag = f"sluice_operator_pipeline_lag{{{series}}} 1200.0"
    exported = wait_for(lambda: lag in (text := scrape(operator)) and text, what="the lag in /metrics")
    assert f"sluice_operator_pipeline_partitions{{{series}}} 6.0" in exported
    assert f"sluice_operator_pipeline_desired_replicas{{{series}}} 1.0" in exported
    assert "sluice_operator_leader 1.0" in exported
    assert 'sluice_operator_reconciles_total{result="ok"}' in exported
    assert "sluice_operator_reconcile_queue_depth 0.0" in exported  # all reconciled


def test_a_minor_change_of_the_lag_waits_for_the_refresh_and_a_catch_up_shows_at_once(
    operator: Operator, kubectl: Kubectl, admin: Kube, namespace: str, topic: Topic
) -> None:
    """A busy pipeline's lag wavers at every check: /metrics has each check's figure, the status (one write to the
    API server each) a minor change only each refresh, and a lag down to 0 at the next check."""
    topic.produce(1200)
    manifest = autoscaled(namespace, topic)
    del manifest["spec"]["autoscaling"]
    kubectl.apply(manifest)
    # The second check adds the throughput (0: nothing committed); the figures stand from then on.
    wait_for(lambda: status(admin, namespace).get("throughput") == 0, what="status.throughput 0 with lag 1200")
    assert status(admin, namespace)["lag"] == 1200
    topic.produce(60)  # 1260: under 100 messages and 10% more
    series = f'namespace="{namespace}",pipeline="{NAME}"'
    wait_for(lambda: f"sluice_operator_pipeline_lag{{{series}}} 1260.0" in scrape(operator), what="lag 1260 checked")
    checked = time.monotonic()
    shown = set()
    while time.monotonic() - checked < 3 * LAG_INTERVAL:  # three more checks of a lag of 1260
        shown.add(status(admin, namespace)["lag"])
        time.sleep(0.2)
    assert shown == {1200}, "a minor change was written before the refresh"
    wait_for(
        lambda: status(admin, namespace)["lag"] == 1260, timeout=STATUS_REFRESH + 5, what="status.lag 1260 refreshed"
    )

    topic.commit(f"{namespace}.{NAME}", 210)  # all 1,260 messages: caught up
    committed = time.monotonic()
    wait_for(lambda: status(admin, namespace)["lag"] == 0, timeout=STATUS_REFRESH, what="status.lag 0")
    assert time.monotonic() - committed < STATUS_REFRESH / 2, "the catch-up waited for the refresh"
    assert printed(kubectl, namespace)["LAG"] == "0"


def test_a_lag_the_operator_cannot_read_is_told_once_and_leaves_the_workers(
    operator: Operator, kubectl: Kubectl, admin: Kube, namespace: str, topic: Topic
) -> None:
    """Brokers the operator cannot reach (here: a port nothing listens on; in a cluster, e.g. an address only
    the workers' network reaches, with no brokers in their Secret): one LagUnknown Warning naming the address,
    no LAG, the workers as they are."""
    with socket.socket() as probe:  # a free loopback port, closed again: connections to it are refused
        probe.bind(("127.0.0.1", 0))
        nowhere = f"127.0.0.1:{probe.getsockname()[1]}"
    manifest = autoscaled(namespace, topic, minReplicas=2)
    manifest["spec"]["source"]["bootstrapServers"] = nowhere
    manifest["spec"]["replicas"] = 3
    kubectl.apply(manifest)
    (told,) = wait_for(lambda: messages(admin, namespace, "LagUnknown"), timeout=60, what="a LagUnknown event")
    assert f"from spec.source.bootstrapServers {nowhere}" in told, told
    assert "autoscaling keeps the workers as they are" in told, told
    time.sleep(4 * LAG_INTERVAL)  # more checks fail the same way: still one event, nothing decided
    assert messages(admin, namespace, "LagUnknown") == [told]
    assert status(admin, namespace).get("lag") is None
    header, row = kubectl.run("get", "dp", NAME, "-n", namespace).stdout.splitlines()
    start, end = header.index("LAG"), header.index("TOPICS")  # the columns are aligned: read the LAG cell
    assert row[start:end].strip() == "", row
    assert workers(admin, namespace) == 3


def test_the_brokers_of_the_workers_secret_are_where_the_lag_is_read_when_the_specs_address_does_not_answer(
    operator: Operator, kubectl: Kubectl, admin: Kube, namespace: str, topic: Topic
) -> None:
    """The field report's case: spec.source.bootstrapServers is an address only the workers reach (the sample's
    127.0.0.1:9092, the operator pod's own loopback) and SLUICE_KAFKA_BOOTSTRAP_SERVERS in the workers' Secret
    `<pipeline>-credentials` says where the brokers are. The operator reads the lag there, as the workers do."""
    with socket.socket() as probe:  # free loopback ports, closed again: connections to them are refused
        probe.bind(("127.0.0.1", 0))
        loopback_only = f"127.0.0.1:{probe.getsockname()[1]}"
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        moved_away = f"127.0.0.1:{probe.getsockname()[1]}"
    override = "SLUICE_KAFKA_BOOTSTRAP_SERVERS"

    def workers_secret(brokers: str) -> dict[str, Any]:
        metadata = {"name": f"{NAME}-credentials", "namespace": namespace}
        return {"apiVersion": "v1", "kind": "Secret", "metadata": metadata, "stringData": {override: brokers}}

    kubectl.apply(workers_secret(topic.bootstrap_servers))
    manifest = autoscaled(namespace, topic)
    manifest["spec"]["source"]["bootstrapServers"] = loopback_only
    topic.produce(300)
    kubectl.apply(manifest)
    wait_for(lambda: status(admin, namespace).get("lag") == 300, what="status.lag 300 from the Secret's brokers")
    wait_for(lambda: workers(admin, namespace) == 3, what="3 workers")
    assert printed(kubectl, namespace)["LAG"] == "300"
    # Never blamed on the spec's address (a first read of a new group may meet "Coordinator load in progress").
    from_the_secret = f"from {override} {topic.bootstrap_servers} of Secret {NAME}-credentials"
    assert all(from_the_secret in told for told in messages(admin, namespace, "LagUnknown"))

    # The Secret now names brokers nobody answers at: the event names them and where they came from.
    kubectl.apply(workers_secret(moved_away))
    moved = f"from {override} {moved_away} of Secret {NAME}-credentials"
    told = wait_for(
        lambda: [m for m in messages(admin, namespace, "LagUnknown") if moved in m],
        timeout=60,
        what="a LagUnknown event naming the Secret's new brokers",
    )
    assert len(told) == 1 and "autoscaling keeps the workers as they are" in told[0], told
    wait_for(lambda: status(admin, namespace).get("lag") is None, what="no lag while the brokers do not answer")


def test_a_secured_clusters_lag_is_read_with_the_pipelines_secrets_and_scales_the_workers(
    operator: Operator, kubectl: Kubectl, admin: Kube, namespace: str, topic: Topic, kafka: Any
) -> None:
    # The workers' brokers over SASL_SSL: the operator reads the lag with the CA and the login of their Secrets.
    tls_dir = Path(kafka.service.endpoints["tls_dir"])
    user, password = SCRAM_USER
    kubectl.run("create", "secret", "generic", "kafka-ca", f"--from-file=ca.crt={tls_dir / 'ca.crt'}", "-n", namespace)
    kubectl.run("create", "secret", "generic", "kafka-login", f"--from-literal=username={user}",
                f"--from-literal=password={password}", "-n", namespace)  # fmt: skip
    manifest = autoscaled(namespace, topic)
    manifest["spec"]["source"].update(
        bootstrapServers=kafka.service.endpoints["sasl_ssl"],
        tls={"ca": {"secret": "kafka-ca"}},
        auth={"secret": "kafka-login", "mechanism": "SCRAM-SHA-512"},
    )
    topic.produce(300)
    kubectl.apply(manifest)
    wait_for(lambda: status(admin, namespace).get("lag") == 300, what="status.lag 300 over SASL_SSL")
    wait_for(lambda: workers(admin, namespace) == 3, what="3 workers")
    assert messages(admin, namespace, "LagUnknown") == []
    assert printed(kubectl, namespace)["LAG"] == "300"
