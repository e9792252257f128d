"""The operator's lag reads, made in a child process: when librdkafka aborts, the reads fail, not the operator."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import queue
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Mapping
from multiprocessing.connection import Connection

from sluice_worker.kafka import client_config
from sluice_worker.logs import LogFormat
from sluice_worker.model import SourceSpec

from .lag import Snapshot
from .offsets import Answer, LagUnavailable, Request

logger = logging.getLogger(__name__)

__all__ = ["LagReader", "LagUnavailable", "admin_config"]


def admin_config(source: SourceSpec, credentials: Mapping[str, str] | None = None) -> dict[str, str | int | float]:
    """The admin client's settings for a pipeline's brokers: the workers' own (client_config), with the values
    of source.tls and source.auth's Secrets. Raises LagUnavailable for the older SASL style, whose login is in
    the workers' environment only."""
    if source.tls is None and source.auth is None and source.security_protocol.startswith("SASL_"):
        raise LagUnavailable(
            f"securityProtocol {source.security_protocol} with credentials from environment variables: only the "
            "workers have the login, so the operator cannot read the lag; spec.source.auth (a Secret) gives it both"
        )
    return client_config(source, "sluice-operator", credentials)


def _death(returncode: int) -> str:
    if returncode < 0:
        with contextlib.suppress(ValueError):
            return f"died of {signal.Signals(-returncode).name}"
    return f"exited with status {returncode}"


