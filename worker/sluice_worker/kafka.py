"""Kafka plumbing shared by the loop, the dead-letter publisher and replay-dlq: client settings, records, headers."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Mapping

from confluent_kafka import Message, TopicPartition

from .model import DataPipeline, SourceSpec
from .transform import Record

# librdkafka's own log lines, through the worker's logging (one format, JSON in a pod) rather than raw stderr.
CLIENT_LOG = logging.getLogger("sluice.kafka")

Headers = list[tuple[str, str | bytes | None]]
"""Headers as a producer takes them."""


def client_config(source: SourceSpec, client_id: str, environ: Mapping[str, str] = os.environ) -> dict[str, str]:
    """What every client of a pipeline's brokers needs: the brokers, security, and the SASL login, read from
    the environment variables `source.credentials` names (KeyError if one is missing)."""
    config = {
        "bootstrap.servers": source.bootstrap_servers,
        "security.protocol": source.security_protocol,
        "client.id": client_id,
    }
    if source.ssl_ca_location:
        config["ssl.ca.location"] = source.ssl_ca_location
    if source.sasl_mechanism and source.credentials:
        config["sasl.mechanism"] = source.sasl_mechanism
        config["sasl.username"] = environ[source.credentials.username_env]
        config["sasl.password"] = environ[source.credentials.password_env]
    return config


def worker_client_config(pipeline: DataPipeline, pod_name: str | None) -> dict[str, object]:
    """The client settings of a worker's consumer and producers: named after the pod, else after the group,
    logging through the worker's logging."""
    return {**client_config(pipeline.spec.source, pod_name or f"sluice-{pipeline.group_id}"), "logger": CLIENT_LOG}


def consumer_config(pipeline: DataPipeline, pod_name: str | None) -> dict[str, object]:
    """The worker's consumer: the user's consumerConfig under the settings the worker owns (no auto commit,
    cooperative rebalancing, the group session, static membership by pod name if asked)."""
    source = pipeline.spec.source
    config: dict[str, object] = {
        **source.consumer_config,
        **worker_client_config(pipeline, pod_name),
        "group.id": pipeline.group_id,
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "auto.offset.reset": source.start_from,
        "partition.assignment.strategy": "cooperative-sticky",
        "session.timeout.ms": source.session_timeout_ms,
        "heartbeat.interval.ms": source.session_timeout_ms // 5,
    }
    if source.static_membership and pod_name:
        config["group.instance.id"] = pod_name
    return config


def message_headers(message: Message) -> tuple[tuple[str, bytes | None], ...]:
    """A consumed message's headers as (name, raw value) pairs, in order."""
    headers = message.headers() or []
    pairs = headers.items() if isinstance(headers, dict) else headers
    return tuple((name, value.encode() if isinstance(value, str) else value) for name, value in pairs)


def to_record(message: Message) -> Record:
    """A consumed message as the transform sees it."""
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


def partition_names(partitions: Iterable[TopicPartition]) -> str:
    """`topic[0],topic[1]`, for logs."""
    return ",".join(f"{p.topic}[{p.partition}]" for p in partitions)
