"""The worker loop: consume from Kafka, transform, write to Cassandra, commit only what is durable."""

from __future__ import annotations

import contextlib
import functools
import gc
import heapq
import itertools
import logging
import os
import queue
import random
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from cassandra import InvalidRequest  # type: ignore[attr-defined]
from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition

from .dead_letters import DeadLetterPublisher, message_headers
from .hooks import load_hook
from .metrics import Health, WorkerMetrics
from .model import DataPipeline
from .offsets import OffsetTracker
from .offsets import TopicPartition as TP
from .settings import WorkerSettings
from .sink import ROWS_PER_BATCH, CassandraSink, PendingRow, connect_with_retry
from .transform import Record, Rejection, compile_transform

log = logging.getLogger("sluice.worker")

# Errors about the row itself (e.g. a value Cassandra cannot store): dead-lettered, never retried.
REJECTED_WRITES = (InvalidRequest,)
REBALANCE_DRAIN_SECONDS = 10.0  # how long a revoked partition's writes may take before we let it go
# Allocations between young-generation collections (Python's default: 700). See tune_garbage_collector().
GC_YOUNG_THRESHOLD = 20_000


@dataclass
class _Write:
    """One Cassandra request: rows of one Kafka partition (and one Cassandra partition, when batched)."""

    rows: list[PendingRow]
    attempt: int = 0
    sent_at: float = 0.0

    @property
    def tp(self) -> TP:
        return (self.rows[0].record.topic, self.rows[0].record.partition)


@dataclass(order=True)
class _Retry:
    due: float
    seq: int
    action: Callable[[], None] = field(compare=False)
    tp: TP = field(compare=False)


