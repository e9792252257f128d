"""The transform's filter, compiled once: a row of fields and lookups in, keep it (True) or skip it (False)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeAlias

from sluice_worker.model import ColumnTest, Filter

Row: TypeAlias = dict[str, object]
Test: TypeAlias = Callable[[Row], bool]


def compile_filter(spec: Filter) -> Test:
    """True for the rows that pass every part given: all of `all`, one of `any`, none of `none`."""
    every, some, no = ([_test(t) for t in tests] for tests in (spec.all_, spec.any_, spec.none))

    def keep(row: Row) -> bool:
        return (
            all(test(row) for test in every)
            and (not some or any(test(row) for test in some))
            and not any(test(row) for test in no)
        )

    return keep


def _test(spec: ColumnTest) -> Test:
    column = spec.column
    if spec.exists is not None:
        wanted = spec.exists
        return lambda row: (row.get(column) is not None) is wanted
    values = [spec.equals] if spec.equals is not None else list(spec.in_ or ())
    # bool is an int in Python: keep True from matching 1 (and 1.0), as a user reading the YAML would expect.
    choices = {(type(v) is bool, v) for v in values}

    def matches(row: Row) -> bool:
        value = row.get(column)
        try:
            return (type(value) is bool, value) in choices
        except TypeError:  # a list, set or map column equals no scalar
            return False

    return matches
