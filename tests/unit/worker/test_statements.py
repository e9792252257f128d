"""A row bound by the worker is the request the driver's own bind makes: same bytes, routing key and errors."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any, NamedTuple

import pytest
from cassandra import cqltypes
from cassandra.query import UNSET_VALUE, BatchStatement, BatchType, PreparedStatement
from sluice_worker.model import parse_spec
from sluice_worker.statements import TableStatements, to_cql_value

# One column of every CQL type a field can have, as the driver's prepare describes them, and a value of each as
# the transform gives it.
COLUMNS: dict[str, tuple[type, object]] = {
    "id": (cqltypes.UTF8Type, "gopher-42"),
    "region": (cqltypes.AsciiType, "eu"),
    "tiny": (cqltypes.ByteType, -7),
    "small": (cqltypes.ShortType, 1_000),
    "count": (cqltypes.Int32Type, 2**31 - 1),
    "big": (cqltypes.LongType, -(2**63)),
    "huge": (cqltypes.IntegerType, 2**70 + 1),
    "ratio": (cqltypes.FloatType, 0.25),
    "price": (cqltypes.DoubleType, 12.5),
    "exact": (cqltypes.DecimalType, Decimal("12.3400")),
    "active": (cqltypes.BooleanType, True),
    "seen": (cqltypes.DateType, datetime(2026, 12, 6, 3, 4, 5, 678000, tzinfo=UTC)),
    "day": (cqltypes.SimpleDateType, date(2026, 12, 6)),
    "ref": (cqltypes.UUIDType, uuid.UUID("1b4e28ba-2fa1-41d2-883f-0016d3cca427")),
    "event": (cqltypes.TimeUUIDType, uuid.UUID("d2177dd0-eaa2-11de-a572-001b779c76e3")),
    "raw": (cqltypes.BytesType, b"\x00\xff"),
    "note": (cqltypes.UTF8Type, None),  # missing in the message: left unset
}


class Column(NamedTuple):  # the shape of the driver's column metadata
    keyspace_name: str
    table_name: str
    name: str
    type: type


def statements(names: list[str], partition_key: list[int], ttl: bool = False) -> TableStatements:
    fields = {name: {"path": f"$.{name}"} for name in names}
    target = parse_spec(
        {
            "source": {"bootstrapServers": "k:9092", "topics": ["events"]},
            "sink": {"contactPoints": ["c"], "keyspace": "shop", "table": "events"},
            "transform": {"fields": fields},
        }
    ).targets()[0]
    markers = [Column("shop", "events", name, COLUMNS[name][0]) for name in names]
    markers.append(Column("shop", "events", "[timestamp]", cqltypes.LongType))
    if ttl:
        markers.append(Column("shop", "events", "[ttl]", cqltypes.Int32Type))
    insert = PreparedStatement(markers, b"id", partition_key, "INSERT ...", "shop", 4, None, None, None)
    return TableStatements(target, names, insert, None, [])


def row(names: list[str]) -> dict[str, Any]:
    return {name: COLUMNS[name][1] for name in names if COLUMNS[name][1] is not None}


def test_every_type_is_bound_to_the_bytes_the_driver_binds() -> None:
    names = list(COLUMNS)
    table = statements(names, partition_key=[0])
    bound = table.bind(row(names), 1_795_694_845_305_999)
    expected = table.insert.bind([to_cql_value(COLUMNS[name][1]) for name in names] + [1_795_694_845_305_999])
    assert bound.values == expected.values
    assert bound.values[names.index("note")] is UNSET_VALUE
    assert bound.values[-1] == (1_795_694_845_305_999).to_bytes(8, "big")
    assert (bound.routing_key, bound.keyspace) == (b"gopher-42", "shop")
    assert bound.consistency_level == table.insert.consistency_level
    assert bound.is_idempotent == table.insert.is_idempotent


def test_a_composite_partition_key_routes_as_the_drivers_bind_does() -> None:
    names = ["id", "region", "day", "price"]
    table = statements(names, partition_key=[1, 0])
    bound = table.bind(row(names), 1, ttl=None)
    assert bound.routing_key == table.insert.bind(bound.raw_values).routing_key
    assert bound.routing_key.startswith(b"\x00\x02eu\x00")


def test_a_per_row_ttl_is_bound_after_the_timestamp() -> None:
    table = statements(["id"], partition_key=[0], ttl=True)
    bound = table.bind({"id": "a"}, 5, ttl=3600)
    assert bound.values == [b"a", (5).to_bytes(8, "big"), (3600).to_bytes(4, "big")]


def test_batches_of_bound_rows_carry_each_rows_values() -> None:
    table = statements(["id", "price"], partition_key=[0])
    batch = BatchStatement(BatchType.UNLOGGED)
    for number in range(3):
        batch.add(table.bind({"id": f"g{number}", "price": float(number)}, number))
    assert [params[0] for _, _, params in batch._statements_and_parameters] == [b"g0", b"g1", b"g2"]
    assert batch.routing_key == b"g0"


def test_a_value_its_column_refuses_fails_naming_the_column() -> None:
    table = statements(["id", "count"], partition_key=[0])
    with pytest.raises(TypeError, match='column "count"'):
        table.bind({"id": "a", "count": "many"}, 1)


def test_a_partition_key_left_unset_fails_naming_the_column() -> None:
    table = statements(["id", "price"], partition_key=[0])
    with pytest.raises(ValueError, match="routing key 'id'"):
        table.bind({"price": 1.0}, 1)


@pytest.mark.parametrize("value", [1_795_694_845_305, -1, 1.5e12, datetime(2026, 12, 6, tzinfo=UTC)])
def test_a_timestamp_of_any_accepted_type_is_serialized_as_the_driver_does(value: object) -> None:
    names = ["id", "seen"]
    (serialize,) = statements(names, partition_key=[0]).serializers[1:2]
    assert serialize(value, 4) == cqltypes.DateType.serialize(value, 4)
