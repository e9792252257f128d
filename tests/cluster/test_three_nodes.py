"""Three Cassandra nodes and three Kafka brokers, as production runs them: one of them lost mid-stream loses nothing.

Keyspace and topics are replicated three ways; the worker writes at LOCAL_QUORUM and the brokers acknowledge at
min.insync.replicas=2, so any one server may fail. Each test ends with the exact set of rows (read at QUORUM)
and the group's committed offsets checked, while a CommitAuditor watches that no offset is committed unwritten.
"""

from __future__ import annotations

import threading
import time
from collections import Counter

from tests.waiting import wait_for
from tests.worker.harness import CommitAuditor, in_background, running

EVENTS = 1500
PACE_SECONDS = 15.0


def _progress(worker, rows: int, what: str, timeout: float = 30) -> None:  # type: ignore[no-untyped-def]
    """Waits until the worker has written `rows` more rows than now (its own count: no read of a faulty ring)."""
    target = worker.rows_written() + rows
    wait_for(what, lambda: worker.rows_written() >= target, timeout)


def test_a_cassandra_node_killed_mid_stream_writes_go_on_at_quorum_and_it_rejoins(  # type: ignore[no-untyped-def]
    cluster, make_replicated_pipeline, make_worker
) -> None:
    pipeline = make_replicated_pipeline()
    producing = in_background(pipeline.produce, EVENTS, pace_seconds=PACE_SECONDS)
    node = cluster.nodes[2]
    with CommitAuditor(pipeline) as audit, running(make_worker(pipeline.manifest)) as worker:
        worker.wait_ready()
        _progress(worker, 200, "the first rows")
        node.kill()
        try:
            _progress(worker, 300, "300 rows written at LOCAL_QUORUM with one of three nodes dead")
            status, why = worker.readyz()
            assert status == 200, f"two of three replicas answer: the worker must stay ready; /readyz: {status} {why}"
            producing.join(60)
            rows = pipeline.wait_for_rows(EVENTS)
            wait_for("every offset committed", lambda: pipeline.committed() == {0: EVENTS})
        finally:
            rejoined_after = node.start()
        # Back in the ring: a read at ALL needs every replica, the restarted one included, to answer.
        everywhere = wait_for(
            "a read at consistency ALL", lambda: pipeline.rows(consistency="ALL"), 60, tolerate=(Exception,)
        )
        assert worker.stop()[0] == 0
    assert rows == pipeline.expected_rows()
    assert everywhere == pipeline.expected_rows()
    assert audit.violations == []
    print(f"{node.name} answered again {rejoined_after:.1f}s after its restart")


def test_a_cassandra_node_paused_20s_writes_go_on(cluster, make_replicated_pipeline, make_worker) -> None:  # type: ignore[no-untyped-def]
    pipeline = make_replicated_pipeline()
    pipeline.produce(300)
    node = cluster.nodes[1]
    with CommitAuditor(pipeline) as audit, running(make_worker(pipeline.manifest)) as worker:
        worker.wait_ready()
        pipeline.wait_for_rows(300)
        with node.paused(seconds=20):
            producing = in_background(pipeline.produce, EVENTS, pace_seconds=PACE_SECONDS)
            _progress(worker, 500, "500 rows written while one of three nodes is paused", timeout=20)
            producing.join(30)
        rows = pipeline.wait_for_rows(300 + EVENTS)
        wait_for("every offset committed", lambda: pipeline.committed() == {0: 300 + EVENTS})
        assert worker.stop()[0] == 0
    assert rows == pipeline.expected_rows()
    assert audit.violations == []


def test_the_partition_leaders_broker_killed_leadership_moves_and_nothing_is_lost(  # type: ignore[no-untyped-def]
    cluster, make_replicated_pipeline, make_worker
) -> None:
    pipeline = make_replicated_pipeline()
    producing = in_background(pipeline.produce, EVENTS, poison_every=15, pace_seconds=PACE_SECONDS)
    with CommitAuditor(pipeline) as audit, running(make_worker(pipeline.manifest)) as worker:
        worker.wait_ready()
        _progress(worker, 200, "the first rows")
        leader, replicas = cluster.partition(pipeline.topic)
        assert replicas == [1, 2, 3], f"the topic is replicated on all three brokers, in sync: {replicas}"
        committed_before = pipeline.committed().get(0, 0)
        leader.kill()
        try:
            new_leader, in_sync = wait_for(
                "another broker to lead the partition",
                lambda: (lead := cluster.partition(pipeline.topic))[0] is not leader and lead,
                30,
                tolerate=(AssertionError, Exception),
            )
            _progress(worker, 300, "300 rows after the leader's broker died")
            producing.join(60)
            rows = pipeline.wait_for_rows(len(pipeline.expected_rows()))
            wait_for("every offset committed", lambda: pipeline.committed() == {0: EVENTS})
            poison = {e.id: e for e in pipeline.events if e.poison}
            letters = pipeline.dead_letters(len(poison))
        finally:
            leader.start()
        assert worker.stop()[0] == 0
    assert rows == pipeline.expected_rows()
    assert audit.violations == []
    assert len(in_sync) == 2, f"the dead broker left the in-sync replicas: {in_sync}"
    # Every poison message dead-lettered; a second copy only of one read again after the leader moved (offsets
    # not committed yet when the broker died), never one the idempotent dead-letter producer sent twice.
    keys = Counter(letter.key().decode() for letter in letters)
    assert set(keys) == set(poison), "every poison message, and nothing else, in the dead-letter topic"
    for letter in letters:
        key = letter.key().decode()
        if keys[key] > 1:
            assert poison[key].offset >= committed_before, f"{key} dead-lettered {keys[key]} times"
    print(f"leader {leader.name} killed; {new_leader.name} took over; {len(letters)} letters, {len(poison)} poison")


def test_a_rolling_restart_of_all_three_brokers_while_producing(  # type: ignore[no-untyped-def]
    cluster, make_replicated_pipeline, make_worker
) -> None:
    pipeline = make_replicated_pipeline(partitions=3)
    stop = threading.Event()

    def produce_until_stopped() -> None:  # ~100 events/s for as long as the restarts take
        while not stop.is_set():
            pipeline.produce(50, pace_seconds=0.5)

    producing = in_background(produce_until_stopped)
    with CommitAuditor(pipeline) as audit, running(make_worker(pipeline.manifest)) as worker:
        worker.wait_ready()
        _progress(worker, 200, "the first rows")
        took = []
        for broker in cluster.brokers:
            started = time.monotonic()
            broker.restart()
            # As an operator rolls a cluster: the next broker only once every replica is back in sync.
            for partition in range(3):
                wait_for(
                    f"{pipeline.topic}[{partition}] fully in sync after {broker.name}'s restart",
                    lambda p=partition: cluster.partition(pipeline.topic, p)[1] == [1, 2, 3],
                    60,
                    tolerate=(Exception,),
                )
            took.append(time.monotonic() - started)
            _progress(worker, 200, f"rows written after {broker.name}'s restart")
        stop.set()
        producing.join(60)
        produced = len(pipeline.events)
        rows = pipeline.wait_for_rows(produced, timeout=120)
        wait_for("every offset committed", lambda: sum(pipeline.committed().values()) == produced, 60)
        assert worker.stop()[0] == 0
    assert rows == pipeline.expected_rows()
    assert audit.violations == []
    print(f"{produced} events; each broker back in sync after " + ", ".join(f"{s:.1f}s" for s in took))
