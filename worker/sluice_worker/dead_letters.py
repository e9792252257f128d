"""The dead-letter topic: rejected messages, unchanged, with headers saying why and where they came from."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping

from confluent_kafka import KafkaError, KafkaException, Message, Producer

from .deadline import Deadline
from .kafka import Headers
from .transform import Record, Rejection

log = logging.getLogger("sluice.dlq")

# Header names on a dead letter; `replay-dlq` reads the source ones back.
ERROR = "sluice.error"
REASON = "sluice.reason"
TABLE = "sluice.table"  # the keyspace.table that refused the message (absent: refused before any table)
SOURCE_TOPIC = "sluice.source.topic"
SOURCE_PARTITION = "sluice.source.partition"
SOURCE_OFFSET = "sluice.source.offset"
SOURCE_TIMESTAMP = "sluice.source.timestamp"
SLUICE_HEADERS = frozenset({ERROR, REASON, TABLE, SOURCE_TOPIC, SOURCE_PARTITION, SOURCE_OFFSET, SOURCE_TIMESTAMP})

DeliveredCallback = Callable[[KafkaError | None], None]


def dead_letter_headers(record: Record, rejection: Rejection, table: str) -> Headers:
    """The message's own headers, then why and by which table it was rejected, and where it was read."""
    return [
        *record.headers,
        (ERROR, rejection.error.encode()),
        (REASON, rejection.reason.encode()),
        *([(TABLE, table.encode())] if table else []),
        (SOURCE_TOPIC, record.topic.encode()),
        (SOURCE_PARTITION, str(record.partition).encode()),
        (SOURCE_OFFSET, str(record.offset).encode()),
        (SOURCE_TIMESTAMP, str(record.timestamp_ms).encode()),
    ]


class DeadLetterPublisher:
    """An idempotent producer; a dead letter counts as handled only once the broker acknowledged it."""

    def __init__(self, client_config: Mapping[str, object]) -> None:
        self._producer = Producer(
            {
                **client_config,
                "enable.idempotence": True,
                "acks": "all",
                "linger.ms": 5,
                "delivery.timeout.ms": 120_000,
            }
        )

    def send(
        self, topic: str, record: Record, rejection: Rejection, table: str, on_delivered: DeliveredCallback
    ) -> None:
        """Queues the dead letter; `on_delivered(error)` runs from `poll()` once the broker answered."""

        def delivered(error: KafkaError | None, _message: Message) -> None:
            on_delivered(error)

        while True:
            try:
                self._producer.produce(
                    topic,
                    value=record.value,
                    key=record.key,
                    headers=dead_letter_headers(record, rejection, table),
                    timestamp=record.timestamp_ms if record.timestamp_ms > 0 else 0,
                    on_delivery=delivered,
                )
                return
            except BufferError:  # the local queue is full: let deliveries drain, then try again
                self._producer.poll(0.1)
            except KafkaException as exc:
                log.error("cannot queue dead letter topic=%s error=%s", topic, exc)
                on_delivered(exc.args[0] if exc.args else None)
                return

    def poll(self, timeout: float = 0) -> None:
        self._producer.poll(timeout)

    def close(self, deadline: Deadline) -> int:
        """Waits until `deadline` for outstanding dead letters, then drops the rest; returns how many were dropped.

        A dropped dead letter was never acknowledged, so its message's offset was not committed: it is consumed
        (and dead-lettered) again by the next owner of its partition.
        """
        left = int(self._producer.flush(deadline.remaining()))
        if left:
            log.warning("%d dead letters not acknowledged by the deadline; their messages will be redelivered", left)
            self._producer.purge()  # their delivery callbacks never run: the loop is done with them
        return left
