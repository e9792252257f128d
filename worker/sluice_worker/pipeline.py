"""The worker loop: consume from Kafka, transform, hand rows to the writes, commit only what is durable."""

from __future__ import annotations

import functools
import gc
import logging
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition

from .batching import add_row, batches
from .dead_letters import DeadLetterPublisher
from .deadline import Deadline, shutdown_budget
from .formats import Decoder, RegistryUnavailable, Undecodable, decode_json
from .kafka import consumer_config, partition_names, to_record, worker_client_config
from .metrics import Health, WorkerMetrics
from .model import DataPipeline
from .offsets import OffsetTracker
from .offsets import TopicPartition as TP
from .routes import Route, routes_by_topic
from .settings import WorkerSettings
from .transform import UNREAD, Delete, Record, Rejection, Row, Skipped, Transformer
from .write_time import WriteTimeError
from .writes import MissingKey, PendingRow, Sink, Write, Writes, backoff_seconds, connect_with_retry

log = logging.getLogger("sluice.worker")

REBALANCE_DRAIN_SECONDS = 10.0  # how long a revoked partition's writes may take before we let it go
# Messages transformed between two looks at the answered writes while a poll is handled: its rows are sent once
# the whole poll is grouped, so in the meantime Cassandra is kept busy with the writes already waiting.
REFILL_EVERY = 32
# Allocations between young-generation collections (Python's default: 700). See tune_garbage_collector().
GC_YOUNG_THRESHOLD = 20_000


