"""Kafka and Cassandra clients run inside the kind cluster (the worker image has both): the suite's eyes and hands.

The suite pipes this file to `python -` in a toolbox pod, so test traffic stays inside the cluster. Each command
prints one JSON document. It imports nothing of the tests and nothing but the worker image's own packages.

    produce TOPIC FIRST COUNT         store events evt-FIRST .. evt-(FIRST+COUNT-1), keyed by id
    create-topic TOPIC PARTITIONS     idempotent
    rows TABLE [ID ...]               {"count": rows, "departments": {id: department}} for the ids given
    departments TABLE                 {department: rows}
    offsets GROUP TOPIC               {"committed": sum, "end": sum} over the topic's partitions
    members GROUP                     {"members": [[client id, [partitions]], ...]} of the consumer group
    scram-user NAME PASSWORD          a SCRAM-SHA-512 login for the SASL_PLAINTEXT listener (made or replaced)
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

KAFKA = os.environ.get("E2E_KAFKA", "kafka-0.kafka.sluice-e2e.svc.cluster.local:9092")
CASSANDRA = os.environ.get("E2E_CASSANDRA", "cassandra-0.cassandra.sluice-e2e.svc.cluster.local")
ITEMS = ["blue-gopher", "gosf-sticker", "gophercon-uk-shirt", "gopher-mug"]


def event(i: int) -> bytes:
    return json.dumps({"id": f"evt-{i}", "item": {"name": ITEMS[i % len(ITEMS)], "price": 1.5 + i % 7}}).encode()


def produce(topic: str, first: int, count: int) -> dict[str, Any]:
    from confluent_kafka import Producer

    failed: list[str] = []

    def delivered(error: Any, _message: Any) -> None:
        if error is not None:
            failed.append(str(error))

    producer = Producer(
        {
            "bootstrap.servers": KAFKA,
            "enable.idempotence": True,  # a broker coming back mid-way duplicates nothing
            "linger.ms": 20,
            "message.timeout.ms": 240_000,
        }
    )
    for i in range(first, first + count):
        producer.produce(topic, event(i), key=f"evt-{i}", on_delivery=delivered)
        producer.poll(0)
    left = producer.flush(250)
    if left or failed:
        raise SystemExit(f"produce: {left} messages undelivered, {len(failed)} failed: {failed[:3]}")
    return {"produced": count}


def create_topic(topic: str, partitions: int) -> dict[str, Any]:
    from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

    admin = AdminClient({"bootstrap.servers": KAFKA})
    if topic not in admin.list_topics(timeout=30).topics:
        admin.create_topics([NewTopic(topic, partitions, 1)])[topic].result(30)
    return {"topic": topic, "partitions": len(admin.list_topics(topic, timeout=30).topics[topic].partitions)}


def rows(table: str, ids: list[str]) -> dict[str, Any]:
    from cassandra.cluster import Cluster

    cluster = Cluster([CASSANDRA], connect_timeout=10)
    try:
        session = cluster.connect()
        count = session.execute(f"SELECT COUNT(*) FROM {table}", timeout=60).one()[0]
        lookup = session.prepare(f"SELECT department FROM {table} WHERE id = ?")
        departments = {}
        for id_ in ids:
            row = session.execute(lookup, (id_,), timeout=30).one()
            departments[id_] = row.department if row else None
        return {"count": count, "departments": departments}
    finally:
        cluster.shutdown()


def departments(table: str) -> dict[str, Any]:
    from cassandra.cluster import Cluster

    cluster = Cluster([CASSANDRA], connect_timeout=10)
    try:
        counts: dict[str, int] = {}
        for row in cluster.connect().execute(f"SELECT department FROM {table}", timeout=60):
            counts[row.department] = counts.get(row.department, 0) + 1
        return dict(sorted(counts.items()))
    finally:
        cluster.shutdown()


def offsets(group: str, topic: str) -> dict[str, Any]:
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer({"bootstrap.servers": KAFKA, "group.id": group, "enable.auto.commit": False})
    try:
        partitions = consumer.list_topics(topic, timeout=30).topics[topic].partitions
        wanted = [TopicPartition(topic, p) for p in partitions]
        committed = sum(max(tp.offset, 0) for tp in consumer.committed(wanted, timeout=30))
        end = sum(consumer.get_watermark_offsets(tp, timeout=30)[1] for tp in wanted)
        return {"committed": committed, "end": end}
    finally:
        consumer.close()


def members(group: str) -> dict[str, Any]:
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": KAFKA})
    described = admin.describe_consumer_groups([group])[group].result(30)
    found = [[m.client_id, sorted(tp.partition for tp in m.assignment.topic_partitions)] for m in described.members]
    return {"state": str(described.state), "members": sorted(found)}


def scram_user(name: str, password: str) -> dict[str, Any]:
    from confluent_kafka.admin import (  # type: ignore[attr-defined]
        AdminClient,
        ScramCredentialInfo,
        ScramMechanism,
        UserScramCredentialUpsertion,
    )

    admin = AdminClient({"bootstrap.servers": KAFKA})
    info = ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, 8192)
    upsert = UserScramCredentialUpsertion(name, info, password.encode())
    for future in admin.alter_user_scram_credentials([upsert], request_timeout=30).values():
        future.result(timeout=30)
    return {"user": name, "mechanism": "SCRAM-SHA-512"}


def main(argv: list[str]) -> None:
    command, args = argv[0], argv[1:]
    if command == "produce":
        result = produce(args[0], int(args[1]), int(args[2]))
    elif command == "create-topic":
        result = create_topic(args[0], int(args[1]))
    elif command == "rows":
        result = rows(args[0], args[1:])
    elif command == "departments":
        result = departments(args[0])
    elif command == "offsets":
        result = offsets(args[0], args[1])
    elif command == "members":
        result = members(args[0])
    elif command == "scram-user":
        result = scram_user(args[0], args[1])
    else:
        raise SystemExit(f"unknown command {command!r}")
    print(json.dumps(result))


if __name__ == "__main__":
    main(sys.argv[1:])
