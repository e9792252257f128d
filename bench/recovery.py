"""Seconds until writes resume after a fault: a worker SIGKILLed and replaced, a broker restarted, Cassandra paused."""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

from confluent_kafka import Consumer, Producer, TopicPartition
from sluice_stack import Stack
from sluice_stack.kafka import CLIENT_LOG
from sluice_stack.process import free_port

from .measure import BenchError, scrape
from .systems import Context, sluice
from .workload import create_topic, delete_topic, expected_departments, make_events

FAULTS = ("worker_sigkill", "broker_restart", "cassandra_pause_20s")
TITLES = {
    "worker_sigkill": "a worker SIGKILLed, from its replacement's start",
    "broker_restart": "the broker SIGKILLed, from when it answers again",
    "cassandra_pause_20s": "Cassandra paused 20 s, from SIGCONT",
}
RATE = 200  # messages per second while a fault happens: a steady stream, far below what a worker can take
RESUME_TIMEOUT = 120.0
ROWS = "sluice_rows_written_total"


@dataclass
class Recovery:
    """Every run's seconds to resume, per fault; the median is what `make bench` reports."""

    runs: dict[str, list[float]] = field(default_factory=dict)

    def median(self, fault: str) -> float:
        return round(statistics.median(self.runs[fault]), 1)

    def table(self) -> str:
        """The recovery section of the report: the median against the 10 s goal, and every run."""
        lines = [f"\n{'recovery: seconds until rows are written again':<52} {'median':>8}  runs (goal: 10 s each)"]
        for fault, runs in self.runs.items():
            shown = ", ".join(f"{s:.1f}" for s in runs)
            lines.append(f"{TITLES[fault]:<52} {self.median(fault):>8.1f}  {shown}")
        return "\n".join(lines)

    def summary(self) -> dict[str, object]:
        return {
            **{f"recovery_{fault}_s": self.median(fault) for fault in self.runs},
            **{f"recovery_{fault}_runs_s": [round(s, 1) for s in runs] for fault, runs in self.runs.items()},
        }


class PacedProducer:
    """Produces the run's events at RATE per second on a thread until stopped; counts what Kafka acknowledged."""

    def __init__(self, bootstrap: str, topic: str, events: list[tuple[str, bytes]]) -> None:
        self.topic, self.events = topic, events
        self.producer = Producer(
            {"bootstrap.servers": bootstrap, "enable.idempotence": True, "linger.ms": 5, "logger": CLIENT_LOG}
        )
        self.sent, self.acknowledged = 0, 0
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="paced-producer", daemon=True)

    def _delivered(self, error: object, _message: object) -> None:
        if error is None:
            self.acknowledged += 1
        else:
            self.failures.append(str(error))

    def _run(self) -> None:
        started = time.monotonic()
        while not self._stop.is_set() and self.sent < len(self.events):
            due = started + self.sent / RATE
            if (wait := due - time.monotonic()) > 0:
                self._stop.wait(wait)
            key, value = self.events[self.sent]
            try:
                self.producer.produce(self.topic, key=key.encode(), value=value, on_delivery=self._delivered)
                self.sent += 1
            except BufferError:
                pass
            self.producer.poll(0)

    def __enter__(self) -> PacedProducer:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()
        if self.producer.flush(120) or self.failures or self.acknowledged != self.sent:
            raise BenchError(f"{self.sent - self.acknowledged} events not acknowledged: {self.failures[:3]}")


class Worker:
    """One `sluice-worker` of the run's pipeline, its metrics on a loopback port."""

    def __init__(self, ctx: Context, manifest: Path, log: Path) -> None:
        self.port = free_port()
        env = {
            **os.environ,
            "SLUICE_KAFKA_BOOTSTRAP_SERVERS": ctx.bootstrap,
            "SLUICE_CASSANDRA_CONTACT_POINTS": ctx.contact_point,
            "SLUICE_HTTP_HOST": "127.0.0.1",
            "SLUICE_HTTP_PORT": str(self.port),
        }
        with open(log, "ab") as out:
            self.process = subprocess.Popen(
                [str(sluice.WORKER), "--pipeline", str(manifest)], env=env, stdout=out, stderr=subprocess.STDOUT
            )
        self.launched = time.monotonic()

    def rows(self) -> float:
        """Rows written so far; 0 until the metrics endpoint listens."""
        if self.process.poll() is not None:
            raise BenchError(f"sluice-worker exited with {self.process.returncode} during a recovery run")
        try:
            return scrape(f"http://127.0.0.1:{self.port}/metrics", (ROWS,))[ROWS]
        except OSError:
            return 0.0

    def first_row_after(self, since: float, baseline: float) -> float:
        """Seconds from `since` until the rows written pass `baseline`."""
        deadline = time.monotonic() + RESUME_TIMEOUT
        while self.rows() <= baseline:
            if time.monotonic() > deadline:
                raise BenchError(f"no row written {RESUME_TIMEOUT:.0f}s after the fault ended")
            time.sleep(0.05)
        return time.monotonic() - since

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(60)


