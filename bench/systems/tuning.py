"""Tuned batching: the settings tuned Benthos and tuned Sluice are both searched over, and the search itself."""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

# Cassandra warns past 10 partitions a batch and refuses past 50 KiB (about 300 rows of 168 B).
BATCHES, IN_FLIGHT = (10, 25, 50, 100), (8, 32, 128)
QUICK_BATCHES, QUICK_IN_FLIGHT = (10, 50), (32,)


@dataclass(frozen=True)
class Setting:
    """How a tuned system sends: rows per unlogged batch and batches in flight."""

    batch: int
    in_flight: int

    def __str__(self) -> str:
        return f"unlogged batches of {self.batch}, {self.in_flight} in flight"


def grid(quick: bool) -> list[Setting]:
    batches, in_flight = (QUICK_BATCHES, QUICK_IN_FLIGHT) if quick else (BATCHES, IN_FLIGHT)
    return [Setting(batch, flight) for batch in batches for flight in in_flight]


def search(name: str, settings: Sequence[Setting], trial: Callable[[Setting], float]) -> list[dict[str, Any]]:
    """`trial(setting)` (a rate, msgs/s) of each setting: the driver ceiling's search, for another system. Returns
    the trials, fastest first."""
    trials = []
    for setting in settings:
        rate = trial(setting)
        trials.append({"batch": setting.batch, "in_flight": setting.in_flight, "rate": round(rate)})
        print(f"{name} trial {setting}: {rate:,.0f} msgs/s", file=sys.stderr)
    return sorted(trials, key=lambda t: -t["rate"])
