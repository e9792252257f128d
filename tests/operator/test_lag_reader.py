"""The operator's lag reader against a real Kafka: what it reads, what it says when it cannot, which clients it keeps,
and its child process: replaced when it dies or sticks, gone with the operator."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic
from sluice_operator.kafka import LagReader, LagUnavailable, admin_config
from sluice_operator.lag import PartitionOffsets, Snapshot
from sluice_operator.offsets import OffsetReader
from sluice_stack.process import free_port
from sluice_worker.model import SourceSpec

from tests.waiting import wait_for

pytestmark = pytest.mark.kafka

GROUP = "lag-reader"
PARTITIONS = 2
PRODUCED, COMMITTED = 4, 3  # per partition
EXPECTED = {p: PartitionOffsets(earliest=0, latest=PRODUCED, committed=COMMITTED) for p in range(PARTITIONS)}


@pytest.fixture(scope="module")
def source(kafka) -> SourceSpec:  # type: ignore[no-untyped-def]
    """A topic of PARTITIONS partitions with PRODUCED messages each, COMMITTED of them committed by GROUP."""
    topic = f"lag-reader-{uuid.uuid4().hex[:8]}"
    bootstrap = kafka.bootstrap_servers
    admin = AdminClient({"bootstrap.servers": bootstrap})  # kept until the topic is made: its end ends the request
    admin.create_topics([NewTopic(topic, PARTITIONS, 1)])[topic].result(30)
    producer = Producer({"bootstrap.servers": bootstrap})
    for i in range(PRODUCED * PARTITIONS):
        producer.produce(topic, value=b"%d" % i, partition=i % PARTITIONS)
    assert producer.flush(30) == 0
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": GROUP})
    try:
        offsets = [TopicPartition(topic, p, COMMITTED) for p in range(PARTITIONS)]
        consumer.commit(offsets=offsets, asynchronous=False)
    finally:
        consumer.close()
    return SourceSpec(bootstrapServers=bootstrap, topics=[topic])


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that accepts connections (the kernel does) and never answers: a broker that stalls mid-request."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(64)
        yield listener.getsockname()[1]


def by_partition(snapshot: Snapshot) -> dict[int, PartitionOffsets]:
    return {partition: offsets for (_, partition), offsets in snapshot.partitions.items()}


def running(pid: int) -> bool:
    """Whether the process runs (a zombie waiting for its parent to reap it does not)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError):
        return False


def test_the_reader_process_reads_what_the_reader_in_process_reads(source: SourceSpec) -> None:
    reader = LagReader(timeout=10)
    try:
        through_the_child = asyncio.run(reader.read(source, GROUP))
        child = reader.pid
    finally:
        reader.close()
    in_process = asyncio.run(OffsetReader(timeout=10).read(admin_config(source), source.topics, GROUP))
    assert by_partition(through_the_child) == by_partition(in_process) == EXPECTED
    assert child is not None and child != os.getpid()
    assert not running(child), "close() left the reader process running"


def test_a_reader_process_that_aborts_mid_read_fails_those_reads_and_the_next_read_starts_another(
    source: SourceSpec, silent_port: int
) -> None:
    """What librdkafka's assertion (its issue #4605) does to the process it runs in: SIGABRT. The reads in flight
    fail at once as unanswered (not after their 10 s timeout), the operator lives on, and the next read works."""
    stalled = SourceSpec(bootstrapServers=f"127.0.0.1:{silent_port}", topics=["events"])
    deaths: list[int] = []
    reader = LagReader(timeout=10, on_death=lambda: deaths.append(1))

    async def abort_mid_read() -> tuple[int, list[BaseException | object], float]:
        reads = [asyncio.create_task(reader.read(stalled, f"group-{i}")) for i in range(5)]
        await asyncio.sleep(2)  # the child has started and holds the five reads
        aborted = reader.pid
        assert aborted is not None
        os.kill(aborted, signal.SIGABRT)
        killed = time.monotonic()
        results = await asyncio.gather(*reads, return_exceptions=True)
        return aborted, results, time.monotonic() - killed

    try:
        aborted, results, failed_after = asyncio.run(abort_mid_read())
        for result in results:
            assert isinstance(result, LagUnavailable), result
            assert not result.answered
            assert f"the lag reader process (pid {aborted}) died of SIGABRT" in str(result)
        assert failed_after < 5, f"the reads failed {failed_after:.1f} s after the abort, not at once"
        assert deaths == [1]
        assert by_partition(asyncio.run(reader.read(source, GROUP))) == EXPECTED
        assert reader.pid not in (None, aborted)
    finally:
        reader.close()


def test_a_stuck_reader_process_is_killed_at_the_deadline_and_replaced(source: SourceSpec) -> None:
    reader = LagReader(timeout=10, deadline=3)
    try:
        asyncio.run(reader.read(source, GROUP))
        stuck = reader.pid
        assert stuck is not None
        os.kill(stuck, signal.SIGSTOP)
        started = time.monotonic()
        with pytest.raises(LagUnavailable, match=f"pid {stuck}. gave no answer in 3 s; killed it") as raised:
            asyncio.run(reader.read(source, GROUP))
        assert not raised.value.answered
        assert time.monotonic() - started < 6
        wait_for("the stuck reader process to be gone", lambda: not running(stuck), timeout=10)
        assert by_partition(asyncio.run(reader.read(source, GROUP))) == EXPECTED
        assert reader.pid not in (None, stuck)
    finally:
        reader.close()


def test_the_reader_process_ends_when_the_operator_is_killed(source: SourceSpec) -> None:
    """SIGKILL gives the operator no chance to stop its child: the child ends when its socket closes."""
    script = (
        "import asyncio, os, signal, sys\n"
        "from sluice_operator.kafka import LagReader\n"
        "from sluice_worker.model import SourceSpec\n"
        "reader = LagReader(timeout=10)\n"
        "asyncio.run(reader.read(SourceSpec(bootstrapServers=sys.argv[1], topics=[sys.argv[2]]), sys.argv[3]))\n"
        "print(reader.pid, flush=True)\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    operator = subprocess.run(
        [sys.executable, "-c", script, source.bootstrap_servers, source.topics[0], GROUP],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert operator.returncode == -signal.SIGKILL, operator.stderr
    child = int(operator.stdout)
    wait_for(f"the reader process {child} to end after its operator", lambda: not running(child), timeout=10)


def test_a_missing_topic_is_named_and_the_client_kept_for_the_next_read(kafka) -> None:  # type: ignore[no-untyped-def]
    """With many pipelines waiting for their topic, each lag turn must not open a new admin client per pipeline:
    the broker answered, so the connection is good."""
    reader = OffsetReader(timeout=10)
    topic = f"missing-{uuid.uuid4().hex[:8]}"
    config = admin_config(SourceSpec(bootstrapServers=kafka.bootstrap_servers, topics=[topic]))
    for _ in range(2):
        with pytest.raises(LagUnavailable, match=topic) as raised:
            asyncio.run(reader.read(config, [topic], "no-such-group"))
        assert raised.value.answered
        assert reader.clients == 1


def test_brokers_that_do_not_answer_leave_no_client_reconnecting() -> None:
    """A dead cluster: the read fails within its timeout and the client is dropped, not left retrying forever."""
    config = admin_config(SourceSpec(bootstrapServers=f"127.0.0.1:{free_port()}", topics=["events"]))  # refused
    reader = OffsetReader(timeout=2)
    with pytest.raises(LagUnavailable) as raised:
        asyncio.run(reader.read(config, ["events"], "group"))
    assert not raised.value.answered
    assert reader.clients == 0
