"""Smoke tests: the local Kafka is a real broker that stores messages and survives faults."""

from __future__ import annotations

import uuid

import pytest
from confluent_kafka import Consumer, KafkaException, Producer
from confluent_kafka.admin import AdminClient

from tests.waiting import wait_for

pytestmark = pytest.mark.kafka


def produce(bootstrap: str, topic: str, values: list[bytes]) -> None:
    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True})
    for value in values:
        producer.produce(topic, value)
    assert producer.flush(30) == 0


def consume(bootstrap: str, topic: str, count: int) -> list[bytes]:
    consumer = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": f"smoke-{uuid.uuid4().hex}", "auto.offset.reset": "earliest"}
    )
    consumer.subscribe([topic])
    received: list[bytes] = []
    try:
        for _ in range(60):
            for message in consumer.consume(count - len(received), timeout=1):
                assert message.error() is None, message.error()
                received.append(message.value())
            if len(received) >= count:
                break
    finally:
        consumer.close()
    return received


def test_produce_and_consume_on_a_real_topic(kafka) -> None:  # type: ignore[no-untyped-def]
    topic = f"smoke-{uuid.uuid4().hex[:8]}"
    sent = [f"message-{i}".encode() for i in range(10)]
    produce(kafka.bootstrap_servers, topic, sent)
    assert consume(kafka.bootstrap_servers, topic, len(sent)) == sent


def test_paused_broker_answers_nothing_until_resumed(kafka) -> None:  # type: ignore[no-untyped-def]
    admin = AdminClient({"bootstrap.servers": kafka.bootstrap_servers})
    with kafka.paused(), pytest.raises(KafkaException):
        admin.list_topics(timeout=3)
    # What is measured is the broker, so each probe is a new client on a new connection: a client that
    # connected during the pause may wait out its own connection-setup timeout (librdkafka's
    # socket.connection.setup.timeout.ms, 30 s) on a connection the paused broker never set up. Resuming is not
    # one instant either: the KRaft controller in the same JVM may fence the broker (its heartbeats stopped
    # with it) and unfence it at its next heartbeat. Refusals on the way are part of resuming.
    wait_for(
        "the resumed broker to answer a new client's metadata request listing itself",
        lambda: AdminClient({"bootstrap.servers": kafka.bootstrap_servers}).list_topics(timeout=5).brokers,
        timeout=30,
        tolerate=(KafkaException,),
    )


def test_killed_broker_restarts_with_its_data(kafka) -> None:  # type: ignore[no-untyped-def]
    topic = f"smoke-{uuid.uuid4().hex[:8]}"
    produce(kafka.bootstrap_servers, topic, [b"before-crash"])
    kafka.kill()
    kafka.start()
    assert consume(kafka.bootstrap_servers, topic, 1) == [b"before-crash"]
