"""Each write's `USING TIMESTAMP` and TTL: from the Kafka record and sink.ttlSeconds, or from columns of the row."""

from __future__ import annotations

import math
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from .model import TableTarget, TimeFrom
from .transform import Record, Row

MAX_TTL_SECONDS = 630_720_000  # Cassandra's limit: 20 years
_MICROSECONDS = {"seconds": 1_000_000, "milliseconds": 1_000, "microseconds": 1}
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


class WriteTimeError(ValueError):
    """A column named by sink.ttlFrom or sink.writeTimestampFrom holds a value that is no time: the message is
    dead-lettered with this reason (it names the field)."""


class WriteTime:
    """What `timestamp` and `ttl` answer for one message; built once per table from its resolved options."""

    def __init__(self, target: TableTarget) -> None:
        self._use_record_time = target.use_record_timestamp
        self._timestamp_from = target.write_timestamp_from
        self._ttl_from = target.ttl_from
        self._default_ttl = target.ttl_seconds or 0

    @property
    def per_row_ttl(self) -> bool:
        """Whether each row binds its own TTL (else the insert carries ttlSeconds, or none)."""
        return self._ttl_from is not None

    def timestamp(self, record: Record, row: Row) -> int:
        """Microseconds since the epoch: the column's when it has a value, else the record time plus a tie-break
        by offset (a replay rewrites the same cells), else now (useRecordTimestamp false, or no record time)."""
        if self._timestamp_from is not None:
            value = row.get(self._timestamp_from.column)
            if value is not None:
                return _microseconds(value, self._timestamp_from)
        if self._use_record_time and record.timestamp_ms > 0:
            return record.timestamp_ms * 1000 + record.offset % 1000
        return time.time_ns() // 1000

    def ttl(self, row: Row) -> int:
        """Seconds the row lives (0: forever): the ttlFrom column's, rounded up, else ttlSeconds."""
        assert self._ttl_from is not None, "per_row_ttl is False: the insert carries the TTL"
        value = row.get(self._ttl_from.column)
        if value is None:
            return self._default_ttl
        seconds = math.ceil(_number(value, self._ttl_from, "sink.ttlFrom") / _MICROSECONDS["seconds"])
        if not 0 <= seconds <= MAX_TTL_SECONDS:
            raise WriteTimeError(
                f"sink.ttlFrom: column {self._ttl_from.column!r} gives a TTL of {seconds} s, "
                f"outside 0..{MAX_TTL_SECONDS} (Cassandra's limit)"
            )
        return seconds


def _microseconds(value: object, source: TimeFrom) -> int:
    if isinstance(value, datetime):
        aware = value if value.tzinfo is not None else value.replace(tzinfo=UTC)
        return (aware - _EPOCH) // _MICROSECOND
    micros = _number(value, source, "sink.writeTimestampFrom")
    if micros < 0:
        raise WriteTimeError(f"sink.writeTimestampFrom: column {source.column!r} is negative ({value!r})")
    return int(micros)


def _number(value: object, source: TimeFrom, field: str) -> int | float:
    """The value in microseconds; a number of `source.unit` is all a time may be (bool is no number)."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value * _MICROSECONDS[source.unit]
    if isinstance(value, float | Decimal) and math.isfinite(value):
        return float(value) * _MICROSECONDS[source.unit]
    shown = repr(value)[:60]
    raise WriteTimeError(f"{field}: column {source.column!r} is {type(value).__name__} {shown}, not {source.unit}")
