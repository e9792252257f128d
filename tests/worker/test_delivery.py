"""End to end against real Kafka and Cassandra: every message becomes exactly its row, or a dead letter."""

from __future__ import annotations

import json
import signal
import threading
import time
from pathlib import Path

from tests.waiting import wait_for

from .harness import CommitAuditor, running

N = 1000


def test_baseline_every_message_becomes_its_row(pipeline, make_worker) -> None:  # type: ignore[no-untyped-def]
    pipeline.produce(N)
    with CommitAuditor(pipeline) as audit, running(make_worker(pipeline.manifest)) as worker:
        worker.wait_ready()
        rows = pipeline.wait_for_rows(N)
        assert worker.stop()[0] == 0
    assert rows == pipeline.expected_rows()
    assert audit.samples > 0 and audit.violations == []
    assert pipeline.committed() == {0: N}


def test_poison_messages_go_to_the_dead_letter_topic_with_reasons(pipeline, make_worker) -> None:  # type: ignore[no-untyped-def]
    pipeline.produce(N, poison_every=100)  # 10 poison messages of three kinds, spread through the stream
    poison = [e for e in pipeline.events if e.poison]
    with CommitAuditor(pipeline) as audit, running(make_worker(pipeline.manifest)) as worker:
        rows = pipeline.wait_for_rows(N - len(poison))
        letters = pipeline.dead_letters(len(poison))
        deadline = time.monotonic() + 30
        while pipeline.committed().get(0) != N and time.monotonic() < deadline:
            time.sleep(0.2)
        assert worker.stop()[0] == 0

    assert rows == pipeline.expected_rows()
    assert len(rows) + len(letters) == N
    by_offset = {int(dict(m.headers())["sluice.source.offset"]): dict(m.headers()) for m in letters}
    assert sorted(by_offset) == sorted(e.offset for e in poison)
    for event in poison:
        headers = by_offset[event.offset]
        assert headers["sluice.error"].decode() == event.poison
        assert headers["sluice.reason"]  # a human-readable reason naming the field
        assert headers["sluice.source.topic"].decode() == pipeline.topic
        assert headers["sluice.source.partition"] == b"0"
    wrong_type = next(h for h in by_offset.values() if h["sluice.error"] == b"wrong_type")
    assert b"price" in wrong_type["sluice.reason"]
    missing = next(h for h in by_offset.values() if h["sluice.error"] == b"missing_field")
    assert b"id" in missing["sluice.reason"]
    assert pipeline.committed() == {0: N}  # the pipeline did not stall on them
    assert audit.violations == []


def test_a_filter_writes_only_the_messages_that_pass_and_commits_the_rest(pipeline, make_worker) -> None:  # type: ignore[no-untyped-def]
    # Gophers and stickers only, and none priced 1.0: the others are skipped (counted, committed, not written).
    only = {
        "all": [{"column": "department", "in": ["gophers", "stickers"]}],
        "none": [{"column": "price", "equals": 1}],
    }
    manifest = pipeline.write_manifest(transform={"filter": only})
    pipeline.produce(N)
    expected = {
        key: row for key, row in pipeline.expected_rows().items() if row[2] in ("gophers", "stickers") and row[1] != 1.0
    }
    assert 0 < len(expected) < N - 100  # the filter has something to skip, and something to keep
    audited = CommitAuditor(pipeline, expected=lambda event: event.id in expected)
    with audited as audit, running(make_worker(manifest)) as worker:
        pipeline.wait_for_rows(len(expected))
        deadline = time.monotonic() + 30
        while pipeline.committed().get(0) != N and time.monotonic() < deadline:
            time.sleep(0.2)
        skipped = worker.metric("sluice_messages_skipped_total")
        assert worker.stop()[0] == 0
    assert pipeline.rows() == expected
    assert skipped == N - len(expected)
    assert pipeline.committed() == {0: N}  # skipped messages are committed, not consumed again
    assert audit.violations == []


def test_replay_from_earliest_rewrites_identical_cells(pipeline, make_worker) -> None:  # type: ignore[no-untyped-def]
    pipeline.produce(300)
    with running(make_worker(pipeline.manifest)) as worker:
        pipeline.wait_for_rows(300)
        assert worker.stop()[0] == 0
    query = (
        f"SELECT id, item_name, price, department, event_time, writetime(department) AS wt "
        f"FROM {pipeline.keyspace}.{pipeline.table}"
    )
    before = sorted(pipeline.session.execute(query))

    # A second group reads the topic again from the start into the same table.
    replay = pipeline.write_manifest(
        pipeline.workdir / "replay.yaml", source={"groupId": f"{pipeline.group_id}.replay", "startFrom": "earliest"}
    )
    with running(make_worker(replay)) as worker:
        worker.wait_ready()
        deadline = time.monotonic() + 60
        while worker.metric("sluice_rows_written_total") < 300 and time.monotonic() < deadline:
            time.sleep(0.3)
        assert worker.metric("sluice_rows_written_total") == 300
        assert worker.stop()[0] == 0
    after = sorted(pipeline.session.execute(query))
    assert after == before  # same rows, same values, same write timestamps


