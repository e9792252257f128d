"""`--profile`: one more sluice-worker run under py-spy (not installed by the project: `pip install py-spy`),
summarised as where the worker's threads spend their samples. The measured run is never the profiled one."""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

PY_SPY = Path(sys.executable).with_name("py-spy")


def available() -> Path | None:
    found = PY_SPY if PY_SPY.exists() else shutil.which("py-spy")
    return Path(found) if found else None


class Recorder:
    """py-spy attached to a running process until `stop()`; raw (collapsed) stacks, one row per thread."""

    def __init__(self, output: Path, rate: int = 200, gil_only: bool = False) -> None:
        binary = available()
        if binary is None:
            raise RuntimeError("--profile needs py-spy: .venv/bin/pip install py-spy")
        self.binary, self.output, self.rate, self.gil_only = binary, output, rate, gil_only
        self.process: subprocess.Popen[bytes] | None = None

    def attach(self, pid: int) -> None:
        args = [str(self.binary), "record", "-p", str(pid), "-r", str(self.rate), "-f", "raw", "-o", str(self.output)]
        args += ["--threads", "--nolineno", "--nonblocking", *(["--gil"] if self.gil_only else [])]
        self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            self.process.wait(60)


@dataclass
class Profile:
    """Samples per thread, per leaf function (self) and per function anywhere on the stack (inclusive)."""

    what: str = "all threads, idle excluded"
    total: int = 0
    threads: Counter[str] = field(default_factory=Counter)
    self_time: Counter[str] = field(default_factory=Counter)
    inclusive: Counter[str] = field(default_factory=Counter)

    @classmethod
    def read(cls, path: Path, what: str) -> Profile:
        profile = cls(what)
        for line in path.read_text().splitlines():
            stack, _, count = line.rpartition(" ")
            if not stack:
                continue
            n = int(count)
            thread, *frames = stack.split(";")
            profile.total += n
            profile.threads[_thread_name(thread, frames)] += n
            if frames:
                profile.self_time[frames[-1]] += n
            for frame in set(frames):
                profile.inclusive[frame] += n
        return profile

    def report(self, top: int = 15) -> str:
        def pct(n: int) -> str:
            return f"{100 * n / self.total:5.1f}%"

        lines = [f"{self.total:,} samples ({self.what})", "", "by thread"]
        lines += [f"  {pct(n)}  {name}" for name, n in self.threads.most_common()]
        lines += ["", f"top {top} by self time (the frame on top of the stack)"]
        lines += [f"  {pct(n)}  {frame}" for frame, n in self.self_time.most_common(top)]
        lines += [
            "",
            f"top {top} by inclusive time (anywhere on the stack; frames under which a whole thread runs left out)",
        ]
        whole = set(self.threads.values())
        inner = [(frame, n) for frame, n in self.inclusive.most_common() if n not in whole]
        lines += [f"  {pct(n)}  {frame}" for frame, n in inner[:top]]
        return "\n".join(lines)


def _thread_name(thread: str, frames: list[str]) -> str:
    """`thread (1234): MainThread` -> `MainThread`; python names other threads `Thread-N (target)`."""
    return thread.split(": ", 1)[-1]
