"""examples/gophers-r-us-avro.yaml against the real servers and a real schema registry (Apicurio, through its
Confluent-compatible API): Avro values in the Confluent wire format become the same rows as JSON ones; a value that
is not Avro, names an unknown schema or does not match its schema is a dead letter saying which; while the registry
does not answer, the worker waits (not ready, saying why) and dead-letters nothing, then writes on."""

from __future__ import annotations

import io
import json
import time
from pathlib import Path

import fastavro
from confluent_kafka import Producer
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient

from .harness import CommitAuditor, running

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "gophers-r-us-avro.yaml"
ITEM = {"type": "record", "name": "Item", "fields": [{"name": "name", "type": "string"},
                                                     {"name": "price", "type": "double"}]}  # fmt: skip
EVENT_V1 = {"type": "record", "name": "StoreEvent", "namespace": "shop",
            "fields": [{"name": "id", "type": "string"}, {"name": "item", "type": ITEM}]}  # fmt: skip
EVENT_V2 = {**EVENT_V1, "fields": [*EVENT_V1["fields"], {"name": "store", "type": ["null", "string"], "default": None}]}


def registry_client(registry_url: str) -> SchemaRegistryClient:
    """A client whose request gives up after 10 s and is tried again (the client's own retries): without a timeout
    it waits for ever, and one CI run hung on a response Apicurio logged as sent but never wrote, after the test
    that pauses it."""
    return SchemaRegistryClient({"url": registry_url, "timeout": 10})


def register(registry_url: str, subject: str, schema: dict[str, object]) -> int:
    return int(registry_client(registry_url).register_schema(subject, Schema(json.dumps(schema), "AVRO")))


def wire(schema_id: int, schema: dict[str, object]):  # type: ignore[no-untyped-def]
    """An encoder of documents into the Confluent wire format: byte 0, the schema id, the Avro data."""
    parsed = fastavro.parse_schema(schema)

    def encode(document: dict[str, object]) -> bytes:
        out = io.BytesIO()
        fastavro.schemaless_writer(out, parsed, {"store": None, **document} if schema is EVENT_V2 else document)
        return b"\x00" + schema_id.to_bytes(4, "big") + out.getvalue()

    return encode


def test_avro_values_become_rows_and_bad_ones_dead_letters_naming_why(pipeline, make_worker, schema_registry) -> None:  # type: ignore[no-untyped-def]
    v1 = register(schema_registry.url, f"{pipeline.topic}-value", EVENT_V1)
    pipeline.produce(200, encode=wire(v1, EVENT_V1))
    truncated = wire(v1, EVENT_V1)({"id": "x", "item": {"name": "blue-gopher", "price": 1.0}})[:8]
    unknown = b"\x00" + (999_999).to_bytes(4, "big") + b"\x02a"
    poison = {
        b'{"id": "json-1", "item": {"name": "blue-gopher", "price": 1.0}}': "undecodable",  # JSON, not Avro
        unknown: "unknown_schema",
        truncated: "undecodable",  # the schema is known; the data ends too early
    }
    producer = Producer({"bootstrap.servers": pipeline.bootstrap})
    for value in poison:
        producer.produce(pipeline.topic, value=value)
    assert producer.flush(30) == 0
    pipeline.produce(100, encode=wire(v1, EVENT_V1))

    with (
        CommitAuditor(pipeline) as audit,
        running(make_worker(pipeline.example_manifest(EXAMPLE, schemaRegistry={"url": schema_registry.url}))) as w,
    ):
        rows = pipeline.wait_for_rows(300)
        letters = pipeline.dead_letters(len(poison))
        assert w.stop()[0] == 0
    assert rows == pipeline.expected_rows()
    assert pipeline.committed() == {0: 300 + len(poison)}
    refused = {m.value(): dict(m.headers()) for m in letters}
    assert {value: headers["sluice.error"].decode() for value, headers in refused.items()} == poison
    assert "not Avro in the Confluent wire format" in refused[next(iter(poison))]["sluice.reason"].decode()
    assert b"schema id 999999 is unknown to the schema registry" in refused[unknown]["sluice.reason"]
    assert all("sluice.table" not in headers for headers in refused.values())  # refused before any table
    assert audit.violations == []


