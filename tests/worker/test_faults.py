"""Reliability under failure, against real servers: what the talk did with `docker pause`, and more."""

from __future__ import annotations

import time

from .harness import CommitAuditor, in_background, running


def _wait(condition, timeout: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out after {timeout}s waiting for {what}"
        time.sleep(0.2)


def test_cassandra_paused_20s_while_messages_flow(pipeline, make_worker, cassandra) -> None:  # type: ignore[no-untyped-def]
    pipeline.produce(500)
    with CommitAuditor(pipeline) as audit, running(make_worker(pipeline.manifest)) as worker:
        worker.wait_ready()
        pipeline.wait_for_rows(500)
        with cassandra.paused(seconds=20):
            producing = in_background(pipeline.produce, 500, pace_seconds=8)
            _wait(lambda: not worker.ready(), 15, "/readyz to turn false while Cassandra is paused")
            committed_early = pipeline.committed()
            producing.join(30)
            time.sleep(max(0.0, 18 - 8))
            committed_late = pipeline.committed()
            assert worker.proc.poll() is None, "the worker must ride out the outage, not crash"
        rows = pipeline.wait_for_rows(1000)
        worker.wait_ready(60)
        _wait(lambda: pipeline.committed() == {0: 1000}, 30, "the backlog to be committed")
        assert worker.stop()[0] == 0

    assert committed_early == committed_late, "an offset was committed while Cassandra was paused"
    assert committed_late[0] <= 500, "messages produced during the pause were committed unwritten"
    assert rows == pipeline.expected_rows()  # nothing lost: the table gained exactly the 1,000 rows
    assert audit.violations == []


def test_cassandra_killed_down_30s_and_restarted(pipeline, make_worker, cassandra) -> None:  # type: ignore[no-untyped-def]
    pipeline.produce(500)
    with CommitAuditor(pipeline) as audit, running(make_worker(pipeline.manifest)) as worker:
        worker.wait_ready()
        pipeline.wait_for_rows(500)
        cassandra.kill()
        try:
            down_since = time.monotonic()
            pipeline.produce(500, pace_seconds=5)
            _wait(lambda: not worker.ready(), 20, "/readyz to turn false while Cassandra is down")
            time.sleep(max(0.0, 30 - (time.monotonic() - down_since)))
            assert worker.proc.poll() is None, "the worker must not crash-loop while Cassandra is down"
        finally:
            cassandra.start()
        rows = pipeline.wait_for_rows(1000, timeout=180)
        worker.wait_ready(60)
        assert worker.stop()[0] == 0
    assert rows == pipeline.expected_rows()
    assert audit.violations == []


def test_a_crashed_workers_replacement_writes_within_10s(pipeline, make_worker) -> None:  # type: ignore[no-untyped-def]
    """A pod that crashed never left the group: its replacement waits for the group to give up on it, which
    the default spec.source.sessionTimeoutMs (6 s) bounds. `make bench` reports the median of such runs."""
    producing = in_background(pipeline.produce, 1500, pace_seconds=15)
    with CommitAuditor(pipeline) as audit:
        crashed = make_worker(pipeline.manifest).start()
        _wait(lambda: crashed.rows_written() > 0, 60, "the first rows")
        crashed.kill()
        replacement = make_worker(pipeline.manifest).start()
        started = time.monotonic()
        _wait(lambda: replacement.rows_written() > 0, 30, "the replacement's first row")
        took = time.monotonic() - started
        producing.join(60)
        rows = pipeline.wait_for_rows(1500)
        _wait(lambda: pipeline.committed() == {0: 1500}, 60, "every offset to be committed")
        assert replacement.stop()[0] == 0
    assert took < 10, f"the replacement wrote its first row {took:.1f}s after it started"
    assert rows == pipeline.expected_rows()
    assert audit.violations == []
    print(f"the replacement wrote its first row {took:.1f}s after it started")


def test_kafka_broker_restarted_mid_stream(pipeline, make_worker, kafka) -> None:  # type: ignore[no-untyped-def]
    pipeline.produce(1000)
    with CommitAuditor(pipeline) as audit, running(make_worker(pipeline.manifest)) as worker:
        worker.wait_ready()
        _wait(lambda: pipeline.written() >= 300, 60, "the first rows")
        kafka.restart()
        pipeline.produce(1000)
        rows = pipeline.wait_for_rows(2000, timeout=180)
        _wait(lambda: pipeline.committed() == {0: 2000}, 60, "every offset to be committed")
        assert worker.stop()[0] == 0
    assert rows == pipeline.expected_rows()
    assert audit.violations == []


def test_kafka_paused_20s_writing_resumes_within_10s_of_its_return(pipeline, make_worker, kafka) -> None:  # type: ignore[no-untyped-def]
    """The broker stalls (SIGSTOP: a long GC pause, a frozen VM) with messages waiting, then returns: the worker
    writes them within seconds, without a restart, and nothing is lost or committed unwritten."""
    pipeline.produce(500)
    with CommitAuditor(pipeline) as audit, running(make_worker(pipeline.manifest)) as worker:
        worker.wait_ready()
        pipeline.wait_for_rows(500)
        with kafka.paused(seconds=20):
            pass
        back = kafka.resumed_at
        pipeline.produce(500)
        _wait(lambda: pipeline.written() >= 1000, 60, "the messages produced after the broker came back")
        took = time.monotonic() - back
        _wait(lambda: pipeline.committed() == {0: 1000}, 60, "every offset to be committed")
        assert worker.proc.poll() is None, "the worker must ride out the stall, not crash"
        assert worker.stop()[0] == 0
    print(f"writing again {took:.1f}s after the broker came back")
    assert took < 10, f"the rows produced after the broker came back were written only {took:.1f}s later"
    assert pipeline.rows() == pipeline.expected_rows()
    assert audit.violations == []


def test_three_workers_scaled_1_3_1_while_producing(make_pipeline, make_worker) -> None:  # type: ignore[no-untyped-def]
    pipeline = make_pipeline(partitions=6)
    producing = in_background(pipeline.produce, 3000, pace_seconds=25)
    with CommitAuditor(pipeline) as audit:
        first = make_worker(pipeline.manifest).start()
        first.wait_ready()
        _wait(lambda: pipeline.written() >= 300, 60, "the first rows")
        others = [make_worker(pipeline.manifest).start() for _ in range(2)]
        for worker in others:
            worker.wait_ready()
        _wait(
            lambda: all(w.metric("sluice_rows_written_total") > 0 for w in [first, *others]),
            60,
            "every worker to take a share of the partitions",
        )
        _wait(lambda: pipeline.written() >= 1500, 90, "half of the rows")
        for worker in others:
            assert worker.stop()[0] == 0
        producing.join(60)
        rows = pipeline.wait_for_rows(3000, timeout=120)
        _wait(lambda: sum(pipeline.committed().values()) == 3000, 60, "every offset to be committed")
        assert first.stop()[0] == 0
    assert rows == pipeline.expected_rows()
    assert audit.violations == []


def test_exits_within_the_grace_period_with_cassandra_paused_and_dead_letters_pending(  # type: ignore[no-untyped-def]
    pipeline, make_worker, cassandra
) -> None:
    """Nothing can finish: writes wait on a paused Cassandra, and a Kafka quota on the worker's client makes
    the broker acknowledge dead letters seconds late. Drain, commit, dead-letter flush and close share one
    deadline, so the worker still exits inside terminationGracePeriodSeconds, before a kubelet's SIGKILL."""
    grace, margin = 12, 5
    manifest = pipeline.write_manifest(
        pipeline.workdir / "grace.yaml",
        terminationGracePeriodSeconds=grace,
        delivery={"shutdownMarginSeconds": margin},
    )
    pipeline.throttle_produce(f"sluice-{pipeline.group_id}", bytes_per_second=1)  # the worker's client.id
    pipeline.produce(200, poison_every=20)
    with running(make_worker(manifest)) as worker:
        worker.wait_ready()
        pipeline.wait_for_rows(190)
        with cassandra.paused():
            pipeline.produce(200, poison_every=10)
            _wait(lambda: not worker.ready(), 20, "/readyz to turn false while Cassandra is paused")
            code, seconds = worker.stop(timeout=grace + 30)
            log = worker.log(400)
    assert code == 0, log
    assert seconds < grace, f"exited {seconds:.1f}s after SIGTERM, past the {grace}s grace period:\n{log}"
    assert "dead letters not acknowledged by the deadline" in log, log  # they were pending to the end
    committed = pipeline.committed().get(0, 0)
    assert committed <= 200, "a message produced while Cassandra was paused was committed"
    written = pipeline.row_ids()
    assert all(e.id in written for e in pipeline.events if e.poison is None and e.offset < committed)
    print(f"exited {seconds:.1f}s after SIGTERM (grace {grace}s, budget {grace - margin}s)")
