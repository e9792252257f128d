"""The write bookkeeping: the in-flight limit, answers from other threads, retries, and partitions let go."""

from __future__ import annotations

import threading
from collections.abc import Sequence

from sluice_worker.model import RetryBackoff
from sluice_worker.transform import Record
from sluice_worker.writes import PendingRow, Write, WriteCallback, Writes, backoff_seconds


class Gauge:
    value = 0.0

    def set(self, value: float) -> None:
        self.value = value


def write(partition: int, offset: int) -> Write:
    return Write([PendingRow(Record("t", partition, offset, 0), statement=None)])


def test_the_in_flight_limit_and_answers_from_another_thread() -> None:
    sent: list[WriteCallback] = []
    gauge = Gauge()
    writes = Writes(lambda rows, on_done: sent.append(on_done), gauge)
    writes.waiting.extend(write(0, offset) for offset in range(3))
    writes.send_waiting(limit=2)
    assert (len(sent), writes.in_flight, gauge.value, len(writes.waiting)) == (2, 2, 2, 1)

    failure = TimeoutError("no answer")
    answering = threading.Thread(target=lambda: (sent[0](None), sent[1](failure)))
    answering.start()
    answering.join()
    writes.wait_for_answer(1.0)
    answers = sorted((w.rows[0].record.offset, error) for w, error in writes.answers())  # peeking reorders
    assert answers == [(0, None), (1, failure)]
    assert (writes.in_flight, gauge.value) == (0, 0)


def test_a_write_the_sink_cannot_take_counts_as_failed() -> None:
    def refuse(rows: Sequence[PendingRow], on_done: WriteCallback) -> None:
        raise ConnectionError("no host")

    writes = Writes(refuse, Gauge())
    writes.waiting.append(write(0, 7))
    writes.send_waiting(limit=1)
    ((failed, error),) = writes.answers()
    assert failed.rows[0].record.offset == 7 and isinstance(error, ConnectionError)


def test_retries_come_first_when_due_unless_their_partition_was_let_go() -> None:
    writes = Writes(lambda rows, on_done: None, Gauge())
    kept, dropped = write(0, 1), write(1, 1)
    writes.waiting.append(write(0, 2))
    writes.retry(kept, 0)
    writes.retry(dropped, 0)
    writes.let_go([("t", 1)])
    writes.run_due()
    assert [w.rows[0].record.offset for w in writes.waiting] == [1, 2]
    assert kept.attempt == 1


def test_backoff_grows_to_its_ceiling_with_jitter() -> None:
    backoff = RetryBackoff(initial_ms=100, max_ms=1000)
    assert 0.05 <= backoff_seconds(backoff, 0) <= 0.1
    assert 0.2 <= backoff_seconds(backoff, 2) <= 0.4
    assert 0.5 <= backoff_seconds(backoff, 40) <= 1.0
