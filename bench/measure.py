"""Clocks and CPU meters shared by every measured system: windows, /proc sampling, Prometheus scraping."""

from __future__ import annotations

import bisect
import os
import subprocess
import threading
import time
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

TICKS_PER_SECOND = os.sysconf("SC_CLK_TCK")
STALL_SECONDS = 60.0  # without a new row, once rows flow
STARTUP_SECONDS = 180.0  # until the first consumed message


class BenchError(Exception):
    """A run that must not report numbers: a wrong row count, a crashed system, a timeout."""


@dataclass(frozen=True)
class Window:
    """`count` messages from the first one in hand (`start`) to the last durable row (`end`), monotonic clock."""

    count: int
    start: float
    end: float
    launched: float  # when the system's process was started: `start - launched` is its start-up

    @property
    def seconds(self) -> float:
        return self.end - self.start

    @property
    def rate(self) -> float:
        return self.count / self.seconds if self.seconds > 0 else 0.0

    @property
    def startup(self) -> float:
        return self.start - self.launched


def process_cpu_seconds(pid: int) -> float | None:
    """utime + stime of `pid` (all its threads), or None once it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()  # the command name may hold spaces; fields start after it
    return (int(fields[11]) + int(fields[12])) / TICKS_PER_SECOND


def peak_rss_bytes(pid: int) -> int | None:
    """VmHWM: the most resident memory `pid` has ever used."""
    return _status_bytes(pid).get("VmHWM")


def rss_bytes(pid: int) -> int | None:
    """VmRSS: the resident memory `pid` uses now."""
    return _status_bytes(pid).get("VmRSS")


def _status_bytes(pid: int) -> dict[str, int]:
    """The kB lines of /proc/PID/status, in bytes; empty once the process is gone."""
    try:
        lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    except OSError:
        return {}
    return {k: int(v.split()[0]) * 1024 for k, _, v in (line.partition(":") for line in lines) if v.endswith(" kB")}


def _machine_ticks() -> tuple[int, int]:
    """(busy, total) jiffies of all CPUs since boot."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    total = sum(values[:8])  # guest time is already counted in user
    return total - idle, total


@dataclass
class _Sample:
    at: float
    busy: int
    total: int
    cpu: dict[str, float]


@dataclass(frozen=True)
class CpuUse:
    """CPU over a window: seconds per watched process and how busy the whole machine was (0..1)."""

    seconds: dict[str, float]
    machine_busy: float
    window_seconds: float


class CpuRecorder:
    """Samples /proc every `interval` seconds on a thread: the machine and a few named processes.

    `between(start, end)` interpolates, so a window measured by another process can be charged afterwards.
    """

    def __init__(self, pids: Mapping[str, int], interval: float = 0.1) -> None:
        self.pids = dict(pids)
        self.interval = interval
        self._samples: list[_Sample] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="cpu-recorder", daemon=True)

    def watch(self, name: str, pid: int) -> None:
        self.pids[name] = pid

    def __enter__(self) -> CpuRecorder:
        self._sample()
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self._sample()

    def _sample(self) -> None:
        busy, total = _machine_ticks()
        previous = self._samples[-1].cpu if self._samples else {}
        cpu = {}
        for name, pid in list(self.pids.items()):
            seconds = process_cpu_seconds(pid)
            cpu[name] = seconds if seconds is not None else previous.get(name, 0.0)
        self._samples.append(_Sample(time.monotonic(), busy, total, cpu))

    def _at(self, moment: float) -> _Sample:
        """The state at `moment`, linearly interpolated between the two samples around it."""
        times = [s.at for s in self._samples]
        i = bisect.bisect_left(times, moment)
        if i == 0:
            return self._samples[0]
        if i == len(self._samples):
            return self._samples[-1]
        a, b = self._samples[i - 1], self._samples[i]
        f = (moment - a.at) / (b.at - a.at) if b.at > a.at else 0.0

        def mix(x: float, y: float) -> float:
            return x + (y - x) * f

        names = set(a.cpu) | set(b.cpu)
        return _Sample(
            moment,
            round(mix(a.busy, b.busy)),
            round(mix(a.total, b.total)),
            {n: mix(a.cpu.get(n, b.cpu.get(n, 0.0)), b.cpu.get(n, 0.0)) for n in names},
        )

    def between(self, start: float, end: float) -> CpuUse:
        a, b = self._at(start), self._at(end)
        total = b.total - a.total
        return CpuUse(
            seconds={n: max(0.0, b.cpu.get(n, 0.0) - a.cpu.get(n, 0.0)) for n in b.cpu if n in a.cpu},
            machine_busy=(b.busy - a.busy) / total if total > 0 else 0.0,
            window_seconds=end - start,
        )


