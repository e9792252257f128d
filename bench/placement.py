"""Where the processes run while systems are measured: Cassandra on CPUs of its own, Kafka and every measured
client on the others, as in production, where the database does not share its cores with the pipeline.

Measured on the 2-core development machine (docs/benchmarks.md): sharing both cores, whatever CPU a client
spends is taken from Cassandra, whose cost per row then rises with the contention (91 to 105 us against 66 to
70 us pinned) and varied by 10-30% from run to run; so the ratios mostly measured how much CPU each client
left to Cassandra rather than how close it came to what Cassandra can take. `--placement shared` measures
that way still.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Placement:
    cassandra: frozenset[int]
    clients: frozenset[int]  # Kafka, this process and everything it starts

    @classmethod
    def split(cls, cpus: set[int]) -> Placement:
        """The lower half of `cpus` (at least one) for Cassandra, the rest for everything else."""
        ordered = sorted(cpus)
        if len(ordered) < 2:
            raise ValueError("pinning needs at least 2 CPUs; use --placement shared")
        half = len(ordered) // 2
        return cls(frozenset(ordered[:half]), frozenset(ordered[half:]))

    def describe(self) -> str:
        return f"Cassandra on CPU {_cpus(self.cassandra)}; Kafka and each measured client on CPU {_cpus(self.clients)}"


@contextlib.contextmanager
def pinned(placement: Placement | None, cassandra_pid: int, kafka_pid: int) -> Iterator[None]:
    """Applies `placement` (None: leave everything where it is) until the block ends, then lets every process
    use all the CPUs this one could use before."""
    if placement is None:
        yield
        return
    everything = os.sched_getaffinity(0)
    moves = {cassandra_pid: placement.cassandra, kafka_pid: placement.clients, os.getpid(): placement.clients}
    try:
        for pid, cpus in moves.items():
            _set_affinity(pid, cpus)
        yield
    finally:
        for pid in moves:
            _set_affinity(pid, everything)


def _set_affinity(pid: int, cpus: frozenset[int] | set[int]) -> None:
    """Every thread of `pid` (a JVM's threads each have their own mask; threads made later inherit theirs)."""
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(ProcessLookupError, FileNotFoundError):
            os.sched_setaffinity(int(task.name), cpus)


def _cpus(cpus: frozenset[int]) -> str:
    return ",".join(str(cpu) for cpu in sorted(cpus))