class PipelineWorker:
    """Runs one pipeline until `request_stop()`; nothing is committed before it is written or dead-lettered."""

    def __init__(
        self,
        pipeline: DataPipeline,
        settings: WorkerSettings | None = None,
        metrics: WorkerMetrics | None = None,
        health: Health | None = None,
    ) -> None:
        self.settings = settings or WorkerSettings()
        self.spec = self.settings.apply_overrides(pipeline.spec)
        self.group_id = pipeline.group_id  # the environment overrides endpoints only
        self.metrics = metrics or WorkerMetrics()
        self.health = health or Health()
        self.shutdown_budget = self.settings.shutdown_budget(self.spec)
        self._transform = compile_transform(self.spec.transform, load_hook(self.spec.transform))
        self._sink = CassandraSink(self.spec.sink, self.spec.transform.columns(), self.settings.write_timeout_seconds)
        self._offsets = OffsetTracker()
        # Writes Cassandra has yet to answer, by a number: the driver's callback carries only that number, since
        # its request futures are reference cycles that would otherwise keep every row alive until a full GC.
        self._sent: dict[int, _Write] = {}
        self._write_numbers = itertools.count()
        self._completions: queue.SimpleQueue[tuple[int, BaseException | None]] = queue.SimpleQueue()
        self._waiting: deque[_Write] = deque()
        self._retries: list[_Retry] = []
        self._seq = itertools.count()
        self._sink_down = False
        self._paused = False
        self._stop_at: float | None = None
        self._last_commit = self._last_tick = 0.0
        self._consumer: Consumer | None = None
        self._dlq: DeadLetterPublisher | None = None
        self._written = self.metrics.written.labels(self.spec.sink.table)
        self._consumed = functools.cache(self.metrics.consumed.labels)  # one labelled child per topic

    # -- lifecycle -----------------------------------------------------------------------------------

    def request_stop(self) -> None:
        """First call: finish in-flight work and exit within the shutdown budget. Second call: exit now."""
        if self._stop_at is not None:
            log.warning("second stop signal: exiting at once")
            os._exit(130)
        self._stop_at = time.monotonic()
        log.info("stopping: draining in-flight writes budget=%.0fs", self.shutdown_budget)

    @property
    def stopping(self) -> bool:
        return self._stop_at is not None

    def run(self) -> int:
        if not connect_with_retry(self._sink, self._backoff, lambda: self.stopping):
            return 0
        self._set_sink_up(True)
        self._consumer = Consumer(self._consumer_config())
        self._dlq = DeadLetterPublisher(self._client_config())
        self._consumer.subscribe(
            list(self.spec.source.topics),
            on_assign=self._on_assign,
            on_revoke=self._on_revoke,
            on_lost=self._on_lost,
        )
        log.info("consuming topics=%s group=%s", ",".join(self.spec.source.topics), self.group_id)
        tune_garbage_collector()
        try:
            while not self.stopping:
                self._step()
            self._drain(None, self._stop_at + self.shutdown_budget if self._stop_at else time.monotonic())
            self._commit(asynchronous=False)
        finally:
            self._consumer.close()  # leaves the group; revoked partitions were committed above
            self._dlq.flush(5)
            self._sink.close()
        log.info("stopped cleanly outstanding=%d", self._offsets.outstanding())
        return 0

    # -- the loop ------------------------------------------------------------------------------------

    def _step(self) -> None:
        assert self._consumer is not None and self._dlq is not None
        self._tick()
        self._pump()
        if not self._sink_down and len(self._waiting) < self.spec.delivery.max_in_flight:
            # Transform ahead while writes are out: at most a window of writes waits behind the in-flight ones.
            self._set_paused(False)
            batch = self._consumer.consume(self.spec.delivery.max_batch_size, timeout=0.1)
            self._handle(batch)
        elif self._sink_down:
            self._set_paused(True)  # stop fetching, stay in the group: consume() serves rebalances
            self._handle(self._consumer.consume(1, timeout=0.1))
        else:
            self._wait_for_completion(0.05)
        if time.monotonic() - self._last_commit >= self.spec.delivery.commit_interval_ms / 1000:
            self._commit(asynchronous=True)

    def _pump(self) -> None:
        """Handles finished writes, re-queues due retries, sends what the in-flight limit allows."""
        assert self._dlq is not None
        self._process_completions()
        now = time.monotonic()
        while self._retries and self._retries[0].due <= now:
            heapq.heappop(self._retries).action()
        self._send_waiting()
        self._dlq.poll(0)

    def _send_waiting(self) -> None:
        """Frees the slots of answered writes and fills them from the waiting ones."""
        self._process_completions()
        limit = 1 if self._sink_down else self.spec.delivery.max_in_flight  # one probe while down
        while self._waiting and len(self._sent) < limit:
            self._send(self._waiting.popleft())

    def _handle(self, messages: Iterable[Message]) -> None:
        batches: dict[tuple[object, ...], list[PendingRow]] = {}
        consumed: Counter[str] = Counter()
        for message in messages:
            if message.error():
                log.warning("consumer error: %s", message.error())
                continue
            record = _to_record(message)
            tp = (record.topic, record.partition)
            self._offsets.consumed(tp, record.offset)
            consumed[record.topic] += 1
            result = self._transform(record)
            if isinstance(result, Rejection):
                self._dead_letter(record, result)
                continue
            statement = self._sink.bind(result, self._write_timestamp(record))
            key = (record.topic, record.partition, self._sink.replicas_of(statement))
            batch = batches.setdefault(key, [])
            batch.append(PendingRow(record, statement))
            if len(batch) == ROWS_PER_BATCH:  # a write holds rows of one Kafka partition for the same replicas
                self._waiting.append(_Write(batches.pop(key)))
                self._send_waiting()  # keep Cassandra busy while the rest of the batch is transformed
        self._waiting.extend(_Write(batch) for batch in batches.values())
        for topic, count in consumed.items():
            self._consumed(topic).inc(count)
        self._pump()

    def _write_timestamp(self, record: Record) -> int:
        """Microseconds from the record time (plus a tie-break by offset), so a replay rewrites the same cell."""
        if self.spec.sink.use_record_timestamp and record.timestamp_ms > 0:
            return record.timestamp_ms * 1000 + record.offset % 1000
        return time.time_ns() // 1000

    # -- writes --------------------------------------------------------------------------------------

    def _send(self, write: _Write) -> None:
        number = next(self._write_numbers)
        self._sent[number] = write
        self.metrics.in_flight.set(len(self._sent))
        write.sent_at = time.monotonic()
        try:
            self._sink.write(write.rows, functools.partial(self._answered, number))
        except Exception as exc:  # e.g. no host available right now: same path as a failed write
            self._answered(number, exc)

    def _answered(self, number: int, error: BaseException | None) -> None:
        """Called on a driver thread: hands the answer to the loop."""
        self._completions.put((number, error))

    def _wait_for_completion(self, timeout: float) -> None:
        with contextlib.suppress(queue.Empty):
            self._completions.put(self._completions.get(timeout=timeout))  # peek; handled by _pump

    def _process_completions(self) -> None:
        while True:
            try:
                number, error = self._completions.get_nowait()
            except queue.Empty:
                return
            write = self._sent.pop(number)
            self.metrics.in_flight.set(len(self._sent))
            if error is None:
                self.metrics.write_latency.observe(time.monotonic() - write.sent_at)
                self._written.inc(len(write.rows))
                for row in write.rows:
                    self._offsets.done(write.tp, row.record.offset)
                if self._sink_down:
                    log.info("Cassandra is writable again: resuming")
                    self._set_sink_up(True)
            else:
                self._write_failed(write, error)

    def _write_failed(self, write: _Write, error: BaseException) -> None:
        self.metrics.write_errors.labels(type(error).__name__).inc()
        if isinstance(error, REJECTED_WRITES):  # Cassandra refuses the row itself: retrying cannot help
            if len(write.rows) > 1:  # find the bad row(s): retry the batch's rows one by one
                self._waiting.extendleft(_Write([row]) for row in write.rows)
            else:
                self._dead_letter(
                    write.rows[0].record, Rejection(f"Cassandra refused the row: {error}", "write_rejected")
                )
            return
        if not self._sink_down:
            first = write.rows[0].record
            log.warning(
                "Cassandra write failed: pausing consumption partition=%s[%d] offset=%d error=%s",
                first.topic,
                first.partition,
                first.offset,
                error,
            )
            self._set_sink_up(False)
        delay = self._backoff(write.attempt)
        write.attempt += 1
        self.metrics.write_retries.inc()
        self._schedule(delay, write.tp, lambda: self._waiting.appendleft(write))

    def _schedule(self, delay: float, tp: TP, action: Callable[[], None]) -> None:
        heapq.heappush(self._retries, _Retry(time.monotonic() + delay, next(self._seq), action, tp))

    def _backoff(self, attempt: int) -> float:
        """Capped exponential backoff with jitter, in seconds."""
        backoff = self.spec.delivery.retry_backoff
        ceiling = min(backoff.max_ms, backoff.initial_ms * 2 ** min(attempt, 30)) / 1000
        return float(ceiling * random.uniform(0.5, 1.0))

    def _set_sink_up(self, up: bool) -> None:
        self._sink_down = not up
        self.health.sink_up = up
        self.metrics.sink_up.set(1 if up else 0)

    # -- dead letters --------------------------------------------------------------------------------

    def _dead_letter(self, record: Record, rejection: Rejection, attempt: int = 0) -> None:
        assert self._dlq is not None
        topic = self.spec.delivery.dead_letter_topic_for(record.topic)
        tp = (record.topic, record.partition)

        def delivered(error: KafkaError | None) -> None:
            if error is None:
                self.metrics.dead_lettered.labels(record.topic, rejection.error).inc()
                self._offsets.done(tp, record.offset)
                return
            log.warning(
                "dead letter not delivered, retrying topic=%s partition=%s[%d] offset=%d error=%s",
                topic,
                record.topic,
                record.partition,
                record.offset,
                error,
            )
            self._schedule(self._backoff(attempt), tp, lambda: self._dead_letter(record, rejection, attempt + 1))

        if attempt == 0:
            log.info(
                "dead-lettering partition=%s[%d] offset=%d error=%s reason=%s",
                record.topic,
                record.partition,
                record.offset,
                rejection.error,
                rejection.reason,
            )
        self._dlq.send(topic, record, rejection, delivered)

    # -- offsets and the group -----------------------------------------------------------------------

    def _commit(self, asynchronous: bool, tps: Iterable[TP] | None = None) -> None:
        assert self._consumer is not None
        self._last_commit = time.monotonic()
        offsets = self._offsets.to_commit()
        if tps is not None:
            wanted = set(tps)
            offsets = {tp: o for tp, o in offsets.items() if tp in wanted}
        if not offsets:
            return
        partitions = [TopicPartition(t, p, o) for (t, p), o in offsets.items()]
        try:
            if asynchronous:
                self._consumer.commit(offsets=partitions, asynchronous=True)
            else:
                self._on_commit(None, self._consumer.commit(offsets=partitions, asynchronous=False) or [])
        except KafkaException as exc:
            log.warning("offset commit failed (kept for the next one): %s", exc)

    def _on_commit(self, error: KafkaError | None, partitions: list[TopicPartition]) -> None:
        if error is not None:
            log.warning("offset commit failed (kept for the next one): %s", error)
            return
        done = {(p.topic, p.partition): p.offset for p in partitions if p.error is None and p.offset >= 0}
        self._offsets.committed(done)
        for (topic, partition), offset in done.items():
            self.metrics.committed_offset.labels(topic, str(partition)).set(offset)

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self.health.in_group = True
        self._paused = False  # new partitions start fetching; the loop pauses them again if the sink is down
        if partitions:
            log.info("assigned partitions=%s", _names(partitions))

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        tps = [(p.topic, p.partition) for p in partitions]
        if not tps:
            return
        log.info("revoked partitions=%s: finishing their writes", _names(partitions))
        deadline = time.monotonic() + (0 if self.stopping else REBALANCE_DRAIN_SECONDS)
        self._drain(tps, deadline)
        self._commit(asynchronous=False, tps=tps)
        self._let_go(tps)

    def _on_lost(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        log.warning("lost partitions=%s: their uncommitted messages go to the new owner", _names(partitions))
        self._let_go([(p.topic, p.partition) for p in partitions])

    def _let_go(self, tps: list[TP]) -> None:
        gone = set(tps)
        self._waiting = deque(w for w in self._waiting if w.tp not in gone)
        self._retries = [r for r in self._retries if r.tp not in gone]
        heapq.heapify(self._retries)
        self._offsets.forget(tps)

    def _drain(self, tps: list[TP] | None, deadline: float) -> None:
        """Keeps writing (and retrying) until the messages of `tps` (all if None) are done or time is up."""
        while self._offsets.outstanding(tps) and time.monotonic() < deadline:
            self.health.beat()
            self._pump()
            self._wait_for_completion(0.05)
        if left := self._offsets.outstanding(tps):
            log.warning("%d messages not yet durable; they stay uncommitted and will be redelivered", left)

    def _set_paused(self, paused: bool) -> None:
        assert self._consumer is not None
        if paused == self._paused:
            return
        assignment = self._consumer.assignment()
        if assignment:
            (self._consumer.pause if paused else self._consumer.resume)(assignment)
        self._paused = paused

    def _tick(self) -> None:
        """Once a second: liveness, sink reachability and per-partition lag."""
        now = time.monotonic()
        if now - self._last_tick < 1.0:
            return
        self._last_tick = now
        self.health.beat()
        self.health.sink_up = not self._sink_down and self._sink.healthy()
        assert self._consumer is not None
        for p in self._consumer.assignment():
            _, high = self._consumer.get_watermark_offsets(p, cached=True)
            committed = self._offsets.committed_offset((p.topic, p.partition))
            if high >= 0 and committed is not None:
                self.metrics.lag.labels(p.topic, str(p.partition)).set(high - committed)

    # -- configuration -------------------------------------------------------------------------------

    def _client_config(self) -> dict[str, object]:
        source = self.spec.source
        config: dict[str, object] = {
            "bootstrap.servers": source.bootstrap_servers,
            "security.protocol": source.security_protocol,
            "client.id": self.settings.pod_name or f"sluice-{self.group_id}",
        }
        if source.ssl_ca_location:
            config["ssl.ca.location"] = source.ssl_ca_location
        if source.sasl_mechanism and source.credentials:
            config["sasl.mechanism"] = source.sasl_mechanism
            config["sasl.username"] = os.environ[source.credentials.username_env]
            config["sasl.password"] = os.environ[source.credentials.password_env]
        return config

    def _consumer_config(self) -> dict[str, object]:
        source = self.spec.source
        config = {
            **source.consumer_config,
            **self._client_config(),
            "group.id": self.group_id,
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "auto.offset.reset": source.start_from,
            "partition.assignment.strategy": "cooperative-sticky",
            "on_commit": self._on_commit,
        }
        if source.static_membership and self.settings.pod_name:
            config["group.instance.id"] = self.settings.pod_name
        return config


def tune_garbage_collector() -> None:
    """Makes the cyclic garbage collector cheap for a streaming loop; call once the long-lived objects exist.

    Each cassandra-driver request future is a reference cycle, so ~40 objects per write wait for the
    collector. With Python's defaults they outlive the young collections (writes are in flight meanwhile)
    and pile up for full collections that also walk every module and the driver's metadata. Measured on
    200,000 messages: 2.6 s of the worker's CPU in the collector by default, 0.7 s with this.
    """
    gc.freeze()  # what exists now lives as long as the process: keep it out of every later collection
    gc.set_threshold(GC_YOUNG_THRESHOLD, *gc.get_threshold()[1:])


def _to_record(message: Message) -> Record:
    _, timestamp = message.timestamp()
    return Record(
        topic=message.topic() or "",
        partition=message.partition() or 0,
        offset=message.offset() or 0,
        timestamp_ms=timestamp,
        key=message.key(),
        value=message.value(),
        headers=message_headers(message),
    )


def _names(partitions: Iterable[TopicPartition]) -> str:
    return ",".join(f"{p.topic}[{p.partition}]" for p in partitions)