# What Cassandra logs for a batch over batch_size_warn_threshold (WARN) or batch_size_fail_threshold (ERROR).
BATCH_SIZE_LOG_LINE = "exceeding specified threshold"


def log_size(path: Path | None) -> int:
    """Bytes in the log now (0 if it does not exist yet): where counting later lines starts."""
    try:
        return path.stat().st_size if path is not None else 0
    except OSError:
        return 0


def batch_size_warnings(log: Path, since: int) -> int:
    """Cassandra's lines for batches over its batch size thresholds, written to `log` after byte `since`."""
    with log.open("rb") as text:
        text.seek(since)
        return sum(1 for line in text if BATCH_SIZE_LOG_LINE.encode() in line)


def scrape(url: str, names: tuple[str, ...]) -> dict[str, float]:
    """Sums of the named Prometheus metrics (over all their labels) at `url`; missing ones are 0. A name with
    labels (`sluice_rows_written_total{table="t"}`) is that one sample."""
    sums = dict.fromkeys(names, 0.0)
    with urllib.request.urlopen(url, timeout=5) as response:
        for line in response.read().decode().splitlines():
            if line.startswith("#"):
                continue
            metric, _, value = line.rpartition(" ")
            name = metric.split("{", 1)[0]
            for key in {metric, name} & sums.keys():
                sums[key] += float(value)
    return sums


@dataclass
class Progress:
    """How a system reports progress through its metrics endpoint: which counters mean consumed and done."""

    url: str
    consumed: str
    done: str
    requests: str | None = None  # the counter of write requests (rows per request: done / requests)

    def rows_per_request(self) -> float | None:
        """`done` over `requests` as the endpoint shows them now; None without a request counter or requests."""
        if self.requests is None:
            return None
        found = scrape(self.url, (self.done, self.requests))
        return found[self.done] / found[self.requests] if found[self.requests] else None


def watch_progress(
    progress: Progress,
    target: int,
    process: subprocess.Popen[bytes],
    launched: float,
    timeout: float,
    describe: Callable[[], str],
    on_start: Callable[[], None] | None = None,
) -> Window:
    """Polls the metrics until `done` reaches `target`: the window from the first consumed message to then.

    Polls every 50 ms until the first message, then at most 4 times a second while far from the end, and
    every 20 ms near it (so scraping costs the measured process little and the end is sharp). Gives up after
    `timeout`, after STARTUP_SECONDS without a first message, or after STALL_SECONDS without a new row.
    """
    deadline = time.monotonic() + timeout
    startup_deadline = time.monotonic() + STARTUP_SECONDS
    start: float | None = None
    last_done, last_at = 0.0, time.monotonic()
    rate = 0.0
    while True:
        if process.poll() is not None:
            raise BenchError(f"the process exited with {process.returncode} before the end\n{describe()}")
        if time.monotonic() > deadline:
            raise BenchError(f"timed out after {timeout:.0f}s at {last_done:,.0f}/{target:,} rows\n{describe()}")
        try:
            now_values = scrape(progress.url, (progress.consumed, progress.done))
        except OSError:
            time.sleep(0.05)  # not listening yet
            continue
        now = time.monotonic()
        consumed, done = now_values[progress.consumed], now_values[progress.done]
        if start is None and consumed > 0:
            start = last_at = now
            if on_start is not None:
                on_start()
        if done >= target:
            assert start is not None
            return Window(int(done), start, now, launched)
        if start is None:
            if now > startup_deadline:
                raise BenchError(f"no message consumed after {STARTUP_SECONDS:.0f}s\n{describe()}")
            time.sleep(0.05)
            continue
        if done > last_done:
            rate = (done - last_done) / (now - last_at) if now > last_at else rate
            last_done, last_at = done, now
        elif now - last_at > STALL_SECONDS:
            raise BenchError(f"no new row for {STALL_SECONDS:.0f}s at {done:,.0f}/{target:,} rows\n{describe()}")
        left = (target - done) / rate if rate > 0 else 1.0
        time.sleep(min(0.25, max(0.02, left / 4)))
