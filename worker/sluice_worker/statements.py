"""The CQL of one table a pipeline writes: created if asked, its prepared insert and delete, rows bound to them."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cached_property
from typing import Any

from cassandra import ConsistencyLevel  # type: ignore[attr-defined]
from cassandra.cluster import Session
from cassandra.cqltypes import DateType
from cassandra.marshal import int64_pack
from cassandra.query import UNSET_VALUE, BoundStatement, PreparedStatement

from .model import TableTarget
from .transform import Row
from .writes import MissingKey

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MILLISECOND = timedelta(milliseconds=1)
# Values the driver binds as they are (the common case: skip to_cql_value's checks).
_AS_IS = frozenset({str, int, float, bool, bytes})


@dataclass(frozen=True)
class TableStatements:
    """What one table's rows and tombstones are bound to; prepared once per connection."""

    target: TableTarget
    columns: list[str]
    insert: PreparedStatement
    delete: PreparedStatement | None  # only where tombstones delete
    key: list[str]  # the primary key columns the delete binds, in order

    @classmethod
    def prepare(cls, session: Session, target: TableTarget) -> TableStatements:
        """Creates the keyspace and table if `createTable` says so, then prepares the insert (and delete)."""
        create_table(session, target)
        columns = target.transform.written_columns()
        consistency = ConsistencyLevel.name_to_value[target.consistency]
        insert = session.prepare(insert_cql(target, columns))
        insert.is_idempotent, insert.consistency_level = True, consistency
        delete, key = None, []
        if target.transform.tombstones == "delete":
            key = primary_key(session, target)
            where = " AND ".join(f"{column} = ?" for column in key)
            delete = session.prepare(f"DELETE FROM {target.name} USING TIMESTAMP ? WHERE {where}")
            delete.is_idempotent, delete.consistency_level = True, consistency
        return cls(target, columns, insert, delete, key)

    @cached_property
    def serializers(self) -> list[Callable[[object, int], bytes]]:
        """Each insert marker's serializer, from its column's type: bind() serializes a row's values itself, at
        half the cost of the driver's BoundStatement.bind (which looks up each column's metadata and an
        encryption policy again for every value of every row; Sluice sets no such policy)."""
        return [_serializer(column.type) for column in self.insert.column_metadata]

    @cached_property
    def routing_indexes(self) -> list[int]:
        """The insert's markers that make up the partition key."""
        return list(self.insert.routing_key_indexes or ())

    def bind(self, row: Row, timestamp_us: int, ttl: int | None = None) -> BoundStatement:
        """The insert for `row`: a missing column is left unset (no tombstone); stamped `timestamp_us`; `ttl`
        seconds when ttlFrom gives each row its own."""
        values = [value if type(value) in _AS_IS else to_cql_value(value) for value in map(row.get, self.columns)]
        values.append(timestamp_us)
        if ttl is not None:
            values.append(ttl)
        insert, version = self.insert, self.insert.protocol_version
        try:
            serialized = [
                value if value is UNSET_VALUE else serialize(value, version)
                for value, serialize in zip(values, self.serializers, strict=True)
            ]
        except Exception:  # a value its column's type refuses: the driver's own bind raises, naming the column
            return insert.bind(values)
        for index in self.routing_indexes:
            if serialized[index] is UNSET_VALUE:
                return insert.bind(values)  # raises naming the partition key column left unset
        statement = BoundStatement(insert)
        statement.values, statement.raw_values = serialized, values
        return statement

    def bind_delete(self, key: Row, timestamp_us: int) -> BoundStatement:
        """The delete of the row `key` names (a tombstone), stamped `timestamp_us`. Raises MissingKey naming
        the primary key column the tombstone has no value for."""
        assert self.delete is not None, "tombstones of this table are not deletes"
        values: list[object] = [timestamp_us]
        for column in self.key:
            value = key.get(column)
            if value is None:
                raise MissingKey(
                    f"tombstone: primary key column {column!r} of {self.target.name} has no value (a tombstone has "
                    "only the columns read from the key, headers or record)"
                )
            values.append(to_cql_value(value))
        return self.delete.bind(values)


def create_table(session: Session, target: TableTarget) -> None:
    table = target.create_table
    if table is None:
        return
    replication = ", ".join(f"'{k}': {v!r}" for k, v in table.replication.as_cql_map().items())
    session.execute(f"CREATE KEYSPACE IF NOT EXISTS {target.keyspace} WITH replication = {{{replication}}}", timeout=30)
    columns = ", ".join(f"{column} {cql_type}" for column, cql_type in table.columns.items())
    partition = ", ".join(table.primary_key[: table.partition_key_columns])
    clustering = table.primary_key[table.partition_key_columns :]
    key = f"({partition}){''.join(', ' + c for c in clustering)}"
    session.execute(f"CREATE TABLE IF NOT EXISTS {target.name} ({columns}, PRIMARY KEY ({key}))", timeout=30)
    session.cluster.control_connection.wait_for_schema_agreement(wait_time=30)


def insert_cql(target: TableTarget, columns: list[str]) -> str:
    names = ", ".join(columns)
    markers = ", ".join("?" for _ in columns)
    using = "USING TIMESTAMP ?"
    if target.ttl_from is not None:
        using += " AND TTL ?"
    elif target.ttl_seconds:
        using += f" AND TTL {target.ttl_seconds}"
    return f"INSERT INTO {target.name} ({names}) VALUES ({markers}) {using}"


def primary_key(session: Session, target: TableTarget) -> list[str]:
    """The table's primary key columns: from createTable, else from the cluster's schema."""
    if target.create_table is not None:
        return list(target.create_table.primary_key)
    keyspace = session.cluster.metadata.keyspaces.get(target.keyspace)
    table = keyspace.tables.get(target.table) if keyspace is not None else None
    if table is None:
        raise ConnectionError(f"table {target.name} does not exist")
    return [column.name for column in table.primary_key]


def _serializer(cql_type: Any) -> Callable[[object, int], bytes]:
    """The column type's serializer; for a timestamp given as integer milliseconds (as to_cql_value makes them)
    one that packs it at once: the driver's tries a datetime's methods first and so reaches an integer only
    through two exceptions."""
    serialize: Callable[[object, int], bytes] = cql_type.serialize
    if issubclass(cql_type, DateType):

        def timestamp(value: object, version: int) -> bytes:
            return int64_pack(value) if type(value) is int else serialize(value, version)

        return timestamp
    return serialize


def to_cql_value(value: object) -> object:
    """A row value as the insert binds it: None is left unset (no tombstone); a datetime becomes the
    milliseconds a CQL timestamp holds, in integer arithmetic (the driver's own conversion is much slower)."""
    if value is None:
        return UNSET_VALUE
    if isinstance(value, datetime):
        aware = value if value.tzinfo is not None else value.replace(tzinfo=UTC)  # naive means UTC, as in the driver
        return (aware - _EPOCH) // _MILLISECOND
    return value
