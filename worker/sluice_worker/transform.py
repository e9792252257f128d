"""The pure per-message transform: a compiled TransformSpec turns a Kafka Record into a Row, a Delete of a row, a
Rejection, or Skipped."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Final, Literal, NamedTuple, Protocol, TypeAlias, assert_never

from sluice_worker.filters import compile_filter
from sluice_worker.model import CqlType, FieldMapping, FieldSource, PipelineError, TransformSpec

Row: TypeAlias = dict[str, object]
"""Column -> value, ready to bind to a prepared INSERT; None means missing (bind it as UNSET_VALUE)."""

RejectionKind = Literal[
    "invalid_json", "undecodable", "unknown_schema", "missing_field", "wrong_type", "transform_error",
    "write_rejected", "tombstone",
]  # fmt: skip


class Record(NamedTuple):
    """One consumed Kafka message, as the transform sees it (immutable; a named tuple is the cheapest to make)."""

    topic: str
    partition: int
    offset: int
    timestamp_ms: int
    key: bytes | None = None
    value: bytes | None = None
    headers: tuple[tuple[str, bytes | None], ...] = ()


@dataclass(frozen=True, slots=True)
class Skipped:
    """A message the filter leaves out: its offset is committed, it is counted, nothing is written."""


SKIPPED = Skipped()


@dataclass(frozen=True, slots=True)
class Delete:
    """A tombstone to apply: delete the row whose primary key `key` holds (the columns not read from the value)."""

    key: Row


@dataclass(frozen=True, slots=True)
class Rejection:
    """Why a message cannot become a row: a human `reason` naming the field, and a machine `error` kind."""

    reason: str
    error: RejectionKind


class _Unread:
    """The type of UNREAD."""


UNREAD: Final = _Unread()
"""A transform's `document` argument when the caller has not decoded the value: the transform parses it as JSON."""


class Transformer(Protocol):
    """A compiled transform: `reads_value` says whether any field reads the message value (else it need not be
    decoded); the call takes the decoded value as `document` (e.g. Avro), or parses the value as JSON itself."""

    reads_value: bool

    def __call__(self, record: Record, document: object = UNREAD) -> Row | Delete | Rejection | Skipped: ...


PythonHook: TypeAlias = Callable[[Record, Row], object]
"""`function(record, row)`: gets the row built from fields and lookups, returns the row to write (a dict)
or raises to reject the message (Rejection error `transform_error`)."""


def compile_transform(spec: TransformSpec, hook: PythonHook | None = None) -> Transformer:
    """Prepare `spec` once (paths parsed, coercions chosen) for a cheap hot path; `hook` is the function
    `spec.python` names, loaded by the caller (`sluice_worker.hooks.load_hook`).

    Raises `PipelineError` if the spec names a hook and none is given.
    """
    if (spec.python is None) != (hook is None):
        raise PipelineError(f"spec.transform.python is {spec.python!r}: pass its loaded hook, and only then")
    return _CompiledTransform(spec, hook)


def parse_path(path: str) -> tuple[str | int, ...]:
    """`$.items[0].name` or `items[0].name` -> ("items", 0, "name"); `$` -> () (the whole value)."""
    return tuple(int(index) if index else key for key, index in _PATH_STEP.findall(path.removeprefix("$")))


_PATH_STEP = re.compile(r"([A-Za-z0-9_-]+)|\[([0-9]+)\]")
_INTEGER = re.compile(r"\s*[+-]?[0-9]+\s*")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

_Reader: TypeAlias = Callable[[Record, object], object]
_Converter: TypeAlias = Callable[[object], object]


class _WrongType(Exception):
    """A present value that cannot be coerced to its column's type."""


