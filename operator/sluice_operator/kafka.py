"""Reads a consumer group's offsets with Kafka's admin API; the operator never joins the group."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from typing import Any, TypeVar

from confluent_kafka import ConsumerGroupTopicPartitions, KafkaException, TopicCollection, TopicPartition
from confluent_kafka.admin import AdminClient, OffsetSpec  # type: ignore[attr-defined]  # not in __all__
from sluice_worker.kafka import client_config
from sluice_worker.model import SourceSpec

from .lag import PartitionOffsets, Snapshot

logger = logging.getLogger(__name__)

NO_OFFSET = -1001  # librdkafka's OFFSET_INVALID: the group has committed nothing

T = TypeVar("T")


class LagUnavailable(Exception):
    """The group's offsets cannot be read now (broker unreachable, topic missing, SASL, ...); `answered` is False
    only when no broker answered in time (the cluster looks unreachable)."""

    def __init__(self, message: str, answered: bool = True) -> None:
        super().__init__(message)
        self.answered = answered


def admin_config(source: SourceSpec, credentials: Mapping[str, str] | None = None) -> dict[str, str | int | float]:
    """The admin client's settings for a pipeline's brokers: the workers' own (client_config), with the values
    of source.tls and source.auth's Secrets. Raises LagUnavailable for the older SASL style, whose login is in
    the workers' environment only."""
    if source.tls is None and source.auth is None and source.security_protocol.startswith("SASL_"):
        raise LagUnavailable(
            f"securityProtocol {source.security_protocol} with credentials from environment variables: only the "
            "workers have the login, so the operator cannot read the lag; spec.source.auth (a Secret) gives it both"
        )
    return client_config(source, "sluice-operator", credentials)


def _key(config: Mapping[str, str | int | float]) -> tuple[tuple[str, str], ...]:
    return tuple(sorted((key, str(value)) for key, value in config.items()))


class OffsetReader:
    """Snapshots of consumer groups' offsets; one admin client per distinct broker configuration."""

    def __init__(self, timeout: float, clock: Callable[[], float] = time.time) -> None:
        self.timeout, self.clock = timeout, clock
        self._clients: dict[tuple[tuple[str, str], ...], AdminClient] = {}
        self._guard = threading.Lock()

    def _client(self, source: SourceSpec, credentials: Mapping[str, str] | None) -> AdminClient:
        config = admin_config(source, credentials)
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

    async def read(self, source: SourceSpec, group_id: str, credentials: Mapping[str, str] | None = None) -> Snapshot:
        """The earliest, latest and committed offset of every partition of the source topics; `credentials`:
        the values of source.tls and source.auth's Secrets by file name.

        Raises LagUnavailable. When no broker answered, the admin client is dropped, so a dead cluster keeps no
        client reconnecting; an answer (a missing topic, a denied group) keeps it for the next read.
        """
        try:
            return await self._read(self._client(source, credentials), source, group_id)
        except LagUnavailable as error:
            if not error.answered:
                with self._guard:
                    self._clients.pop(_key(admin_config(source, credentials)), None)
            raise

    @property
    def clients(self) -> int:
        """How many admin clients are kept (one per distinct broker configuration)."""
        with self._guard:
            return len(self._clients)

    async def _read(self, admin: AdminClient, source: SourceSpec, group_id: str) -> Snapshot:
        timeout = {"request_timeout": self.timeout}
        described = admin.describe_topics(TopicCollection(list(source.topics)), **timeout)
        partitions = [
            TopicPartition(topic, info.id)
            for topic, future in described.items()
            for info in (await self._result(future, f"topic {topic}")).partitions
        ]
        if not partitions:
            raise LagUnavailable(f"the topics {', '.join(source.topics)} have no partitions")
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
