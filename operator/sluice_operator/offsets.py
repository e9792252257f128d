"""Reads consumer groups' offsets with Kafka's admin API; run as a module, it serves those reads to the operator."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future
from multiprocessing.connection import Connection
from typing import Any, TypeVar

from confluent_kafka import ConsumerGroupTopicPartitions, KafkaException, TopicCollection, TopicPartition
from confluent_kafka.admin import AdminClient, OffsetSpec  # type: ignore[attr-defined]  # not in __all__
from sluice_worker.logs import OPERATOR_TEXT_FORMAT, LogFormat, configure_logging

from .lag import PartitionOffsets, Snapshot

logger = logging.getLogger("sluice_operator.offsets")  # by name: run with -m, __name__ is "__main__"

NO_OFFSET = -1001  # librdkafka's OFFSET_INVALID: the group has committed nothing

T = TypeVar("T")
Config = Mapping[str, str | int | float]


class LagUnavailable(Exception):
    """The group's offsets cannot be read now (broker unreachable, topic missing, SASL, ...); `answered` is False
    only when no broker answered in time (the cluster looks unreachable)."""

    def __init__(self, message: str, answered: bool = True) -> None:
        super().__init__(message)
        self.answered = answered


def _key(config: Config) -> tuple[tuple[str, str], ...]:
    return tuple(sorted((key, str(value)) for key, value in config.items()))


class OffsetReader:
    """Snapshots of consumer groups' offsets; one admin client per distinct client configuration."""

    def __init__(self, timeout: float, clock: Callable[[], float] = time.time) -> None:
        self.timeout, self.clock = timeout, clock
        self._clients: dict[tuple[tuple[str, str], ...], AdminClient] = {}
        self._guard = threading.Lock()

    def _client(self, config: Config) -> AdminClient:
        with self._guard:
            key = _key(config)
            if key not in self._clients:
                # librdkafka's own logs stay quiet: a failed read says what went wrong.
                self._clients[key] = AdminClient({**config, "log_level": 0}, logger=logger)
            return self._clients[key]

    async def _result(self, future: Future[T], what: str) -> T:
        """The result of a request: awaited, so that no thread waits on a broker that does not answer."""
        try:
            return await asyncio.wait_for(asyncio.wrap_future(future), self.timeout + 5)
        except KafkaException as error:
            # librdkafka's own (local) errors have negative codes: transport, timeouts, all brokers down.
            raise LagUnavailable(f"{what}: {error}", answered=error.args[0].code() >= 0) from error
        except TimeoutError as error:
            raise LagUnavailable(f"{what}: no answer in {self.timeout + 5:g} s", answered=False) from error

    async def read(self, config: Config, topics: Sequence[str], group_id: str) -> Snapshot:
        """The earliest, latest and committed offset of every partition of `topics`, read with an admin client of
        `config` (see kafka.admin_config).

        Raises LagUnavailable. When no broker answered, the admin client is dropped, so a dead cluster keeps no
        client reconnecting; an answer (a missing topic, a denied group) keeps it for the next read.
        """
        try:
            return await self._read(self._client(config), topics, group_id)
        except LagUnavailable as error:
            if not error.answered:
                with self._guard:
                    self._clients.pop(_key(config), None)
            raise

    @property
    def clients(self) -> int:
        """How many admin clients are kept (one per distinct client configuration)."""
        with self._guard:
            return len(self._clients)

    async def _read(self, admin: AdminClient, topics: Sequence[str], group_id: str) -> Snapshot:
        timeout = {"request_timeout": self.timeout}
        described = admin.describe_topics(TopicCollection(list(topics)), **timeout)
        partitions = [
            TopicPartition(topic, info.id)
            for topic, future in described.items()
            for info in (await self._result(future, f"topic {topic}")).partitions
        ]
        if not partitions:
            raise LagUnavailable(f"the topics {', '.join(topics)} have no partitions")
        request = [ConsumerGroupTopicPartitions(group_id, partitions)]
        committed = admin.list_consumer_group_offsets(request, **timeout)[group_id]
        latest = admin.list_offsets({p: OffsetSpec.latest() for p in partitions}, **timeout)  # type: ignore[no-untyped-call]
        earliest = admin.list_offsets({p: OffsetSpec.earliest() for p in partitions}, **timeout)  # type: ignore[no-untyped-call]
        taken = self.clock()
        group = await self._result(committed, f"offsets of group {group_id}")
        commits = {(p.topic, p.partition): p.offset for p in group.topic_partitions or []}
        highs, lows = await self._offsets(latest, "latest offsets"), await self._offsets(earliest, "earliest offsets")
        return Snapshot(
            taken=taken,
            partitions={
                key: PartitionOffsets(
                    earliest=lows[key],
                    latest=highs[key],
                    committed=None if commits.get(key, NO_OFFSET) < 0 else commits[key],
                )
                for key in sorted(highs)
            },
        )

    async def _offsets(self, futures: Mapping[TopicPartition, Future[Any]], what: str) -> dict[tuple[str, int], int]:
        return {(p.topic, p.partition): int((await self._result(f, what)).offset) for p, f in futures.items()}


# What the operator and this module's process say to each other over their socket (pickled by Connection):
#   asked:    (request id, client config, topics, group id)
#   answered: (request id, Snapshot, None) or (request id, None, (message, answered)) as LagUnavailable says them
Request = tuple[int, Config, Sequence[str], str]
Answer = tuple[int, Snapshot | None, tuple[str, bool] | None]


async def answer(reader: OffsetReader, request: Request) -> Answer:
    """One read, said as the operator's end expects it: any failure is an answer, none ends the serving."""
    ident, config, topics, group_id = request
    try:
        return ident, await reader.read(config, topics, group_id), None
    except LagUnavailable as error:
        return ident, None, (str(error), error.answered)
    except Exception as error:  # e.g. a configuration librdkafka refuses: that pipeline's problem, not the others'
        return ident, None, (f"{type(error).__name__}: {error}", True)


async def serve(connection: Connection, reader: OffsetReader) -> None:
    """Answers every request read from `connection`, all at once, until the operator's end closes."""
    loop = asyncio.get_running_loop()
    requests: asyncio.Queue[Request | None] = asyncio.Queue()

    def receive() -> None:  # a thread: Connection has no asyncio API, and a recv must not stall the answers
        try:
            while True:
                loop.call_soon_threadsafe(requests.put_nowait, connection.recv())
        except (EOFError, OSError):
            loop.call_soon_threadsafe(requests.put_nowait, None)

    threading.Thread(target=receive, name="requests", daemon=True).start()
    answering: set[asyncio.Task[None]] = set()

    async def read_and_answer(request: Request) -> None:
        reply = await answer(reader, request)
        with contextlib.suppress(OSError):  # the operator's end is gone: the loop ends with its EOF
            connection.send(reply)

    while (request := await requests.get()) is not None:
        task = asyncio.create_task(read_and_answer(request))
        answering.add(task)
        task.add_done_callback(answering.discard)


def main(argv: Sequence[str]) -> int:
    """`python -m sluice_operator.offsets FD TIMEOUT [text|json]`: serves reads on the socket FD (see
    kafka.LagReader), logging warnings and its own failure in the operator's log format."""
    log_format: LogFormat = "json" if argv[2:3] == ["json"] else "text"
    configure_logging("warning", log_format, OPERATOR_TEXT_FORMAT)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a Ctrl-C reaches the operator, which stops this process
    try:
        descriptor, timeout = int(argv[0]), float(argv[1])
        asyncio.run(serve(Connection(descriptor), OffsetReader(timeout)))
    except Exception:
        logger.exception("the lag reader process failed")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