class _CompiledTransform:
    """What `compile_transform` returns: fields, then lookups, then the filter, the hook, the required check."""

    def __init__(self, spec: TransformSpec, hook: PythonHook | None) -> None:
        self._fields = [_Field(column, mapping) for column, mapping in spec.fields.items()]
        self._lookups = [
            (column, lookup.field, lookup.table, lookup.default) for column, lookup in spec.lookups.items()
        ]
        self._hook, self._hook_name = hook, spec.python
        self._keep = None if spec.filter is None else compile_filter(spec.filter)
        self.reads_value = any(mapping.source == "value" for mapping in spec.fields.values())
        origins = {column: mapping.describe() for column, mapping in spec.fields.items()}
        origins |= {column: f"lookup of {lookup.field!r}" for column, lookup in spec.lookups.items()}
        self._required = [(column, origins.get(column, "from the python hook")) for column in spec.required]
        self._tombstones = spec.tombstones
        key_columns = spec.key_columns()
        self._key_fields = [field for field in self._fields if field.column in key_columns]
        self._key_lookups = [lookup for lookup in self._lookups if lookup[0] in key_columns]

    def __call__(self, record: Record, document: object = UNREAD) -> Row | Delete | Rejection | Skipped:
        if record.value is None:
            return self._tombstone(record)
        if document is UNREAD:
            document = None
            if self.reads_value:
                try:
                    document = json.loads(record.value)
                except (ValueError, RecursionError) as error:
                    return Rejection(f"message value is not valid JSON: {error}", "invalid_json")
        row: Row = {}
        for field in self._fields:
            try:
                row[field.column] = field.extract(record, document)
            except _WrongType as problem:
                return Rejection(f"field {field.column!r} ({field.origin}): {problem}", "wrong_type")
        _look_up(row, self._lookups)
        if self._keep is not None and not self._keep(row):
            return SKIPPED
        if self._hook is not None:
            try:
                result = self._hook(record, row)
            except Exception as error:
                return Rejection(f"python hook {self._hook_name} raised {error!r}", "transform_error")
            if not isinstance(result, dict):
                kind = type(result).__name__
                return Rejection(f"python hook {self._hook_name} returned {kind}, not a dict", "transform_error")
            row = result
        for column, origin in self._required:
            if row.get(column) is None:
                return Rejection(f"required field {column!r} ({origin}) is missing", "missing_field")
        return row

    def _tombstone(self, record: Record) -> Delete | Rejection | Skipped:
        """A message with no value, as transform.tombstones says; a Delete carries the key columns only."""
        if self._tombstones == "skip":
            return SKIPPED
        if self._tombstones == "deadLetter":
            return Rejection("message has no value (a tombstone) and transform.tombstones is deadLetter", "tombstone")
        key: Row = {}
        for field in self._key_fields:
            try:
                key[field.column] = field.extract(record, None)
            except _WrongType as problem:
                return Rejection(f"tombstone: field {field.column!r} ({field.origin}): {problem}", "wrong_type")
        _look_up(key, self._key_lookups)
        return Delete(key)


def _look_up(row: Row, lookups: list[tuple[str, str, dict[str, str], str | None]]) -> None:
    for column, source_column, table, default in lookups:
        key = _lookup_key(row[source_column])
        row[column] = None if key is None else table.get(key, default)


class _Field:
    """One column: reads its raw value from the record, then coerces it (None: missing)."""

    __slots__ = ("column", "convert", "origin", "read")

    def __init__(self, column: str, mapping: FieldMapping) -> None:
        self.column, self.origin = column, mapping.describe()
        self.read = _reader(mapping)
        self.convert = _converter(mapping.type or _DEFAULT_TYPES.get(mapping.source))

    def extract(self, record: Record, document: object) -> object:
        value = self.read(record, document)
        return None if value is None else self.convert(value)


def _reader(mapping: FieldMapping) -> _Reader:
    source: FieldSource = mapping.source
    if source == "value":
        steps = parse_path(mapping.path or "$")
        return lambda _, document: _walk(document, steps)
    if source == "header":
        name = mapping.header
        return lambda record, _: _last_header(record, name)
    if source == "key":
        return lambda record, _: record.key
    if source == "topic":
        return lambda record, _: record.topic
    if source == "partition":
        return lambda record, _: record.partition
    if source == "offset":
        return lambda record, _: record.offset
    if source == "timestamp":
        return lambda record, _: record.timestamp_ms
    assert_never(source)


def _last_header(record: Record, name: str | None) -> bytes | None:
    """The value of the last header called `name` (Kafka allows repeats), or None."""
    return next((value for key, value in reversed(record.headers) if key == name), None)


def _walk(document: object, steps: tuple[str | int, ...]) -> object:
    """The value at `steps` inside parsed JSON; None if any step is absent (JSON null counts as absent)."""
    for step in steps:
        if isinstance(step, str) and isinstance(document, dict):
            document = document.get(step)
        elif isinstance(step, int) and isinstance(document, list) and step < len(document):
            document = document[step]
        else:
            return None
    return document