class _Child:
    """One `python -m sluice_operator.offsets` process and the reads it has not answered yet."""

    def __init__(self, timeout: float, log_format: LogFormat, on_death: Callable[[str, int], None]) -> None:
        ours, theirs = socket.socketpair()
        with theirs:
            self.process = subprocess.Popen(
                [sys.executable, "-P", "-m", "sluice_operator.offsets", str(theirs.fileno()), str(timeout), log_format],
                pass_fds=(theirs.fileno(),),
                stdin=subprocess.DEVNULL,
            )
        self._connection = Connection(ours.detach())
        self._on_death = on_death
        self._guard = threading.Lock()
        self._waiting: dict[int, tuple[asyncio.AbstractEventLoop, asyncio.Future[Snapshot]]] = {}
        self._ids = itertools.count()
        self._outbox: queue.SimpleQueue[Request | None] = queue.SimpleQueue()
        self.dead = self.stopping = False
        # Threads, not the event loop: a send to a stalled child or a partial answer must not block the operator.
        threading.Thread(target=self._send, name="lag-reader-send", daemon=True).start()
        threading.Thread(target=self._collect, name="lag-reader-collect", daemon=True).start()

    @property
    def pid(self) -> int:
        return self.process.pid

    def ask(self, request: tuple[Mapping[str, str | int | float], tuple[str, ...], str]) -> asyncio.Future[Snapshot]:
        """Sends a read; its future fails with LagUnavailable(answered=False) if the child dies first."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Snapshot] = loop.create_future()
        with self._guard:
            if self.dead:
                raise LagUnavailable("the lag reader process has just died", answered=False)
            ident = next(self._ids)
            self._waiting[ident] = (loop, future)
        future.add_done_callback(lambda _: self._forget(ident))  # answered, failed or cancelled
        self._outbox.put((ident, *request))
        return future

    def _forget(self, ident: int) -> None:
        with self._guard:
            self._waiting.pop(ident, None)

    def _send(self) -> None:
        while (request := self._outbox.get()) is not None:
            try:
                self._connection.send(request)
            except OSError:
                return  # the child is gone: _collect fails what waits

    def _collect(self) -> None:
        try:
            while True:
                self._settle(self._connection.recv())
        except (EOFError, OSError):
            pass
        returncode = self.process.wait()
        with self._guard:
            self.dead, waiting = True, list(self._waiting.values())
            self._waiting.clear()
        self._outbox.put(None)
        self._connection.close()
        death = f"the lag reader process (pid {self.pid}) {_death(returncode)}"
        if not self.stopping:  # told (logged, counted) before the reads it held fail
            self._on_death(death, len(waiting))
        for loop, future in waiting:
            error = LagUnavailable(f"{death} before it answered; the next read starts another", answered=False)
            loop.call_soon_threadsafe(_fail, future, error)

    def _settle(self, reply: Answer) -> None:
        ident, snapshot, problem = reply
        with self._guard:
            loop, future = self._waiting.get(ident, (None, None))
        if loop is None or future is None:
            return  # given up on (cancelled, or past its deadline)
        if problem is not None:
            loop.call_soon_threadsafe(_fail, future, LagUnavailable(*problem))
        elif snapshot is not None:
            loop.call_soon_threadsafe(_succeed, future, snapshot)

    def kill(self) -> None:
        """Kills a stuck process without waiting: the next read starts another at once (not in the moment before
        _collect sees this one go and fails what waits)."""
        with self._guard:
            self.dead = True
        with contextlib.suppress(ProcessLookupError):
            self.process.kill()

    def stop(self) -> None:
        """Ends the process and waits for it (it also ends by itself when the operator's end of the socket closes)."""
        self.stopping = True
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()


def _succeed(future: asyncio.Future[Snapshot], snapshot: Snapshot) -> None:
    if not future.done():
        future.set_result(snapshot)


def _fail(future: asyncio.Future[Snapshot], error: LagUnavailable) -> None:
    if not future.done():
        future.set_exception(error)


class LagReader:
    """Snapshots of consumer groups' offsets (offsets.OffsetReader), read in a child process started at the first
    read and again at the first read after it dies.

    Why a process: librdkafka 2.16 can abort the whole process (an assertion, SIGABRT) when brokers stall while
    many admin requests are in flight (librdkafka issue #4605; reproduced here with 2,000 reads and a broker
    stopped for 12 s). In a child, that costs only the reads in flight - they fail as
    LagUnavailable(answered=False), the pipelines' status says the lag is unknown - and the next read starts another.
    """

    def __init__(
        self,
        timeout: float,
        on_death: Callable[[], None] | None = None,
        deadline: float | None = None,
        log_format: LogFormat = "text",
    ) -> None:
        """`timeout`: each admin request's; `on_death`: called when a child dies unasked; `deadline`: a read not
        answered by then means the child is stuck (not slow), and it is killed; `log_format`: the child's logs'
        (the operator's own, so that one log stream holds one format)."""
        self.timeout = timeout
        self.log_format = log_format
        self.deadline = deadline or 4 * (timeout + 5)
        self._on_death = on_death
        self._child: _Child | None = None
        self._guard = threading.Lock()

    def _running(self) -> _Child:
        with self._guard:
            if self._child is None or self._child.dead:
                self._child = _Child(self.timeout, self.log_format, self._died)
            return self._child

    def _died(self, death: str, in_flight: int) -> None:
        logger.warning("%s with %d lag reads in flight; the next read starts another", death, in_flight)
        if self._on_death is not None:
            self._on_death()

    @property
    def pid(self) -> int | None:
        """The child's process id while one runs."""
        with self._guard:
            return None if self._child is None or self._child.dead else self._child.pid

    async def read(self, source: SourceSpec, group_id: str, credentials: Mapping[str, str] | None = None) -> Snapshot:
        """The earliest, latest and committed offset of every partition of the source topics; `credentials`:
        the values of source.tls and source.auth's Secrets by file name. Raises LagUnavailable."""
        config = admin_config(source, credentials)
        child = self._running()
        future = child.ask((config, tuple(source.topics), group_id))
        try:
            return await asyncio.wait_for(future, self.deadline)
        except TimeoutError:
            child.kill()  # stuck: every read it holds would time out too; the next read starts another
            message = f"the lag reader process (pid {child.pid}) gave no answer in {self.deadline:g} s; killed it"
            raise LagUnavailable(message, answered=False) from None

    def close(self) -> None:
        """Stops the child process, if one runs."""
        with self._guard:
            child, self._child = self._child, None
        if child is not None:
            child.stop()
