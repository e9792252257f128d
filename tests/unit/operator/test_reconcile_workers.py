"""The reconcile workers: one reconcile a pipeline at a time, retries after their delay, a bug costs one pipeline."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any, cast

from sluice_operator.handlers import Handlers, Notes

A, B = ("ns", "a"), ("ns", "b")


class Scripted(Handlers):
    """Handlers whose reconciles follow a script per pipeline: a delay to retry after, an exception, or done."""

    def __init__(self, script: dict[tuple[str, str], list[Any]], seconds: float = 0.0) -> None:
        super().__init__(cast(Any, None), retry_delay=1.0, workers=4)
        self.script, self.seconds = script, seconds
        self.calls: list[tuple[tuple[str, str], dict[str, list[str]]]] = []
        self.running: dict[tuple[str, str], int] = {}
        self.most = 0
        self._count = threading.Lock()

    def handle(self, key: tuple[str, str], notes: Notes) -> float | None:
        with self._count:
            self.calls.append((key, dict(notes.repaired)))
            self.running[key] = self.running.get(key, 0) + 1
            self.most = max(self.most, self.running[key])
        time.sleep(self.seconds)
        with self._count:
            self.running[key] -= 1
        step = self.script.get(key, [None]).pop(0) if self.script.get(key) else None
        if isinstance(step, Exception):
            raise step
        return cast(float | None, step)


def test_a_pipeline_is_never_reconciled_by_two_workers_and_its_events_meanwhile_are_one_reconcile() -> None:
    async def scenario() -> Scripted:
        handlers = Scripted({}, seconds=0.2)
        workers = asyncio.create_task(handlers.run())
        handlers.queue.add(A)
        await asyncio.sleep(0.05)  # a worker has it
        for _ in range(10):
            handlers.queue.add(A)  # ten events meanwhile
        await asyncio.sleep(0.6)
        workers.cancel()
        return handlers

    handlers = asyncio.run(scenario())
    assert [key for key, _ in handlers.calls] == [A, A] and handlers.most == 1


def test_a_failed_reconcile_is_tried_again_after_its_delay_with_what_its_events_said() -> None:
    async def scenario() -> Scripted:
        handlers = Scripted({A: [0.3, None]})
        workers = asyncio.create_task(handlers.run())
        handlers._notes[A] = Notes({"Deployment a": ["deleted"]})
        handlers.queue.add(A)
        await asyncio.sleep(0.1)
        assert len(handlers.calls) == 1  # not before its delay
        await asyncio.sleep(0.4)
        workers.cancel()
        return handlers

    handlers = asyncio.run(scenario())
    # The repair not told by the failed reconcile is told by the next.
    assert handlers.calls == [(A, {"Deployment a": ["deleted"]}), (A, {"Deployment a": ["deleted"]})]


def test_a_bug_in_one_reconcile_leaves_the_workers_running() -> None:
    async def scenario() -> Scripted:
        handlers = Scripted({A: [KeyError("status")]})
        workers = asyncio.create_task(handlers.run())
        handlers.queue.add(A)
        await asyncio.sleep(0.1)
        handlers.queue.add(B)
        await asyncio.sleep(0.1)
        assert not workers.done()
        workers.cancel()
        return handlers

    handlers = asyncio.run(scenario())
    assert [key for key, _ in handlers.calls] == [A, B]