def _worker_sigkill(ctx: Context, stack: Stack, manifest: Path, log: Path) -> tuple[float, Worker]:
    """A crashed worker (SIGKILL: it never leaves the group) and its replacement started at once, as a
    ReplicaSet would; timed from the replacement's start."""
    crashed = Worker(ctx, manifest, log)
    _flowing(crashed)
    crashed.process.kill()
    crashed.process.wait(10)
    replacement = Worker(ctx, manifest, log)
    return replacement.first_row_after(replacement.launched, 0), replacement


def _broker_restart(ctx: Context, stack: Stack, manifest: Path, log: Path) -> tuple[float, Worker]:
    """The broker SIGKILLed and started again on its data; timed from when it answers metadata requests."""
    return _around(ctx, manifest, log, lambda: stack.restart("kafka"))


def _cassandra_pause(ctx: Context, stack: Stack, manifest: Path, log: Path) -> tuple[float, Worker]:
    """Cassandra SIGSTOPped for 20 s (the talk's test); timed from SIGCONT."""
    return _around(ctx, manifest, log, lambda: stack.inject("pause", "cassandra", seconds=20))


def _around(ctx: Context, manifest: Path, log: Path, fault: Callable[[], object]) -> tuple[float, Worker]:
    worker = Worker(ctx, manifest, log)
    _flowing(worker)
    fault()
    ended = time.monotonic()
    return worker.first_row_after(ended, worker.rows()), worker


def _flowing(worker: Worker) -> None:
    """Waits until the worker writes rows: a second's worth."""
    deadline = time.monotonic() + RESUME_TIMEOUT
    while worker.rows() < RATE:
        if time.monotonic() > deadline:
            raise BenchError("the worker wrote no rows before the fault")
        time.sleep(0.1)


def _committed(bootstrap: str, group: str, topic: str, partitions: int) -> int:
    """Messages of `topic` (fresh: offsets from 0) that the group has committed, all partitions together."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "logger": CLIENT_LOG})
    try:
        tps = consumer.committed([TopicPartition(topic, p) for p in range(partitions)], timeout=10)
    finally:
        consumer.close()
    return sum(max(tp.offset, 0) for tp in tps)


MEASURES: dict[str, Callable[[Context, Stack, Path, Path], tuple[float, Worker]]] = {
    "worker_sigkill": _worker_sigkill,
    "broker_restart": _broker_restart,
    "cassandra_pause_20s": _cassandra_pause,
}


def measure(ctx: Context, stack: Stack, rounds: int) -> Recovery:
    """Each fault `rounds` times, each run on a topic and table of its own while events flow at RATE, with the
    example's settings as shipped. Then the group must commit every event Kafka acknowledged, and the table
    hold exactly those rows: a recovery that loses a message fails the run."""
    recovery = Recovery()
    for number in range(1, rounds + 1):
        for fault in FAULTS:
            label = f"recovery-{fault.replace('_', '-')}-{number}"
            run = replace(ctx, topic=f"{ctx.topic}-{label}")
            create_topic(ctx.bootstrap, run.topic, ctx.partitions)
            table = ctx.tables.fresh(f"{fault}_{number}_{ctx.run_id}")
            events = make_events(RATE * 300, ctx.items, ctx.seed + number)
            manifest = sluice.manifest(run, f"bench-{label}", table, {})
            log = ctx.workdir / f"{label}.log"
            worker: Worker | None = None
            try:
                with PacedProducer(ctx.bootstrap, run.topic, events) as producer:
                    seconds, worker = MEASURES[fault](run, stack, manifest, log)
                    time.sleep(1)  # the stream goes on a little after writes resumed
                wait = time.monotonic() + RESUME_TIMEOUT
                group = f"default.bench-{label}"
                while _committed(ctx.bootstrap, group, run.topic, ctx.partitions) < producer.acknowledged:
                    if time.monotonic() > wait:
                        raise BenchError(f"{fault}: the group did not commit all {producer.acknowledged} events")
                    worker.rows()  # fails if the worker died
                    time.sleep(0.5)
            finally:
                if worker is not None:
                    worker.stop()
                delete_topic(ctx.bootstrap, run.topic)
            sent = events[: producer.acknowledged]
            ctx.tables.check(table, len(sent), expected_departments(sent, ctx.pipeline))
            recovery.runs.setdefault(fault, []).append(seconds)
            print(f"  {fault} (run {number}): writing again after {seconds:.1f}s", file=sys.stderr)
    return recovery
