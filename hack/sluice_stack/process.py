"""A local server process the stack starts, and the fault injection tests do to it."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(check: Callable[[], bool], timeout: float, what: str, interval: float = 0.5) -> float:
    """Polls `check` until it returns True; returns the seconds it took or raises TimeoutError."""
    start = time.monotonic()
    last_error: BaseException | None = None
    while time.monotonic() - start < timeout:
        try:
            if check():
                return time.monotonic() - start
        except Exception as exc:
            last_error = exc
        time.sleep(interval)
    raise TimeoutError(f"{what} not ready after {timeout:.0f}s (last error: {last_error!r})")


def pid_alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
    return state != "Z"


@dataclass
class Service:
    """One server: how to start it, where it logs, and its pid once started.

    The record is plain data so that `make stack-up` can save it and a pytest session can load it and
    still pause, kill or restart the same server.
    """

    name: str
    argv: list[str]
    log_path: str
    cwd: str
    env: dict[str, str] = field(default_factory=dict)
    endpoints: dict[str, str] = field(default_factory=dict)
    pid: int | None = None
    start_seconds: float | None = None

    def start(self) -> None:
        Path(self.log_path).parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            log.write(f"\n=== {time.strftime('%H:%M:%S')} starting {self.name}\n".encode())
            proc = subprocess.Popen(
                self.argv,
                cwd=self.cwd,
                env={**os.environ, **self.env},
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: a Ctrl-C of ours does not hit it
            )
        self.pid = proc.pid
        _children[proc.pid] = proc

    @property
    def alive(self) -> bool:
        self._reap()
        return pid_alive(self.pid)

    def pause(self) -> None:
        """SIGSTOP: the process keeps its sockets but answers nothing (what `docker pause` does).

        Returns once every thread is stopped: the kernel delivers the stop to a JVM's many threads in turn.
        """
        self._signal(signal.SIGSTOP)
        deadline = time.monotonic() + 2
        while time.monotonic() < deadline and not self._all_threads_stopped():
            time.sleep(0.005)

    def _all_threads_stopped(self) -> bool:
        tasks = Path(f"/proc/{self.pid}/task")
        try:
            states = [(t / "stat").read_text().rsplit(")", 1)[1].split()[0] for t in tasks.iterdir()]
        except (FileNotFoundError, ProcessLookupError):
            return True
        return all(state in ("T", "t") for state in states)

    def resume(self) -> None:
        self._signal(signal.SIGCONT)

    def kill(self) -> None:
        """SIGKILL, the crash a server gets when its machine dies."""
        self._signal(signal.SIGCONT)
        self._signal(signal.SIGKILL)
        self._wait_exit(30)

    def stop(self, timeout: float = 30) -> None:
        """SIGTERM, then SIGKILL if it has not exited within `timeout`."""
        if not self.alive:
            return
        self._signal(signal.SIGCONT)
        self._signal(signal.SIGTERM)
        if not self._wait_exit(timeout):
            self.kill()

    def tail(self, lines: int = 60) -> str:
        try:
            return "\n".join(Path(self.log_path).read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return f"(no log at {self.log_path})"

    def _signal(self, sig: signal.Signals) -> None:
        if self.pid and self.alive:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, sig)

    def _reap(self) -> None:
        proc = _children.get(self.pid or 0)
        if proc is not None and proc.poll() is not None:
            _children.pop(proc.pid, None)

    def _wait_exit(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.alive:
                return True
            time.sleep(0.1)
        return False

    def to_json(self) -> dict[str, object]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, object]) -> Service:
        return cls(**data)  # type: ignore[arg-type]


# Popen objects of the servers this process started, so that their exit is reaped.
_children: dict[int, subprocess.Popen[bytes]] = {}


def save_services(path: Path, services: dict[str, Service]) -> None:
    path.write_text(json.dumps({k: v.to_json() for k, v in services.items()}, indent=2))


def load_services(path: Path) -> dict[str, Service]:
    return {k: Service.from_json(v) for k, v in json.loads(path.read_text()).items()}
