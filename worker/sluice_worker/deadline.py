"""The one shutdown deadline: the budget from the spec, and a point in time every step of the exit shares."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from .model import PipelineSpec


def shutdown_budget(spec: PipelineSpec, override_seconds: float | None = None) -> float:
    """Seconds from a stop request to exit: terminationGracePeriodSeconds minus shutdownMarginSeconds, so the
    margin is left for the process to end before the kubelet's SIGKILL; `override_seconds` (the environment's
    SLUICE_SHUTDOWN_BUDGET_SECONDS) wins."""
    if override_seconds is not None:
        return override_seconds
    return float(max(1, spec.termination_grace_period_seconds - spec.delivery.shutdown_margin_seconds))


@dataclass(frozen=True)
class Deadline:
    """A moment on the monotonic clock: drain, commit, dead-letter flush and close all end by it."""

    at: float
    clock: Callable[[], float] = time.monotonic

    @classmethod
    def after(cls, seconds: float, clock: Callable[[], float] = time.monotonic) -> Deadline:
        return cls(clock() + seconds, clock)

    def remaining(self) -> float:
        """Seconds left, never negative."""
        return max(0.0, self.at - self.clock())

    def expired(self) -> bool:
        return self.clock() >= self.at
