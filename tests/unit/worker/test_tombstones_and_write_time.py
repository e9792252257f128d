"""Tombstones (delete, skip, dead-letter) and each write's timestamp and TTL from the record or from columns."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from sluice_worker.model import PipelineError, SinkSpec, TransformSpec, parse_spec
from sluice_worker.transform import SKIPPED, Delete, Record, Rejection, compile_transform
from sluice_worker.write_time import WriteTime, WriteTimeError

RECORD_TIME_MS = 1_714_563_200_123

CDC_FIELDS = {
    "id": {"source": "key"},
    "tenant": {"source": "header", "header": "tenant"},
    "name": {"path": "$.name"},
    "changed_at": {"path": "$.changed_at", "type": "bigint", "write": False},
}


def record(value: bytes | None, offset: int = 7, **headers: bytes) -> Record:
    return Record("users", 0, offset, RECORD_TIME_MS, key=b"u-1", value=value, headers=tuple(headers.items()))


def tombstones(action: str, **spec: Any) -> Any:
    return compile_transform(TransformSpec.model_validate({"fields": CDC_FIELDS, "tombstones": action, **spec}))


def test_delete_carries_the_columns_read_from_the_key_headers_and_record_only() -> None:
    lookups = {"region": {"field": "tenant", "table": {"acme": "eu"}}, "label": {"field": "name", "table": {"x": "y"}}}
    result = tombstones("delete", lookups=lookups)(record(None, tenant=b"acme"))
    assert result == Delete({"id": "u-1", "tenant": "acme", "region": "eu"})


def test_skip_leaves_the_tombstone_out_and_dead_letter_names_the_setting() -> None:
    assert tombstones("skip")(record(None)) is SKIPPED
    rejection = tombstones("deadLetter")(record(None))
    reason = "message has no value (a tombstone) and transform.tombstones is deadLetter"
    assert rejection == Rejection(reason, "tombstone")


def test_a_message_with_a_value_is_a_row_whatever_tombstones_says() -> None:
    row = tombstones("delete")(record(b'{"name": "ann", "changed_at": 1714563300000}', tenant=b"acme"))
    assert row == {"id": "u-1", "tenant": "acme", "name": "ann", "changed_at": 1714563300000}


def test_write_false_keeps_a_column_out_of_the_insert() -> None:
    spec = TransformSpec.model_validate({"fields": CDC_FIELDS})
    assert spec.written_columns() == ["id", "tenant", "name"]
    assert spec.key_columns() == ["id", "tenant"]


def _pipeline(transform: dict[str, Any], sink: dict[str, Any]) -> Any:
    base_sink = {"contactPoints": ["127.0.0.1"], "keyspace": "ks", "table": "users"}
    return parse_spec({"source": {"bootstrapServers": "k:9092", "topics": ["users"]}, "transform": transform,
                       "sink": {**base_sink, **sink}})  # fmt: skip


def test_delete_needs_every_primary_key_column_outside_the_value() -> None:
    table = {"columns": {"id": "text", "name": "text"}, "primaryKey": ["name"]}
    fields = {"id": {"source": "key"}, "name": {"path": "$.name"}}
    with pytest.raises(PipelineError, match="primary key column 'name' is not read from the key"):
        _pipeline({"fields": fields, "tombstones": "delete", "required": ["name"]}, {"createTable": table})
    table["primaryKey"] = ["id"]
    _pipeline({"fields": fields, "tombstones": "delete", "required": ["id"]}, {"createTable": table})


def test_time_columns_must_be_mapped_and_agree_with_use_record_timestamp() -> None:
    fields = {"id": {"source": "key"}}
    with pytest.raises(PipelineError, match=r"spec: sink\.ttlFrom\.column 'ttl' is not a column in fields"):
        _pipeline({"fields": fields}, {"ttlFrom": {"column": "ttl"}})
    with pytest.raises(PipelineError, match="useRecordTimestamp false would contradict it"):
        _pipeline({"fields": fields}, {"writeTimestampFrom": {"column": "id"}, "useRecordTimestamp": False})


def write_time(**sink: Any) -> WriteTime:
    return WriteTime(SinkSpec.model_validate({"contactPoints": ["c"], "keyspace": "k", "table": "t", **sink}))


def test_the_record_time_is_the_default_timestamp_with_the_offset_as_tie_break() -> None:
    assert write_time().timestamp(record(b"{}", offset=1_234_567), {}) == RECORD_TIME_MS * 1000 + 567


@pytest.mark.parametrize(
    ("unit", "value", "micros"),
    [
        ("milliseconds", 1_714_563_300_000, 1_714_563_300_000_000),
        ("seconds", 1_714_563_300, 1_714_563_300_000_000),
        ("seconds", Decimal("1714563300.5"), 1_714_563_300_500_000),
        ("microseconds", 1_714_563_300_000_001, 1_714_563_300_000_001),
        ("seconds", datetime(2024, 5, 1, 11, 35, tzinfo=UTC), 1_714_563_300_000_000),  # a timestamp column
    ],
)
def test_the_timestamp_from_a_column_in_its_unit(unit: str, value: object, micros: int) -> None:
    times = write_time(writeTimestampFrom={"column": "changed_at", "unit": unit})
    assert times.timestamp(record(b"{}"), {"changed_at": value}) == micros


def test_a_missing_timestamp_column_falls_back_to_the_record_time_and_text_is_refused() -> None:
    times = write_time(writeTimestampFrom={"column": "changed_at", "unit": "milliseconds"})
    assert times.timestamp(record(b"{}", offset=3), {"changed_at": None}) == RECORD_TIME_MS * 1000 + 3
    with pytest.raises(WriteTimeError, match=r"sink\.writeTimestampFrom: column 'changed_at' is str 'soon'"):
        times.timestamp(record(b"{}"), {"changed_at": "soon"})


def test_the_ttl_from_a_column_rounds_up_and_falls_back_to_ttl_seconds() -> None:
    times = write_time(ttlFrom={"column": "keep", "unit": "milliseconds"}, ttlSeconds=60)
    assert times.per_row_ttl
    assert times.ttl({"keep": 1500}) == 2
    assert times.ttl({"keep": 0}) == 0  # Cassandra's "never expires"
    assert times.ttl({}) == 60
    assert not write_time(ttlSeconds=60).per_row_ttl  # the insert carries a fixed TTL


@pytest.mark.parametrize(("value", "problem"), [(-5, "outside 0..630720000"), (True, "is bool True"),
                                                (float("nan"), "is float nan")])  # fmt: skip
def test_an_impossible_ttl_is_refused_naming_the_field(value: object, problem: str) -> None:
    times = write_time(ttlFrom={"column": "keep"})
    with pytest.raises(WriteTimeError, match=f"sink.ttlFrom: column 'keep' .*{problem}"):
        times.ttl({"keep": value})
