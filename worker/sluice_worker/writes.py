"""Write bookkeeping: the sink's requests waiting, in flight and due for retry, and the backoff between tries."""

from __future__ import annotations

import contextlib
import functools
import heapq
import itertools
import logging
import queue
import random
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from .deadline import Deadline
from .model import RetryBackoff
from .offsets import TopicPartition
from .transform import Record, Row

log = logging.getLogger("sluice.writes")

WriteCallback = Callable[[BaseException | None], None]
"""Called with None once the sink has the rows durably, or with the error it failed with."""


@dataclass(slots=True)  # not frozen: one is made per row, and a frozen dataclass costs three times as much to make
class PendingRow:
    """A row to write and the Kafka message it came from (whose offset it holds back until durable)."""

    record: Record
    statement: Any  # what the sink's bind() made of the row; only the sink looks inside
    table: int = 0  # which of the pipeline's tables (a write holds rows of one table)
    size: int = 0  # about the bytes Cassandra counts for it in a batch (the sink's size_of)


class Sink(Protocol):
    """Where rows go; the loop knows it only through this (CassandraSink is the one there is)."""

    def connect(self) -> None: ...

    def bind(self, row: Row, timestamp_us: int, ttl: int | None = None, table: int = 0) -> Any: ...

    def bind_delete(self, key: Row, timestamp_us: int, table: int = 0) -> Any: ...  # raises MissingKey

    def placement_of(self, statement: Any) -> tuple[tuple[object, ...], object]: ...  # (replicas, partition)

    def size_of(self, statement: Any) -> int: ...  # about the bytes Cassandra counts for the row in a batch

    def write(self, rows: Sequence[PendingRow], on_done: WriteCallback) -> None: ...

    def refuses(self, error: BaseException) -> bool: ...

    def healthy(self) -> bool: ...

    def reconnect_if_lost(self) -> None: ...

    def close(self, deadline: Deadline) -> None: ...


class MissingKey(ValueError):
    """A tombstone lacks a primary key column, so no row can be deleted: it is dead-lettered with this reason."""


class Gauge(Protocol):
    def set(self, value: float) -> None: ...


@dataclass
class Write:
    """One request to the sink: rows of one Kafka partition and one table (of the same replicas, when batched)."""

    rows: list[PendingRow]
    attempt: int = 0
    sent_at: float = 0.0

    @property
    def tp(self) -> TopicPartition:
        return (self.rows[0].record.topic, self.rows[0].record.partition)


@dataclass(order=True)
class _Retry:
    due: float
    seq: int
    action: Callable[[], None] = field(compare=False)
    tp: TopicPartition = field(compare=False)


def backoff_seconds(backoff: RetryBackoff, attempt: int) -> float:
    """Capped exponential backoff with jitter, in seconds, before try number `attempt + 1`."""
    ceiling = min(backoff.max_ms, backoff.initial_ms * 2 ** min(attempt, 30)) / 1000
    return float(ceiling * random.uniform(0.5, 1.0))


class Writes:
    """Writes waiting for a slot, in flight, and scheduled for a retry; answers arrive from driver threads."""

    def __init__(self, send: Callable[[Sequence[PendingRow], WriteCallback], None], in_flight: Gauge) -> None:
        self._send_rows, self._in_flight = send, in_flight
        self.waiting: deque[Write] = deque()
        # Writes the sink has yet to answer, by a number: the driver's callback carries only that number, since
        # its request futures are reference cycles that would otherwise keep every row alive until a full GC.
        self._sent: dict[int, Write] = {}
        self._numbers = itertools.count()
        self._answers: queue.SimpleQueue[tuple[int, BaseException | None]] = queue.SimpleQueue()
        self._retries: list[_Retry] = []
        self._seq = itertools.count()

    @property
    def in_flight(self) -> int:
        return len(self._sent)

    def send_waiting(self, limit: int) -> None:
        """Sends waiting writes while fewer than `limit` are in flight."""
        while self.waiting and len(self._sent) < limit:
            self._send(self.waiting.popleft())

    def _send(self, write: Write) -> None:
        number = next(self._numbers)
        self._sent[number] = write
        self._in_flight.set(len(self._sent))
        write.sent_at = time.monotonic()
        try:
            self._send_rows(write.rows, functools.partial(self._answered, number))
        except Exception as exc:  # e.g. no host available right now: same path as a failed write
            self._answered(number, exc)

    def _answered(self, number: int, error: BaseException | None) -> None:
        """Called on a driver thread: hands the answer to the loop."""
        self._answers.put((number, error))

    def answers(self) -> Iterator[tuple[Write, BaseException | None]]:
        """The writes answered since the last call, each with its error (None: durable); frees their slots."""
        while True:
            try:
                number, error = self._answers.get_nowait()
            except queue.Empty:
                return
            write = self._sent.pop(number)
            self._in_flight.set(len(self._sent))
            yield write, error

    def wait_for_answer(self, timeout: float) -> None:
        """Returns when an answer is there to take, or after `timeout` seconds."""
        with contextlib.suppress(queue.Empty):
            self._answers.put(self._answers.get(timeout=timeout))  # peek; taken by answers()

    def schedule(self, delay: float, tp: TopicPartition, action: Callable[[], None]) -> None:
        """Runs `action` from `run_due()` once `delay` seconds have passed, unless `tp` is let go first."""
        heapq.heappush(self._retries, _Retry(time.monotonic() + delay, next(self._seq), action, tp))

    def retry(self, write: Write, delay: float) -> None:
        """Puts a failed write first in line again after `delay` seconds."""
        write.attempt += 1
        self.schedule(delay, write.tp, lambda: self.waiting.appendleft(write))

    def run_due(self) -> None:
        now = time.monotonic()
        while self._retries and self._retries[0].due <= now:
            heapq.heappop(self._retries).action()

    def let_go(self, tps: Iterable[TopicPartition]) -> None:
        """Forgets the waiting writes and retries of partitions this worker no longer owns."""
        gone = set(tps)
        self.waiting = deque(w for w in self.waiting if w.tp not in gone)
        self._retries = [r for r in self._retries if r.tp not in gone]
        heapq.heapify(self._retries)


def connect_with_retry(
    sink: Sink,
    backoff: Callable[[int], float],
    stop: Callable[[], bool],
    failed: Callable[[str], None] = lambda _: None,
) -> bool:
    """Connects, retrying with `backoff(attempt)` seconds between tries until connected or `stop()`; each
    failure is told to `failed` in words (for /readyz)."""
    attempt = 0
    while not stop():
        try:
            sink.connect()
            return True
        except Exception as exc:
            failed(str(exc))
            delay = backoff(attempt)
            log.warning("cannot connect to Cassandra: %s; retrying in %.1fs", exc, delay)
            deadline = time.monotonic() + delay
            while time.monotonic() < deadline and not stop():
                time.sleep(0.1)
            attempt += 1
    return False