def _lookup_key(value: object) -> str | None:
    """Lookup tables are keyed by text: numbers and booleans are looked up as their JSON text."""
    if value is None or isinstance(value, str):
        return value
    return json.dumps(value) if isinstance(value, bool | int | float) else str(value)


# Untyped key and headers are UTF-8 text and the record timestamp is a timestamp; untyped JSON passes through.
_DEFAULT_TYPES: Mapping[FieldSource, CqlType] = {
    "key": "text",
    "header": "text",
    "topic": "text",
    "timestamp": "timestamp",
}


def _converter(cql_type: CqlType | None) -> _Converter:
    if cql_type is None:
        return _as_json
    if cql_type == "blob":
        return _to_blob
    convert = _CONVERTERS[cql_type]

    def from_text_or_json(value: object) -> object:
        if isinstance(value, bytes):
            try:
                value = value.decode()
            except UnicodeDecodeError:
                raise _WrongType("is not valid UTF-8") from None
        return convert(value)

    return from_text_or_json


def _mismatch(cql_type: str, value: object) -> _WrongType:
    shown = repr(value)
    return _WrongType(f"expected {cql_type}, got {type(value).__name__} {shown[:60]}")


def _as_json(value: object) -> object:
    return json.dumps(value, separators=(",", ":")) if isinstance(value, dict | list) else value


def _to_text(value: object) -> str:
    return value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))


def _to_ascii(value: object) -> str:
    text = _to_text(value)
    if not text.isascii():
        raise _mismatch("ascii", value)
    return text


def _integer(cql_type: str, bits: int | None) -> _Converter:
    limit = 2 ** (bits - 1) if bits else None

    def convert(value: object) -> int:
        if isinstance(value, int) and not isinstance(value, bool):
            number = value
        elif isinstance(value, float) and value.is_integer():
            number = int(value)
        elif isinstance(value, str) and _INTEGER.fullmatch(value):
            number = int(value.strip())
        else:
            raise _mismatch(cql_type, value)
        if limit is not None and not -limit <= number < limit:
            raise _WrongType(f"{number} is out of range for {cql_type}")
        return number

    return convert


def _floating(cql_type: str) -> _Converter:
    def convert(value: object) -> float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        try:
            if isinstance(value, str):
                return float(value)
        except ValueError:
            pass
        raise _mismatch(cql_type, value)

    return convert


def _to_decimal(value: object) -> Decimal:
    if isinstance(value, int | float | str) and not isinstance(value, bool):
        try:
            return Decimal(str(value))
        except InvalidOperation:
            pass
    raise _mismatch("decimal", value)


def _to_boolean(value: object) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise _mismatch("boolean", value)


def _to_timestamp(value: object) -> datetime:
    """Numbers are milliseconds since the epoch; text is ISO 8601 (UTC unless it names an offset)."""
    try:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return _EPOCH + timedelta(milliseconds=value)
        if isinstance(value, str):
            moment = datetime.fromisoformat(value)
            return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    except (ValueError, OverflowError):
        pass
    raise _mismatch("timestamp", value)


def _to_date(value: object) -> date:
    try:
        if isinstance(value, str):
            return date.fromisoformat(value)
    except ValueError:
        pass
    raise _mismatch("date", value)


def _uuid(cql_type: str, version: int | None) -> _Converter:
    def convert(value: object) -> uuid.UUID:
        try:
            if isinstance(value, str):
                parsed = uuid.UUID(value)
                if version is None or parsed.version == version:
                    return parsed
        except ValueError:
            pass
        raise _mismatch(cql_type, value)

    return convert


def _to_blob(value: object) -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode()
    raise _mismatch("blob", value)


_CONVERTERS: Mapping[CqlType, _Converter] = {
    "text": _to_text,
    "varchar": _to_text,
    "ascii": _to_ascii,
    "tinyint": _integer("tinyint", 8),
    "smallint": _integer("smallint", 16),
    "int": _integer("int", 32),
    "bigint": _integer("bigint", 64),
    "varint": _integer("varint", None),
    "float": _floating("float"),
    "double": _floating("double"),
    "decimal": _to_decimal,
    "boolean": _to_boolean,
    "timestamp": _to_timestamp,
    "date": _to_date,
    "uuid": _uuid("uuid", None),
    "timeuuid": _uuid("timeuuid", 1),
    "blob": _to_blob,
}
