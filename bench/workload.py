"""The benchmark's data: Gophers R Us store events in a fresh topic, and the pipeline every system runs."""

from __future__ import annotations

import contextlib
import json
import random
import sys
import time
from collections import Counter
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import yaml
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]
from sluice_stack.kafka import CLIENT_LOG

REPO_DIR = Path(__file__).resolve().parents[1]
EXAMPLE = REPO_DIR / "examples" / "gophers-r-us.yaml"
KEYSPACE = "sluice_bench"

# Items of the example's lookup table plus two it does not know (department "misc").
UNKNOWN_ITEMS = ("gopher-mug", "laptop-bag")


@dataclass(frozen=True)
class Pipeline:
    """What every system does, read from examples/gophers-r-us.yaml: the columns, the table and the lookup."""

    manifest: dict[str, Any]

    @classmethod
    def example(cls) -> Pipeline:
        return cls(yaml.safe_load(EXAMPLE.read_text()))

    @property
    def spec(self) -> dict[str, Any]:
        return dict(self.manifest["spec"])

    @cached_property
    def departments(self) -> dict[str, str]:
        """item name -> department: the example's only lookup."""
        return dict(self.spec["transform"]["lookups"]["department"]["table"])

    @property
    def default_department(self) -> str:
        return str(self.spec["transform"]["lookups"]["department"]["default"])

    def department(self, item: str) -> str:
        return self.departments.get(item, self.default_department)

    @property
    def columns(self) -> dict[str, str]:
        """column -> CQL type, in the order of the example's createTable."""
        return dict(self.spec["sink"]["createTable"]["columns"])

    @property
    def insert_columns(self) -> list[str]:
        """The columns of the insert, in the worker's order: its fields, then its lookups."""
        transform = self.spec["transform"]
        return [*transform["fields"], *transform["lookups"]]

    def insert_cql(self, table: str) -> str:
        """The worker's prepared insert (sink.py): every column, then `USING TIMESTAMP ?`."""
        names = ", ".join(self.insert_columns)
        markers = ", ".join("?" for _ in self.insert_columns)
        return f"INSERT INTO {KEYSPACE}.{table} ({names}) VALUES ({markers}) USING TIMESTAMP ?"

    def create_table_cql(self, table: str, primary_key: tuple[str, ...] | None = None) -> str:
        """The example's table; `primary_key` (its first column the partition key) instead of the example's."""
        create = self.spec["sink"]["createTable"]
        columns = ", ".join(f"{name} {cql_type}" for name, cql_type in create["columns"].items())
        split = create.get("partitionKeyColumns", 1) if primary_key is None else 1
        primary_key = primary_key or tuple(create["primaryKey"])
        key = ", ".join([f"({', '.join(primary_key[:split])})", *primary_key[split:]])
        return f"CREATE TABLE {KEYSPACE}.{table} ({columns}, PRIMARY KEY ({key}))"


def make_events(count: int, items: list[str], seed: int = 6) -> list[tuple[str, bytes]]:
    """`count` (key, JSON value) store events: {"id": ..., "item": {"name": ..., "price": ...}}."""
    rng = random.Random(seed)
    events = []
    for i in range(count):
        event_id = f"evt-{i:08d}"
        event = {"id": event_id, "item": {"name": rng.choice(items), "price": round(rng.uniform(2, 40), 2)}}
        events.append((event_id, json.dumps(event).encode()))
    return events


def expected_departments(events: list[tuple[str, bytes]], pipeline: Pipeline) -> Counter[str]:
    return Counter(pipeline.department(json.loads(value)["item"]["name"]) for _, value in events)


def create_topic(bootstrap: str, topic: str, partitions: int) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap}, logger=CLIENT_LOG)
    for _ in range(100):  # right after a deletion the broker may still refuse the name
        try:
            admin.create_topics([NewTopic(topic, partitions, 1)])[topic].result(30)
            return
        except Exception as error:
            last = error
            time.sleep(0.2)
    raise RuntimeError(f"cannot create topic {topic}: {last}")


def delete_topic(bootstrap: str, topic: str) -> None:
    with contextlib.suppress(Exception):
        AdminClient({"bootstrap.servers": bootstrap}, logger=CLIENT_LOG).delete_topics([topic])[topic].result(30)


def produce(bootstrap: str, topic: str, events: list[tuple[str, bytes]]) -> float:
    """Produces every event (acknowledged by the broker); returns the seconds it took."""
    started = time.monotonic()
    producer = Producer(
        {"bootstrap.servers": bootstrap, "linger.ms": 20, "enable.idempotence": True, "logger": CLIENT_LOG}
    )
    failures: list[str] = []

    def delivered(error: object, _message: object) -> None:
        if error is not None:
            failures.append(str(error))

    for i, (key, value) in enumerate(events):
        while True:
            try:
                producer.produce(topic, key=key.encode(), value=value, on_delivery=delivered)
                break
            except BufferError:
                producer.poll(0.05)
        if i % 10_000 == 0:
            producer.poll(0)
            print(f"\rproducing {i:,}/{len(events):,}", end="", file=sys.stderr)
    left = producer.flush(120)
    print(f"\rproduced {len(events):,} events to {topic}        ", file=sys.stderr)
    if left or failures:
        raise RuntimeError(f"{left} events not delivered; errors: {failures[:3]}")
    return time.monotonic() - started


# The events' Avro schema, for the Avro run: the same fields as their JSON.
AVRO_SCHEMA: dict[str, Any] = {
    "type": "record", "name": "StoreEvent", "namespace": "gophers",
    "fields": [
        {"name": "id", "type": "string"},
        {"name": "item", "type": {"type": "record", "name": "Item", "fields": [
            {"name": "name", "type": "string"}, {"name": "price", "type": "double"}]}},
    ],
}  # fmt: skip


def as_avro(events: list[tuple[str, bytes]], registry_url: str, subject: str) -> list[tuple[str, bytes]]:
    """The same events with Avro values in the Confluent wire format (byte 0, the schema id the registry gives
    AVRO_SCHEMA under `subject`, the data)."""
    import io

    import fastavro
    from confluent_kafka.schema_registry import Schema, SchemaRegistryClient

    client = SchemaRegistryClient({"url": registry_url, "timeout": 10})  # a lost answer is tried again, not waited for
    schema_id = client.register_schema(subject, Schema(json.dumps(AVRO_SCHEMA), "AVRO"))
    header = b"\x00" + int(schema_id).to_bytes(4, "big")
    parsed = fastavro.parse_schema(AVRO_SCHEMA)
    encoded = []
    for key, value in events:
        out = io.BytesIO()
        fastavro.schemaless_writer(out, parsed, json.loads(value))
        encoded.append((key, header + out.getvalue()))
    return encoded