class PipelineWorker:
    """Runs one pipeline until `request_stop()`; nothing is committed before it is written or dead-lettered.

    `pipeline` comes with the environment's overrides applied; the sink and the transforms (one per table of
    `pipeline.spec.targets()`, in that order) are built for it by the caller (the CLI), which also owns the
    process: this class never exits it.
    """

    def __init__(
        self,
        pipeline: DataPipeline,
        sink: Sink,
        transforms: Sequence[Transformer],
        settings: WorkerSettings | None = None,
        metrics: WorkerMetrics | None = None,
        health: Health | None = None,
        decode: Decoder = decode_json,
    ) -> None:
        self.pipeline, self.spec = pipeline, pipeline.spec
        self.settings = settings or WorkerSettings()
        self.metrics = metrics or WorkerMetrics()
        self.health = health or Health()
        self.shutdown_budget = shutdown_budget(self.spec, self.settings.shutdown_budget_seconds)
        targets = self.spec.targets()
        self._routes, self._sink = routes_by_topic(targets, transforms), sink
        self._tables = [target.name for target in targets]
        # Values are decoded once per message, for every table, and only when some field reads them.
        self._decode = decode if any(transform.reads_value for transform in transforms) else None
        self._registry_failures = 0  # consecutive times the schema registry did not answer
        self._reading_again_at = 0.0  # after the registry failed: when to fetch again
        self._offsets = OffsetTracker()
        self._writes = Writes(sink.write, self.metrics.in_flight)
        self._sink_down = False
        self._paused = False
        self._deadline: Deadline | None = None  # set by the stop request: every step of the exit ends by it
        self._last_commit = self._last_tick = 0.0
        self._consumer: Consumer | None = None
        self._dlq: DeadLetterPublisher | None = None
        self._written = [self.metrics.written.labels(target.table) for target in targets]
        self._consumed = functools.cache(self.metrics.consumed.labels)  # one labelled child per topic
        self._skipped = functools.cache(self.metrics.skipped.labels)

    # -- lifecycle -----------------------------------------------------------------------------------

    def request_stop(self) -> None:
        """Finish in-flight work, commit and close within the shutdown budget; later calls change nothing."""
        if self._deadline is None:
            self._deadline = Deadline.after(self.shutdown_budget)
            log.info("stopping: draining in-flight writes budget=%.0fs", self.shutdown_budget)

    @property
    def stopping(self) -> bool:
        return self._deadline is not None

    def run(self) -> int:
        if not connect_with_retry(self._sink, self._backoff, lambda: self.stopping, self.health.sink_down):
            return 0
        self._set_sink_up(True)
        callbacks = {"on_commit": self._on_commit, "error_cb": self.health.kafka_failed}
        self._consumer = Consumer({**consumer_config(self.pipeline, self.settings), **callbacks})
        self._dlq = DeadLetterPublisher(worker_client_config(self.pipeline, self.settings))
        self._consumer.subscribe(
            list(self.spec.source.topics),
            on_assign=self._on_assign,
            on_revoke=self._on_revoke,
            on_lost=self._on_lost,
        )
        log.info("consuming topics=%s group=%s", ",".join(self.spec.source.topics), self.pipeline.group_id)
        tune_garbage_collector()
        try:
            while self._deadline is None:
                self._step()
            self._drain(None, self._deadline)
            self._commit(asynchronous=False)
        finally:
            self._deadline = self._deadline or Deadline.after(self.shutdown_budget)  # also after a crash
            self._consumer.close()  # leaves the group; revoked partitions were committed above
            self._dlq.close(self._deadline)
            self._sink.close(self._deadline)
        log.info("stopped cleanly outstanding=%d", self._offsets.outstanding())
        return 0

    # -- the loop ------------------------------------------------------------------------------------

    def _step(self) -> None:
        assert self._consumer is not None
        self._tick()
        self._pump()
        blocked = self._sink_down or time.monotonic() < self._reading_again_at
        if not blocked and len(self._writes.waiting) < self.spec.delivery.max_in_flight:
            # Transform ahead while writes are out: at most a window of writes waits behind the in-flight ones.
            self._set_paused(False)
            self._handle(self._consumer.consume(self.spec.delivery.max_batch_size, timeout=0.1))
        elif blocked:
            self._set_paused(True)  # stop fetching, stay in the group: consume() serves rebalances
            self._handle(self._consumer.consume(1, timeout=0.1))
        else:
            self._writes.wait_for_answer(0.05)
        if time.monotonic() - self._last_commit >= self.spec.delivery.commit_interval_ms / 1000:
            self._commit(asynchronous=True)

    def _pump(self) -> None:
        """Handles answered writes, re-queues due retries, sends what the in-flight limit allows."""
        assert self._dlq is not None
        self._take_answers()
        self._writes.run_due()
        self._send_waiting()
        self._dlq.poll(0)

    def _send_waiting(self) -> None:
        """Frees the slots of answered writes and fills them from the waiting ones."""
        self._take_answers()
        self._writes.send_waiting(1 if self._sink_down else self.spec.delivery.max_in_flight)  # one probe while down

    def _handle(self, messages: Iterable[Message]) -> None:
        # The poll's rows by Kafka partition, table and replicas, then by Cassandra partition in the order they came.
        groups: dict[tuple[object, ...], dict[object, list[PendingRow]]] = {}
        consumed: Counter[str] = Counter()
        rewound: set[TP] = set()  # partitions to read again from a message the registry could not decode yet
        for number, message in enumerate(messages, 1):
            if number % REFILL_EVERY == 0:
                self._send_waiting()  # the slots of writes answered meanwhile go to the waiting ones
            if message.error():
                log.warning("consumer error: %s", message.error())
                continue
            record = to_record(message)
            tp = (record.topic, record.partition)
            if tp in rewound:
                continue
            document: object = UNREAD
            if self._decode is not None and record.value is not None:
                try:
                    document = self._decode(record)
                except RegistryUnavailable as problem:
                    self._read_again_later(record, problem)
                    rewound.add(tp)
                    continue
                except Undecodable as problem:  # refused before any table: one dead letter
                    self._offsets.consumed(tp, record.offset)
                    consumed[record.topic] += 1
                    self._dead_letter(record, Rejection(problem.reason, problem.kind), None)
                    continue
                if self._registry_failures:
                    self._registry_answers()
            routes = self._routes[record.topic]
            self._offsets.consumed(tp, record.offset, len(routes))
            consumed[record.topic] += 1
            for route in routes:  # one per table the topic feeds: the offset is done once each of them is
                result = route.transform(record, document)
                if isinstance(result, Rejection):
                    self._dead_letter(record, result, route.table)
                    continue
                if isinstance(result, Skipped):  # left out by the filter (or a skipped tombstone): nothing to write
                    self._offsets.done((record.topic, record.partition), record.offset)
                    self._skipped(record.topic).inc()
                    continue
                statement = self._statement(record, result, route)
                if statement is None:  # dead-lettered
                    continue
                replicas, partition = self._sink.placement_of(statement)
                row = PendingRow(record, statement, route.table, self._sink.size_of(statement))
                key = (record.topic, record.partition, route.table, replicas)
                by_partition = groups.get(key)
                if by_partition is None:
                    by_partition = groups[key] = {}
                add_row(by_partition, partition, row)
        max_rows, max_bytes = self.spec.delivery.max_rows_per_write, self.spec.delivery.max_bytes_per_write
        for by_partition in groups.values():
            self._writes.waiting.extend(Write(batch) for batch in batches(by_partition.values(), max_rows, max_bytes))
        for topic, count in consumed.items():
            self._consumed(topic).inc(count)
        self._pump()

    def _read_again_later(self, record: Record, problem: RegistryUnavailable) -> None:
        """The registry did not answer for this message: read its partition again from it after a backoff, with
        consumption paused meanwhile (nothing after it is handled; nothing is dead-lettered)."""
        assert self._consumer is not None
        self._consumer.seek(TopicPartition(record.topic, record.partition, record.offset))
        delay = self._backoff(self._registry_failures)
        self._registry_failures += 1
        self._reading_again_at = time.monotonic() + delay
        if self._registry_failures == 1:
            log.warning("schema registry unavailable: pausing consumption partition=%s[%d] offset=%d error=%s",
                        record.topic, record.partition, record.offset, problem)  # fmt: skip
        self.health.registry_unavailable(str(problem))

    def _registry_answers(self) -> None:
        log.info("schema registry answers again after %d failed tries: resuming", self._registry_failures)
        self._registry_failures = 0
        self.health.registry_unavailable("")

    def _statement(self, record: Record, result: Row | Delete, route: Route) -> Any:
        """The insert of a row or the delete of a tombstone, stamped; None once a message whose write time or
        key is unusable went to the dead letters."""
        times, table = route.write_time, route.table
        try:
            if isinstance(result, Delete):
                return self._sink.bind_delete(result.key, times.timestamp(record, result.key), table)
            ttl = times.ttl(result) if times.per_row_ttl else None
            return self._sink.bind(result, times.timestamp(record, result), ttl, table)
        except WriteTimeError as problem:
            self._dead_letter(record, Rejection(str(problem), "wrong_type"), table)
        except MissingKey as problem:
            self._dead_letter(record, Rejection(str(problem), "missing_field"), table)
        return None

    # -- answers of the sink -------------------------------------------------------------------------

    def _take_answers(self) -> None:
        for write, error in self._writes.answers():
            if error is not None:
                self._write_failed(write, error)
                continue
            self.metrics.write_latency.observe(time.monotonic() - write.sent_at)
            self._written[write.rows[0].table].inc(len(write.rows))
            self._offsets.all_done(write.tp, [row.record.offset for row in write.rows])
            if self._sink_down:
                log.info("Cassandra is writable again: resuming")
                self._set_sink_up(True)

    def _write_failed(self, write: Write, error: BaseException) -> None:
        self.metrics.write_errors.labels(type(error).__name__).inc()
        if self._sink.refuses(error):  # the row itself is refused: retrying cannot help
            if len(write.rows) > 1:  # find the bad row(s): retry the batch's rows one by one
                self._writes.waiting.extendleft(Write([row]) for row in write.rows)
            else:
                rejection = Rejection(f"Cassandra refused the row: {error}", "write_rejected")
                self._dead_letter(write.rows[0].record, rejection, write.rows[0].table)
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
            self._set_sink_up(False, f"{type(error).__name__}: {error}")
        self.metrics.write_retries.inc()
        self._writes.retry(write, self._backoff(write.attempt))

    def _backoff(self, attempt: int) -> float:
        return backoff_seconds(self.spec.delivery.retry_backoff, attempt)

    def _set_sink_up(self, up: bool, error: str = "") -> None:
        self._sink_down = not up
        self.health.sink_up, self.health.sink_error = up, error
        self.metrics.sink_up.set(1 if up else 0)

    # -- dead letters --------------------------------------------------------------------------------

    def _dead_letter(self, record: Record, rejection: Rejection, table: int | None, attempt: int = 0) -> None:
        """Sends `record` to the dead letters for `rejection` by table number `table` (None: by no table, e.g.
        a value that cannot be decoded); its part of the offset is done once the broker has the letter."""
        assert self._dlq is not None
        topic = self.spec.delivery.dead_letter_topic_for(record.topic)
        tp = (record.topic, record.partition)
        table_name = "" if table is None else self._tables[table]

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
            self._writes.schedule(
                self._backoff(attempt), tp, lambda: self._dead_letter(record, rejection, table, attempt + 1)
            )

        if attempt == 0:
            log.info(
                "dead-lettering partition=%s[%d] offset=%d table=%s error=%s reason=%s",
                record.topic,
                record.partition,
                record.offset,
                table_name or "-",
                rejection.error,
                rejection.reason,
            )
        self._dlq.send(topic, record, rejection, table_name, delivered)

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
            log.info("assigned partitions=%s", partition_names(partitions))

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        tps = [(p.topic, p.partition) for p in partitions]
        if not tps:
            return
        log.info("revoked partitions=%s: finishing their writes", partition_names(partitions))
        self._drain(tps, self._deadline or Deadline.after(REBALANCE_DRAIN_SECONDS))
        self._commit(asynchronous=False, tps=tps)
        self._let_go(tps)

    def _on_lost(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        log.warning("lost partitions=%s: their uncommitted messages go to the new owner", partition_names(partitions))
        self._let_go([(p.topic, p.partition) for p in partitions])

    def _let_go(self, tps: list[TP]) -> None:
        self._writes.let_go(tps)
        self._offsets.forget(tps)

    def _drain(self, tps: list[TP] | None, deadline: Deadline) -> None:
        """Keeps writing (and retrying) until the messages of `tps` (all if None) are done or time is up."""
        while self._offsets.outstanding(tps) and not deadline.expired():
            self.health.beat()
            self._pump()
            self._writes.wait_for_answer(min(0.05, deadline.remaining()))
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
        self._sink.reconnect_if_lost()
        self.health.sink_up = not self._sink_down and self._sink.healthy()
        assert self._consumer is not None
        for p in self._consumer.assignment():
            _, high = self._consumer.get_watermark_offsets(p, cached=True)
            committed = self._offsets.committed_offset((p.topic, p.partition))
            if high >= 0 and committed is not None:
                self.metrics.lag.labels(p.topic, str(p.partition)).set(high - committed)


def tune_garbage_collector() -> None:
    """Makes the cyclic garbage collector cheap for a streaming loop; call once the long-lived objects exist.

    Each request future of the sink's driver is a reference cycle, so ~40 objects per write wait for the
    collector. With Python's defaults they outlive the young collections (writes are in flight meanwhile)
    and pile up for full collections that also walk every module and the driver's metadata. Measured on
    200,000 messages: 2.6 s of the worker's CPU in the collector by default, 0.7 s with this.
    """
    gc.freeze()  # what exists now lives as long as the process: keep it out of every later collection
    gc.set_threshold(GC_YOUNG_THRESHOLD, *gc.get_threshold()[1:])