def test_while_the_registry_does_not_answer_the_worker_waits_then_writes_on(
    pipeline, make_worker, schema_registry
) -> None:  # type: ignore[no-untyped-def]
    v1 = register(schema_registry.url, f"{pipeline.topic}-value", EVENT_V1)
    v2 = register(schema_registry.url, f"{pipeline.topic}-value", EVENT_V2)  # not yet seen by the worker
    pipeline.produce(100, encode=wire(v1, EVENT_V1))
    registry = {"url": schema_registry.url, "timeoutSeconds": 1}  # each try gives up after 1 s
    with (
        CommitAuditor(pipeline) as audit,
        running(make_worker(pipeline.example_manifest(EXAMPLE, schemaRegistry=registry))) as w,
    ):
        pipeline.wait_for_rows(100)
        with schema_registry.paused():
            pipeline.produce(100, encode=wire(v2, EVENT_V2))  # a new schema id: the worker must ask the registry
            deadline = time.monotonic() + 30
            while (status := w.readyz())[0] == 200 and time.monotonic() < deadline:
                time.sleep(0.5)
            assert status[0] == 503 and "schema registry unavailable" in status[1], status
            time.sleep(3)  # two or three more tries (1 s each, then a backoff): none may dead-letter or skip anything
            assert len(pipeline.rows()) == 100
        rows = pipeline.wait_for_rows(200, timeout=60)
        w.wait_ready(60)
        assert w.stop()[0] == 0
    assert rows == pipeline.expected_rows()
    assert pipeline.dead_letters(0, timeout=2) == []
    assert pipeline.committed() == {0: 200}
    assert audit.violations == []


PROTOBUF_EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "gophers-r-us-protobuf.yaml"


def store_event_class():  # type: ignore[no-untyped-def]
    """StoreEvent of a .proto built here (no protoc): Item first, so StoreEvent is message index 1."""
    from google.protobuf import descriptor_pb2, descriptor_pool
    from google.protobuf.message_factory import GetMessageClass

    field = descriptor_pb2.FieldDescriptorProto
    proto = descriptor_pb2.FileDescriptorProto(name="store_event.proto", package="shop", syntax="proto3")
    item = proto.message_type.add(name="Item")
    item.field.add(name="name", number=1, type=field.TYPE_STRING, label=field.LABEL_OPTIONAL)
    item.field.add(name="price", number=2, type=field.TYPE_DOUBLE, label=field.LABEL_OPTIONAL)
    event = proto.message_type.add(name="StoreEvent")
    event.field.add(name="id", number=1, type=field.TYPE_STRING, label=field.LABEL_OPTIONAL)
    event.field.add(name="item", number=2, type=field.TYPE_MESSAGE, label=field.LABEL_OPTIONAL, type_name=".shop.Item")
    pool = descriptor_pool.DescriptorPool()
    pool.Add(proto)
    return GetMessageClass(pool.FindMessageTypeByName("shop.StoreEvent"))


def test_protobuf_values_become_the_same_rows(pipeline, make_worker, schema_registry) -> None:  # type: ignore[no-untyped-def]
    from confluent_kafka.schema_registry.protobuf import ProtobufSerializer
    from confluent_kafka.serialization import MessageField, SerializationContext

    event_class = store_event_class()
    serializer = ProtobufSerializer(event_class, registry_client(schema_registry.url),
                                    {"use.deprecated.format": False})  # fmt: skip
    context = SerializationContext(pipeline.topic, MessageField.VALUE)

    def encode(document: dict[str, object]) -> bytes:
        item = document["item"]
        assert isinstance(item, dict)
        return bytes(serializer(event_class(id=document["id"], item=item), context))

    pipeline.produce(150, encode=encode)
    junk = b"\x00" + (999_998).to_bytes(4, "big") + b"\x00\x0a\x01x"
    producer = Producer({"bootstrap.servers": pipeline.bootstrap})
    producer.produce(pipeline.topic, value=junk)
    assert producer.flush(30) == 0
    path = pipeline.example_manifest(PROTOBUF_EXAMPLE, schemaRegistry={"url": schema_registry.url})
    with CommitAuditor(pipeline) as audit, running(make_worker(path)) as worker:
        rows = pipeline.wait_for_rows(150)
        (letter,) = pipeline.dead_letters(1)
        assert worker.stop()[0] == 0
    assert rows == pipeline.expected_rows()
    assert dict(letter.headers())["sluice.error"] == b"unknown_schema"
    assert pipeline.committed() == {0: 151}
    assert audit.violations == []
