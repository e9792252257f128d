"""The queue of pipelines to reconcile: each key at most once in it, never two workers on one key."""

from __future__ import annotations

import asyncio

from .children import Key


class WorkQueue:
    """Keys of pipelines that need a reconcile, in the order they first asked for one (client-go's workqueue shape).

    A key added while it waits is not added twice: a hundred events of one pipeline in a storm are one reconcile,
    and what waits is a key, not the hundred objects the events showed. A key added while a worker has it is
    handed out again once that worker is done, so the change it announced is never missed and never reconciled by
    two workers at once. `add(key, delay)` hands it out after `delay` seconds (a retry) unless it is added sooner.
    Used from the event loop only.
    """

    def __init__(self) -> None:
        self._order: asyncio.Queue[Key] = asyncio.Queue()
        self._waiting: set[Key] = set()
        self._busy: set[Key] = set()
        self._again: set[Key] = set()  # added while busy
        self._later: dict[Key, asyncio.TimerHandle] = {}

    def add(self, key: Key, delay: float = 0.0) -> None:
        """Asks for a reconcile of `key`, now or after `delay` seconds."""
        if delay > 0:
            if key not in self._later and key not in self._waiting:
                loop = asyncio.get_running_loop()
                self._later[key] = loop.call_later(delay, self._due, key)
            return
        timer = self._later.pop(key, None)
        if timer is not None:
            timer.cancel()
        if key in self._busy:
            self._again.add(key)
        elif key not in self._waiting:
            self._waiting.add(key)
            self._order.put_nowait(key)

    def _due(self, key: Key) -> None:
        self._later.pop(key, None)
        self.add(key)

    async def get(self) -> Key:
        """The next key to reconcile, once there is one; the caller must call `done(key)` after."""
        key = await self._order.get()
        self._waiting.discard(key)
        self._busy.add(key)
        return key

    def done(self, key: Key) -> None:
        """The worker that had `key` is done with it; if it was added meanwhile, it waits again."""
        self._busy.discard(key)
        if key in self._again:
            self._again.discard(key)
            self.add(key)

    def forget(self, key: Key) -> None:
        """A retry of `key` that is due later is dropped (its pipeline is gone)."""
        timer = self._later.pop(key, None)
        if timer is not None:
            timer.cancel()

    def __len__(self) -> int:
        """Keys waiting to be handed out now (not those due later, nor those being reconciled)."""
        return self._order.qsize()
