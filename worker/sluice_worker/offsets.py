"""Per-partition contiguous watermarks: which offset may be committed, given which messages are done."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field

TopicPartition = tuple[str, int]


@dataclass
class _Partition:
    """Offsets consumed from one partition, in order, and which are done (written or dead-lettered)."""

    pending: deque[int] = field(default_factory=deque)
    done: set[int] = field(default_factory=set)
    parts: dict[int, int] = field(default_factory=dict)  # offsets that feed several tables: parts still to do
    committable: int | None = None  # the next offset to consume: everything below it is done
    committed: int | None = None


class OffsetTracker:
    """Tracks consumed offsets and moves each partition's watermark only over a contiguous run of done ones.

    Kafka's committed offset means "everything before this is processed", so a message written out of
    order (a later one before an earlier retry) must not move it: the watermark waits for the gap to fill.
    """

    def __init__(self) -> None:
        self._partitions: dict[TopicPartition, _Partition] = {}

    def consumed(self, tp: TopicPartition, offset: int, parts: int = 1) -> None:
        """Records that `offset` was handed to the pipeline; it is outstanding until `done()` was called for
        each of its `parts` (one per table it feeds)."""
        part = self._partitions.setdefault(tp, _Partition())
        part.pending.append(offset)
        if parts > 1:
            part.parts[offset] = parts

    def done(self, tp: TopicPartition, offset: int) -> None:
        """Marks one part of `offset` durable (or dead-lettered, or skipped); once all its parts are, advances
        the watermark over every contiguous done offset."""
        self.all_done(tp, (offset,))

    def all_done(self, tp: TopicPartition, offsets: Iterable[int]) -> None:
        """`done()` for each of `offsets` (the rows of one write), moving the watermark once."""
        part = self._partitions.get(tp)
        if part is None:  # the partition was revoked meanwhile: a late completion changes nothing
            return
        for offset in offsets:
            if part.parts:  # some offsets feed several tables
                left = part.parts.pop(offset, 1) - 1
                if left:
                    part.parts[offset] = left
                    continue
            part.done.add(offset)
        pending, done = part.pending, part.done
        while pending and pending[0] in done:
            head = pending.popleft()
            done.discard(head)
            part.committable = head + 1

    def outstanding(self, tps: list[TopicPartition] | None = None) -> int:
        """How many consumed messages (of `tps`, or of all partitions) are not yet done."""
        if tps is None:
            return sum(len(p.pending) for p in self._partitions.values())
        return sum(len(self._partitions[tp].pending) for tp in tps if tp in self._partitions)

    def to_commit(self) -> dict[TopicPartition, int]:
        """Watermarks that moved since they were last committed."""
        return {
            tp: p.committable
            for tp, p in self._partitions.items()
            if p.committable is not None and p.committable != p.committed
        }

    def committed(self, offsets: dict[TopicPartition, int]) -> None:
        """Records that Kafka acknowledged committing these watermarks."""
        for tp, offset in offsets.items():
            if tp in self._partitions:
                self._partitions[tp].committed = offset

    def committed_offset(self, tp: TopicPartition) -> int | None:
        part = self._partitions.get(tp)
        return part.committed if part else None

    def forget(self, tps: list[TopicPartition]) -> None:
        """Drops partitions that were revoked or lost; another consumer owns them now."""
        for tp in tps:
            self._partitions.pop(tp, None)

    def partitions(self) -> list[TopicPartition]:
        return list(self._partitions)
