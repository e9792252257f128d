"""The measured systems. Each one is a process of its own, so its CPU comes from /proc like the others'."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..measure import (
    BenchError,
    CpuRecorder,
    CpuUse,
    Progress,
    Window,
    batch_size_warnings,
    log_size,
    peak_rss_bytes,
    rss_bytes,
    watch_progress,
)
from ..tables import Tables
from ..workload import REPO_DIR, Pipeline


@dataclass
class Context:
    """What every system needs: where the servers are, the topic of this run and how to check the result."""

    bootstrap: str
    contact_point: str
    topic: str
    partitions: int
    messages: int
    items: list[str]
    seed: int
    expected: Counter[str]  # rows per department once all `messages` are written
    pipeline: Pipeline
    tables: Tables
    workdir: Path
    run_id: str
    server_pids: dict[str, int]  # "kafka", "cassandra": charged with their CPU during each window
    avro_topic: str | None = None  # the same events as Avro in the Confluent wire format, for the Avro run
    registry_url: str | None = None  # the schema registry holding their schema
    cassandra_log: Path | None = None  # where Cassandra logs its batch size WARN lines

    def recorder(self) -> CpuRecorder:
        return CpuRecorder(self.server_pids)


@dataclass
class Result:
    """One system's measurement: its window, the CPU spent in it, and the rows verified in Cassandra."""

    key: str  # sluice, naive, driver, consume, benthos
    title: str
    window: Window
    cpu: CpuUse
    rows_checked: int | None  # None: the system writes nothing
    detail: str = ""
    extra: dict[str, Any] = field(default_factory=dict)
    rows_per_message: int = 1  # rows written for each message (0: none, 2: two tables)
    memory: Memory | None = None  # of a long-lived system, when every row was durable
    rows_per_request: float | None = None  # rows written over write requests sent, where the system counts both
    batch_warnings: int | None = None  # Cassandra's log lines for its batches over batch_size_warn_threshold

    @property
    def cpu_per_1k(self) -> float:
        return self.cpu.seconds.get("process", 0.0) / self.window.count * 1000

    @property
    def cassandra_us_per_row(self) -> float | None:
        """Cassandra's CPU for each row written in the window: what a system's requests cost the server."""
        rows = self.window.count * self.rows_per_message
        return self.cpu.seconds.get("cassandra", 0.0) / rows * 1e6 if rows else None


@dataclass(frozen=True)
class Memory:
    """A process's resident memory: now (after the whole workload: its steady state) and at its peak."""

    rss_bytes: int
    peak_rss_bytes: int

    @classmethod
    def of(cls, pid: int) -> Memory | None:
        rss, peak = rss_bytes(pid), peak_rss_bytes(pid)
        return cls(rss, peak) if rss is not None and peak is not None else None


def run_child(module: str, args: dict[str, Any], recorder: CpuRecorder, log: Path) -> tuple[Window, dict[str, Any]]:
    """Runs `python -m bench.systems.<module> ARGS_JSON` under `recorder`; the child prints one JSON line last:
    its window (`count`, `start`, `end` on the machine's monotonic clock) and anything else it found."""
    launched = time.monotonic()
    with open(log, "wb") as stderr:
        process = subprocess.Popen(
            [sys.executable, "-m", f"bench.systems.{module}", json.dumps(args)],
            cwd=REPO_DIR,
            stdout=subprocess.PIPE,
            stderr=stderr,
        )
        recorder.watch("process", process.pid)
        out, _ = process.communicate()
    lines = out.decode().strip().splitlines()
    if process.returncode != 0 or not lines:
        raise BenchError(f"bench.systems.{module} exited with {process.returncode}:\n{tail(log)}")
    report: dict[str, Any] = json.loads(lines[-1])
    return Window(report["count"], report["start"], report["end"], launched), report


@dataclass(frozen=True)
class Watched:
    """What run_watched saw of a long-lived system."""

    window: Window
    cpu: CpuUse
    memory: Memory | None  # at the end of the window
    rows_per_request: float | None  # see Progress
    batch_warnings: int | None  # Cassandra's batch size lines from start to exit; None: its log is unknown


def run_watched(
    ctx: Context,
    name: str,
    argv: list[str],
    progress: Progress,
    log: Path,
    env: Mapping[str, str] | None = None,
    on_start: Callable[[int], None] | None = None,
) -> Watched:
    """Runs a long-lived system (`name` in errors) until its `progress` shows every message durable, then stops
    it with SIGTERM, which it must answer with exit 0; `on_start(pid)` runs when it has its first message."""
    cassandra_log_from = log_size(ctx.cassandra_log)
    with ctx.recorder() as recorder, open(log, "wb") as out:
        launched = time.monotonic()
        process = subprocess.Popen(argv, env=env, stdout=out, stderr=out)
        recorder.watch("process", process.pid)
        try:
            window = watch_progress(
                progress,
                ctx.messages,
                process,
                launched,
                timeout=max(300.0, ctx.messages / 200),
                describe=lambda: tail(log),
                on_start=(lambda: on_start(process.pid)) if on_start else None,
            )
            memory = Memory.of(process.pid)
            rows_per_request = progress.rows_per_request()
        finally:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
            code = process.wait(60)
    if code != 0:
        raise BenchError(f"{name} exited with {code} after SIGTERM\n{tail(log)}")
    warnings = batch_size_warnings(ctx.cassandra_log, cassandra_log_from) if ctx.cassandra_log else None
    return Watched(window, recorder.between(window.start, window.end), memory, rows_per_request, warnings)


def report_window(count: int, start: float, end: float, **extra: Any) -> None:
    """What a child prints last (see run_child)."""
    print(json.dumps({"count": count, "start": start, "end": end, **extra}), flush=True)


def tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return f"(no log at {path})"
