"""`sluice-worker replay-dlq`: re-publish dead letters to their source topic at a bounded rate."""

from __future__ import annotations

import logging
import time

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition

from .dead_letters import SLUICE_HEADERS, SOURCE_TOPIC
from .kafka import Headers, message_headers, worker_client_config
from .model import DataPipeline
from .settings import WorkerSettings

log = logging.getLogger("sluice.replay")


def replay_dead_letters(
    pipeline: DataPipeline, settings: WorkerSettings, rate: float, idle_seconds: float = 5.0
) -> int:
    """Moves every dead letter of `pipeline` (the environment's overrides applied) back to the topic it came
    from, with the worker's client settings (pod name, mounted credentials); returns how many.

    Offsets on the dead-letter topic are committed (group `<groupId>.replay-dlq`) only after the producer
    has the republished messages acknowledged, so an interrupted replay resumes without losing any.
    Messages that still fail the transform simply return to the dead-letter topic.
    """
    spec = pipeline.spec
    dead_letter_topics = sorted({spec.delivery.dead_letter_topic_for(t) for t in spec.source.topics})
    client = worker_client_config(pipeline, settings)
    consumer = Consumer(
        {
            **client,
            "group.id": f"{pipeline.group_id}.replay-dlq",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
        }
    )
    producer = Producer({**client, "enable.idempotence": True, "acks": "all"})
    # Only the dead letters there now: one that fails again lands behind this end and waits for next time.
    ends = _end_offsets(consumer, dead_letter_topics)
    consumer.assign([TopicPartition(topic, partition) for topic, partition in ends])
    interval = 1.0 / rate if rate > 0 else 0.0
    replayed, last_seen = 0, time.monotonic()
    try:
        while ends and time.monotonic() - last_seen < idle_seconds:
            message = consumer.poll(0.2)
            if message is None:
                continue
            if message.error():
                log.warning("dead-letter consumer error: %s", message.error())
                continue
            last_seen = time.monotonic()
            tp, offset = (message.topic() or "", message.partition() or 0), message.offset() or 0
            if tp not in ends or offset >= ends[tp]:
                ends.pop(tp, None)
                continue
            producer.produce(
                _source_topic(message, spec.source.topics[0]),
                value=message.value(),
                key=message.key(),
                headers=_original_headers(message),
            )
            replayed += 1
            if offset + 1 >= ends[tp]:
                ends.pop(tp)
            if replayed % 100 == 0:
                _checkpoint(producer, consumer)
            time.sleep(interval)
        _checkpoint(producer, consumer)
    finally:
        consumer.close()
    log.info("replayed %d dead letters from %s", replayed, ",".join(dead_letter_topics))
    return replayed


def _end_offsets(consumer: Consumer, topics: list[str]) -> dict[tuple[str, int], int]:
    """The current end of every non-empty partition of `topics` that has dead letters left to replay."""
    ends = {}
    metadata = consumer.list_topics(timeout=30)
    for topic in topics:
        for partition in metadata.topics[topic].partitions if topic in metadata.topics else ():
            _, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=30)
            committed = consumer.committed([TopicPartition(topic, partition)], timeout=30)[0].offset
            if high > max(committed, 0):
                ends[(topic, partition)] = high
    return ends


def _checkpoint(producer: Producer, consumer: Consumer) -> None:
    """Commits the dead-letter offsets once everything produced so far is acknowledged."""
    if producer.flush(30) != 0:
        raise RuntimeError("republished messages not acknowledged; not committing the dead-letter offsets")
    try:
        consumer.commit(asynchronous=False)
    except KafkaException as exc:
        if exc.args[0].code() != KafkaError._NO_OFFSET:  # nothing consumed since the last checkpoint
            raise


def _source_topic(message: Message, fallback: str) -> str:
    topics = [value.decode() for name, value in message_headers(message) if name == SOURCE_TOPIC and value]
    return topics[-1] if topics else fallback


def _original_headers(message: Message) -> Headers:
    return [(k, v) for k, v in message_headers(message) if k not in SLUICE_HEADERS]
