"""One way for a test to wait on a condition: poll it, and on time-out say what was awaited and what was seen last."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

import pytest

T = TypeVar("T")


def wait_for(
    what: str,
    check: Callable[[], T],
    timeout: float = 60,
    interval: float = 0.25,
    tolerate: tuple[type[BaseException], ...] = (AssertionError,),
) -> T:
    """Polls `check` until it returns something truthy and returns that.

    An exception in `tolerate` counts as "not yet" (a server refusing while it comes back, say); any other
    propagates. After `timeout` seconds the test fails with `what`, the seconds waited and the last value
    or exception `check` gave.
    """
    started = time.monotonic()
    last: object = "nothing (check never ran)"
    while True:
        try:
            value = check()
            if value:
                return value
            last = value
        except tolerate as exc:
            last = exc
        waited = time.monotonic() - started
        if waited >= timeout:
            pytest.fail(f"waited {waited:.1f}s for {what}; last seen: {last!r}", pytrace=False)
        time.sleep(min(interval, max(0.0, timeout - waited)))
