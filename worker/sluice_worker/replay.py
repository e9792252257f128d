"""`sluice-worker replay-dlq`: re-publish dead letters to their source topic at a bounded rate."""

from __future__ import annotations

import logging
import time

from confluent_kafka import Consumer, Message, Producer

from .dead_letters import SLUICE_HEADERS, SOURCE_TOPIC
from .model import DataPipeline
from .pipeline import PipelineWorker
from .settings import WorkerSettings

log = logging.getLogger("sluice.replay")


def replay_dead_letters(
    pipeline: DataPipeline, settings: WorkerSettings, rate: float, idle_seconds: float = 5.0
) -> int:
    """Moves every dead letter back to the topic it came from; returns how many.

    Offsets on the dead-letter topic are committed (group `<groupId>.replay-dlq`) only after the producer
    has the republished messages acknowledged, so an interrupted replay resumes without losing any.
    Messages that still fail the transform simply return to the dead-letter topic.
    """
    worker = PipelineWorker(pipeline, settings)  # the same client settings and resolved topics
    spec = worker.spec
    dead_letter_topics = sorted({spec.delivery.dead_letter_topic_for(t) for t in spec.source.topics})
    client = worker._client_config()
    consumer = Consumer({
        **client,
        "group.id": f"{worker.group_id}.replay-dlq",
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
    })
    producer = Producer({**client, "enable.idempotence": True, "acks": "all"})
    consumer.subscribe(dead_letter_topics)
    interval = 1.0 / rate if rate > 0 else 0.0
    replayed, last_seen = 0, time.monotonic()
    try:
        while time.monotonic() - last_seen < idle_seconds:
            message = consumer.poll(0.2)
            if message is None:
                continue
            if message.error():
                log.warning("dead-letter consumer error: %s", message.error())
                continue
            last_seen = time.monotonic()
            producer.produce(_source_topic(message, spec.source.topics[0]), value=message.value(),
                             key=message.key(), headers=_original_headers(message))
            replayed += 1
            if replayed % 100 == 0:
                _checkpoint(producer, consumer)
            time.sleep(interval)
        _checkpoint(producer, consumer)
    finally:
        consumer.close()
    log.info("replayed %d dead letters from %s", replayed, ",".join(dead_letter_topics))
    return replayed


def _checkpoint(producer: Producer, consumer: Consumer) -> None:
    """Commits the dead-letter offsets once everything produced so far is acknowledged."""
    if producer.flush(30) != 0:
        raise RuntimeError("republished messages not acknowledged; not committing the dead-letter offsets")
    if consumer.assignment():
        consumer.commit(asynchronous=False)


def _source_topic(message: Message, fallback: str) -> str:
    for name, value in message.headers() or ():
        if name == SOURCE_TOPIC and value:
            return value.decode()
    return fallback


def _original_headers(message: Message) -> list[tuple[str, bytes | None]]:
    return [(k, v) for k, v in message.headers() or () if k not in SLUICE_HEADERS]
