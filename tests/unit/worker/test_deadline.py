"""The shutdown budget comes from the spec in one place, and one deadline is shared by every step of the exit."""

from __future__ import annotations

import pytest
from sluice_worker.deadline import Deadline, shutdown_budget
from sluice_worker.model import parse_spec

SPEC = {
    "source": {"bootstrapServers": "k:9092", "topics": ["t"]},
    "transform": {"fields": {"id": {"path": "$.id"}}},
    "sink": {"contactPoints": ["c"], "keyspace": "k", "table": "t"},
}


def test_the_budget_leaves_the_margin_of_the_grace_period() -> None:
    spec = parse_spec({**SPEC, "terminationGracePeriodSeconds": 45, "delivery": {"shutdownMarginSeconds": 7}})
    assert shutdown_budget(spec) == 38.0
    assert shutdown_budget(parse_spec(SPEC)) == 25.0  # the defaults: 30 s of grace, 5 s of margin
    assert shutdown_budget(spec, override_seconds=2.5) == 2.5  # SLUICE_SHUTDOWN_BUDGET_SECONDS


def test_a_deadline_counts_down_to_zero_and_no_further() -> None:
    now = [100.0]
    deadline = Deadline.after(5, clock=lambda: now[0])
    assert (deadline.remaining(), deadline.expired()) == (5.0, False)
    now[0] = 104.5
    assert deadline.remaining() == pytest.approx(0.5)
    now[0] = 106.0
    assert (deadline.remaining(), deadline.expired()) == (0.0, True)
