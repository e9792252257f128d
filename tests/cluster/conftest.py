"""Fixtures of the three-node suite: three Kafka brokers and three Cassandra nodes, and pipelines replicated on them."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from confluent_kafka.admin import AdminClient
from sluice_stack import Stack

from tests.conftest import CassandraServer, KafkaServer, running_stack
from tests.worker.harness import PipelineUnderTest

NODES = 3


class ThreeNodes:
    """`kafka-1..3` (one cluster, RF 3, min.insync.replicas 2) and `cassandra-1..3` (one ring on 127.0.0.1-3)."""

    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self.brokers = [KafkaServer(stack, name) for name in stack.members("kafka")]
        self.nodes = [CassandraServer(stack, name) for name in stack.members("cassandra")]

    @property
    def bootstrap(self) -> str:
        return ",".join(broker.bootstrap_servers for broker in self.brokers)

    @property
    def contact_points(self) -> str:
        return ",".join(node.contact_point for node in self.nodes)

    def partition(self, topic: str, partition: int = 0) -> tuple[KafkaServer, list[int]]:
        """The broker leading `partition` of `topic`, and the ids of its in-sync replicas."""
        metadata = AdminClient({"bootstrap.servers": self.bootstrap}).list_topics(topic, timeout=10)
        state = metadata.topics[topic].partitions[partition]
        leader = state.leader
        assert leader > 0, f"{topic}[{partition}] has no leader"
        return self.brokers[leader - 1], sorted(state.isrs)

    def restore(self) -> None:
        """Starts whatever a test left killed, so the next test finds all three of each."""
        for server in [*self.brokers, *self.nodes]:
            if not server.service.alive:
                server.start()


@pytest.fixture(scope="module")
def three_nodes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ThreeNodes]:
    """`SLUICE_STACK_NODES=3 make stack-up`'s servers if they run, else three of each for this module only."""
    running = running_stack(nodes=NODES)
    if running is not None and running.has("kafka") and running.has("cassandra"):
        yield ThreeNodes(running)
        return
    own = Stack(tmp_path_factory.mktemp("three-nodes"), nodes=NODES)
    try:
        own.up(["kafka", "cassandra"])
        yield ThreeNodes(own)
    finally:
        own.down()


@pytest.fixture
def cluster(three_nodes: ThreeNodes) -> Iterator[ThreeNodes]:
    yield three_nodes
    three_nodes.restore()


@pytest.fixture
def make_replicated_pipeline(cluster: ThreeNodes, tmp_path: Path) -> Iterator[Callable[..., PipelineUnderTest]]:
    made: list[PipelineUnderTest] = []

    def make(partitions: int = 1) -> PipelineUnderTest:
        pipeline = PipelineUnderTest(cluster.bootstrap, cluster.contact_points, tmp_path, partitions, replicas=NODES)
        made.append(pipeline)
        return pipeline

    yield make
    for pipeline in made:
        pipeline.close()
