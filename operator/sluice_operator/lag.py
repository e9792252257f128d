"""A consumer group's lag and throughput, computed from snapshots of its offsets (pure)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:  # not at run time: the lag reader's child process (offsets.py) imports this module, not pydantic
    from sluice_worker.model import StartFrom


@dataclass(frozen=True)
class PartitionOffsets:
    """One partition's earliest and latest offsets (the high watermark), and the group's committed offset."""

    earliest: int
    latest: int
    committed: int | None  # None: the group has committed nothing for this partition


@dataclass(frozen=True)
class Snapshot:
    """The offsets of every partition of a group's topics, read at `taken` (seconds since the epoch)."""

    taken: float
    partitions: Mapping[tuple[str, int], PartitionOffsets]


def position(offsets: PartitionOffsets, start_from: StartFrom) -> int | None:
    """Where the group stands in a partition: its committed offset, or where `startFrom` starts it without a usable
    one (none, or below the earliest offset that retention kept): the earliest, or the latest (None: not known
    before a consumer joins)."""
    if offsets.committed is not None and offsets.committed >= offsets.earliest:
        return offsets.committed
    return offsets.earliest if start_from == "earliest" else None


def partition_lag(offsets: PartitionOffsets, start_from: StartFrom) -> int:
    """Messages the group has yet to commit in one partition (none when it will start at the latest)."""
    standing = position(offsets, start_from)
    return 0 if standing is None else max(0, offsets.latest - standing)


def total_lag(snapshot: Snapshot, start_from: StartFrom) -> int:
    """The group's lag over all partitions of its topics."""
    return sum(partition_lag(offsets, start_from) for offsets in snapshot.partitions.values())


# The throughput is measured over at least this long: over a few seconds, commits in bursts make it waver by more
# than the 10% that writes it to the status at once (status.lag_status_due), so short lag intervals would write
# every check. With checks further apart than this, it is measured between the last two.
THROUGHPUT_WINDOW_SECONDS: Final = 30.0


def windowed(
    samples: Sequence[Snapshot], snapshot: Snapshot, seconds: float = THROUGHPUT_WINDOW_SECONDS
) -> list[Snapshot]:
    """`samples` (oldest first) with `snapshot` added, keeping the newest sample at least `seconds` older than it
    (or the oldest there is) and those after: the first one kept is where the throughput is measured from."""
    kept = [*samples, snapshot]
    while len(kept) > 2 and snapshot.taken - kept[1].taken >= seconds:
        kept.pop(0)
    return kept


def throughput(before: Snapshot | None, after: Snapshot, start_from: StartFrom) -> float | None:
    """Messages per second the group committed between two snapshots (None without an earlier one).

    Counts the partitions with a known position in both; a position that went back (a reset) is no progress.
    """
    if before is None or after.taken <= before.taken:
        return None
    committed = 0
    for partition, now in after.partitions.items():
        then = before.partitions.get(partition)
        start, end = (None if then is None else position(then, start_from)), position(now, start_from)
        if start is not None and end is not None:
            committed += max(0, end - start)
    return committed / (after.taken - before.taken)