def test_sigterm_mid_stream_exits_inside_the_budget_and_nothing_is_redelivered(pipeline, make_worker) -> None:  # type: ignore[no-untyped-def]
    pipeline.produce(3000)
    first = make_worker(pipeline.manifest, SLUICE_SHUTDOWN_BUDGET_SECONDS="10")
    with running(first):
        while pipeline.written() < 500:
            time.sleep(0.05)
        code, seconds = first.stop()
    assert code == 0 and seconds < 10
    written = pipeline.row_ids()
    committed = pipeline.committed()[0]
    # What is committed is exactly what is written: nothing durable was left uncommitted, nothing ahead.
    assert written == {e.id for e in pipeline.events if e.offset < committed}

    with running(make_worker(pipeline.manifest)) as second:
        second.wait_ready()
        pipeline.wait_for_rows(3000)
        consumed = second.metric("sluice_messages_consumed_total")
        assert second.stop()[0] == 0
    assert consumed == 3000 - committed  # the next worker starts where the first one committed
    assert pipeline.rows() == pipeline.expected_rows()


def test_worker_sigkilled_mid_stream_loses_nothing(pipeline, make_worker) -> None:  # type: ignore[no-untyped-def]
    producing = threading.Thread(target=pipeline.produce, args=(3000,), kwargs={"pace_seconds": 15})
    producing.start()  # paced, so that each kill lands mid-stream
    with CommitAuditor(pipeline) as audit:
        for kill_at in (300, 1200, 2100):
            with running(make_worker(pipeline.manifest)) as worker:
                while pipeline.written() < kill_at:
                    assert worker.proc.poll() is None, worker.log()
                    time.sleep(0.02)
                worker.signal(signal.SIGKILL)
        producing.join(60)
        with running(make_worker(pipeline.manifest)) as worker:
            rows = pipeline.wait_for_rows(3000)
            assert worker.stop()[0] == 0
    assert rows == pipeline.expected_rows()  # replays collapse into the same 3,000 rows
    assert audit.violations == []


def test_rows_share_requests_within_cassandras_batch_limits(pipeline, make_worker, cassandra) -> None:  # type: ignore[no-untyped-def]
    """Small rows go many to a request; rows of 6 KiB each go alone: ten of them in one batch would be 60 KiB,
    which Cassandra refuses (batch_size_fail_threshold, 50 KiB), and each batch over 5 KiB is a WARN in its log."""
    from confluent_kafka import Producer

    pipeline.produce(460)
    wide = {f"wide-{i}": f"gopher-{i}-" + "x" * 6000 for i in range(30)}
    producer = Producer({"bootstrap.servers": pipeline.bootstrap})
    for key, name in wide.items():
        producer.produce(pipeline.topic, key=key, value=json.dumps({"id": key, "item": {"name": name, "price": 1.0}}))
    assert producer.flush(30) == 0
    log = Path(cassandra.service.log_path)
    log_size = log.stat().st_size
    with running(make_worker(pipeline.manifest)) as worker:
        rows = pipeline.wait_for_rows(490)
        wait_for("the worker to count every answered write", lambda: worker.rows_written() >= 490, timeout=30)
        requests = worker.metric("sluice_write_latency_seconds_count")
        assert worker.stop()[0] == 0
    assert {key: rows[key][0] for key in wide} == wide
    assert {key: rows[key] for key in pipeline.expected_rows()} == pipeline.expected_rows()
    assert pipeline.dead_letters(0, timeout=2) == []
    assert requests <= 30 + 460 / 10, f"{requests:.0f} write requests for 460 small rows and 30 wide ones"
    assert _batch_size_warnings(log, log_size) == []


def _batch_size_warnings(log: Path, since: int) -> list[str]:
    """Cassandra's batch size WARN and refusal lines written to its log after byte `since`."""
    with log.open("rb") as text:
        text.seek(since)
        lines = text.read().decode(errors="replace").splitlines()
    return [line for line in lines if "exceeding specified threshold" in line or "too large" in line]


def test_a_partitions_rows_share_requests_past_the_byte_limit(pipeline, make_worker, cassandra) -> None:  # type: ignore[no-untyped-def]
    """Rows of one Cassandra partition go together, though other partitions' rows come between them, and such a
    request is held to maxRowsPerWrite but not to maxBytesPerWrite: Cassandra counts no batch of one partition
    against its batch size thresholds. Partitioned by department (four), 2,000 rows of about 170 bytes go up to 50
    a request, where rows of many partitions go 23 a request under the default 4 KiB: at least 87 requests."""
    manifest = pipeline.write_manifest(
        sink={"createTable": {"primaryKey": ["department", "id"]}},
        transform={"required": ["id", "item_name", "department"]},
    )
    pipeline.produce(2000)
    log = Path(cassandra.service.log_path)
    log_size = log.stat().st_size
    with running(make_worker(manifest)) as worker:
        rows = pipeline.wait_for_rows(2000)
        wait_for("the worker to count every answered write", lambda: worker.rows_written() >= 2000, timeout=30)
        requests = worker.metric("sluice_write_latency_seconds_count")
        assert worker.stop()[0] == 0
    assert rows == pipeline.expected_rows()
    assert pipeline.dead_letters(0, timeout=2) == []
    assert requests <= 70, f"{requests:.0f} write requests for 2,000 rows of four partitions"
    assert _batch_size_warnings(log, log_size) == []
