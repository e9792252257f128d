"""How `make bench` places processes and picks the reported run of several (bench/placement.py, bench/run.py)."""

from __future__ import annotations

import pytest

from bench.measure import CpuUse, Window
from bench.placement import Placement
from bench.run import median_run
from bench.systems import Result


def test_cassandra_gets_the_lower_half_and_clients_the_rest() -> None:
    assert Placement.split({0, 1}) == Placement(frozenset({0}), frozenset({1}))
    assert Placement.split({0, 1, 2, 3, 4}) == Placement(frozenset({0, 1}), frozenset({2, 3, 4}))
    assert Placement.split({0, 1}).describe() == "Cassandra on CPU 0; Kafka and each measured client on CPU 1"


def test_pinning_one_cpu_is_refused_with_the_way_out() -> None:
    with pytest.raises(ValueError, match="--placement shared"):
        Placement.split({3})


def _run(rate: int) -> Result:
    window = Window(count=rate * 10, start=100.0, end=110.0, launched=99.0)
    return Result("sluice", "sluice-worker (1 process)", window, CpuUse({}, 0.5, 10.0), rate * 10, detail="as shipped")


def test_the_median_run_is_reported_with_every_rate() -> None:
    reported = median_run([_run(12_000), _run(14_000), _run(13_000)])
    assert reported.window.rate == pytest.approx(13_000)
    assert reported.extra["runs"] == [12_000, 14_000, 13_000]
    assert reported.detail == "as shipped; median of 12,000 / 14,000 / 13,000"


def test_of_an_even_count_the_lower_middle_run_is_reported() -> None:
    assert median_run([_run(9_000), _run(11_000)]).window.rate == pytest.approx(9_000)


def test_a_single_run_is_reported_as_it_is() -> None:
    only = _run(10_000)
    assert median_run([only]) is only
