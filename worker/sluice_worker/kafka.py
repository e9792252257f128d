"""Kafka plumbing shared by the loop, the dead-letter publisher and replay-dlq: client settings, records, headers."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Mapping

from confluent_kafka import Message, TopicPartition

from .credentials import kafka_security, read_side
from .model import DataPipeline, SourceSpec
from .settings import WorkerSettings
from .transform import Record

# librdkafka's own log lines, through the worker's logging (one format, JSON in a pod) rather than raw stderr.
CLIENT_LOG = logging.getLogger("sluice.kafka")

Headers = list[tuple[str, str | bytes | None]]
"""Headers as a producer takes them."""


# consumerConfig keys about reaching the brokers rather than consuming: every client of the pipeline's brokers
# takes them (the dead-letter producer, replay-dlq, the operator's lag reader), not only the consumer.
CONNECTION_PREFIXES = (
    "socket.", "broker.", "reconnect.", "connections.", "metadata.", "topic.metadata.", "api.version",
    "client.dns.lookup", "resolve.", "retry.backoff", "ssl.", "sasl.kerberos.", "sasl.oauthbearer.",
)  # fmt: skip


def connection_settings(source: SourceSpec) -> dict[str, str | int | bool]:
    """The consumerConfig settings every client of the brokers needs (CONNECTION_PREFIXES)."""
    return {key: value for key, value in source.consumer_config.items() if key.startswith(CONNECTION_PREFIXES)}


def client_config(
    source: SourceSpec,
    client_id: str,
    credentials: Mapping[str, str] | None = None,
    environ: Mapping[str, str] = os.environ,
) -> dict[str, str | int | float]:
    """What every client of a pipeline's brokers needs: the brokers, the connection part of consumerConfig, TLS
    and the SASL login. `credentials`: the values of `source.tls`/`source.auth` by file name (see credentials.py);
    the older style reads the login from the environment variables `source.credentials` names (KeyError if one
    is missing)."""
    config: dict[str, str | int | float] = {
        **connection_settings(source),
        "bootstrap.servers": source.bootstrap_servers,
        "security.protocol": source.protocol,
        "client.id": client_id,
    }
    if source.tls is not None or source.auth is not None:
        return config | kafka_security(source, credentials or {})
    if source.ssl_ca_location:
        config["ssl.ca.location"] = source.ssl_ca_location
    if source.sasl_mechanism and source.credentials:
        config["sasl.mechanism"] = source.sasl_mechanism
        config["sasl.username"] = environ[source.credentials.username_env]
        config["sasl.password"] = environ[source.credentials.password_env]
    return config


def worker_client_config(pipeline: DataPipeline, settings: WorkerSettings) -> dict[str, object]:
    """The client settings of a worker's consumer and producers: credentials from the mounted Secrets, named
    after the pod, else after the group, logging through the worker's logging."""
    credentials = read_side(settings.credentials_dir, "source")
    client_id = settings.pod_name or f"sluice-{pipeline.group_id}"
    return {**client_config(pipeline.spec.source, client_id, credentials), "logger": CLIENT_LOG}


def consumer_config(pipeline: DataPipeline, settings: WorkerSettings) -> dict[str, object]:
    """The worker's consumer: the user's consumerConfig under the settings the worker owns (no auto commit,
    cooperative rebalancing, the group session, static membership by pod name if asked)."""
    source = pipeline.spec.source
    config: dict[str, object] = {
        **source.consumer_config,
        **worker_client_config(pipeline, settings),
        "group.id": pipeline.group_id,
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "auto.offset.reset": source.start_from,
        "partition.assignment.strategy": "cooperative-sticky",
        "session.timeout.ms": source.session_timeout_ms,
        "heartbeat.interval.ms": source.session_timeout_ms // 5,
    }
    if source.static_membership and settings.pod_name:
        config["group.instance.id"] = settings.pod_name
    return config


def message_headers(message: Message) -> tuple[tuple[str, bytes | None], ...]:
    """A consumed message's headers as (name, raw value) pairs, in order."""
    headers = message.headers()
    if not headers:  # the common case: no generator to make
        return ()
    pairs = headers.items() if isinstance(headers, dict) else headers
    return tuple((name, value.encode() if isinstance(value, str) else value) for name, value in pairs)


def to_record(message: Message) -> Record:
    """A consumed message as the transform sees it."""
    _, timestamp = message.timestamp()
    # topic, partition, offset, timestamp_ms, key, value, headers: by position, half the cost of by name
    return Record(
        message.topic() or "",
        message.partition() or 0,
        message.offset() or 0,
        timestamp,
        message.key(),
        message.value(),
        message_headers(message),
    )


def partition_names(partitions: Iterable[TopicPartition]) -> str:
    """`topic[0],topic[1]`, for logs."""
    return ",".join(f"{p.topic}[{p.partition}]" for p in partitions)
