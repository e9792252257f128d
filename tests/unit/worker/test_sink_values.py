"""Row values as the insert binds them: no tombstones for missing columns, exact timestamp milliseconds."""

from datetime import UTC, datetime, timedelta, timezone

from cassandra.query import UNSET_VALUE
from sluice_worker.statements import to_cql_value


def test_missing_values_are_left_unset_not_written_as_null() -> None:
    assert to_cql_value(None) is UNSET_VALUE
    assert to_cql_value(0) == 0
    assert to_cql_value("") == ""


def test_datetimes_become_the_milliseconds_cassandra_stores() -> None:
    assert to_cql_value(datetime(2026, 11, 26, 12, 7, 25, 305999, tzinfo=UTC)) == 1_795_694_845_305
    assert to_cql_value(datetime(1970, 1, 1, tzinfo=UTC)) == 0
    # Another offset, and a naive datetime (taken as UTC, as the driver does).
    assert to_cql_value(datetime(2026, 1, 1, 2, 0, tzinfo=timezone(timedelta(hours=2)))) == 1_767_225_600_000
    assert to_cql_value(datetime(2026, 1, 1)) == 1_767_225_600_000
