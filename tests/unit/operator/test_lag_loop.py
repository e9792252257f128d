"""The loop that starts the lag checks: one check per pipeline at a time, whatever Kafka's delays."""

from __future__ import annotations

import asyncio
from collections.abc import Collection
from types import SimpleNamespace
from typing import Any, cast

from sluice_operator import cli
from sluice_operator.children import PipelineCache
from sluice_operator.handlers import LAG_CHECKS_AT_ONCE, Handlers


class SlowChecks:
    """Handlers whose lag checks each take `seconds`, counting how many run at once per pipeline."""

    def __init__(self, seconds: float) -> None:
        self.seconds, self.running, self.most, self.started = seconds, 0, 0, 0

    def watched(self) -> list[tuple[str, str]]:
        return [("ns", "p")]

    async def check_lag(self, key: tuple[str, str]) -> None:
        self.started += 1
        self.running += 1
        self.most = max(self.most, self.running)
        try:
            await asyncio.sleep(self.seconds)
        finally:
            self.running -= 1


class Retaining:
    def retain(self, pipelines: Collection[tuple[str, str]]) -> None:
        pass


def test_a_pipeline_whose_check_is_still_running_skips_a_turn() -> None:
    async def scenario() -> SlowChecks:
        handlers, stop = SlowChecks(seconds=0.35), asyncio.Event()
        loop = asyncio.create_task(cli.check_lag(cast(Any, handlers), cast(Any, Retaining()), 0.1, stop))
        await asyncio.sleep(1.0)  # ten turns, each check lasting three and a half
        stop.set()
        await loop
        return handlers

    handlers = asyncio.run(scenario())
    assert handlers.most == 1 and 2 <= handlers.started <= 3


class CountingScaler:
    """A scaler whose checks take a while, counting how many run at once."""

    def __init__(self) -> None:
        self.running = self.most = self.done = 0

    async def check(self, body: dict[str, Any]) -> Any:
        self.running += 1
        self.most = max(self.most, self.running)
        await asyncio.sleep(0.01)
        self.running -= 1
        self.done += 1
        return SimpleNamespace(body=None, events=[])


def test_at_most_a_bounded_number_of_lag_checks_hold_their_pipeline_at_once() -> None:
    cache = PipelineCache()
    keys = [("ns", f"p{i}") for i in range(300)]
    for namespace, name in keys:
        cache.put({"metadata": {"namespace": namespace, "name": name, "uid": name, "resourceVersion": "1"}})
    scaler = CountingScaler()
    handlers = Handlers(cast(Any, SimpleNamespace(pipelines=cache)), 1.0, cast(Any, scaler))

    async def scenario() -> None:
        await asyncio.gather(*(handlers.check_lag(key) for key in keys))

    asyncio.run(scenario())
    assert scaler.done == 300 and scaler.most == LAG_CHECKS_AT_ONCE
