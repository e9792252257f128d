"""The queue of pipelines to reconcile: one entry a key, one worker a key, retries later."""

from __future__ import annotations

import asyncio

from sluice_operator.workqueue import WorkQueue

A, B = ("ns", "a"), ("ns", "b")


def run(test: object) -> None:
    asyncio.run(asyncio.wait_for(test, 5))  # type: ignore[arg-type]


def test_a_key_added_while_it_waits_is_handed_out_once() -> None:
    async def test() -> None:
        queue = WorkQueue()
        for key in (A, B, A, A, B):
            queue.add(key)
        assert len(queue) == 2
        assert [await queue.get(), await queue.get()] == [A, B]
        assert len(queue) == 0

    run(test())


def test_a_key_added_while_a_worker_has_it_is_handed_out_again_after() -> None:
    async def test() -> None:
        queue = WorkQueue()
        queue.add(A)
        assert await queue.get() == A
        queue.add(A)  # a new event while the reconcile runs
        queue.add(A)
        assert len(queue) == 0  # not to a second worker meanwhile
        queue.done(A)
        assert len(queue) == 1 and await queue.get() == A
        queue.done(A)
        assert len(queue) == 0

    run(test())


def test_a_retry_waits_its_delay_unless_an_event_comes_first() -> None:
    async def test() -> None:
        loop = asyncio.get_running_loop()
        queue = WorkQueue()
        queue.add(A, delay=0.2)
        assert len(queue) == 0
        start = loop.time()
        assert await queue.get() == A and loop.time() - start >= 0.19
        queue.done(A)
        queue.add(B, delay=30)
        queue.add(B)  # an event: now, and the retry is dropped
        assert await queue.get() == B
        queue.done(B)
        await asyncio.sleep(0)
        assert len(queue) == 0
        queue.add(A, delay=0.05)
        queue.forget(A)  # the pipeline went
        await asyncio.sleep(0.1)
        assert len(queue) == 0

    run(test())
