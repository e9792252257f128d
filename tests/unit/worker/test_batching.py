"""How a poll's rows are packed into write requests (batching.py): by partition, within Cassandra's limits."""

from __future__ import annotations

from sluice_worker.batching import ONE_PARTITION_MAX_BYTES, add_row, batches
from sluice_worker.transform import Record
from sluice_worker.writes import PendingRow


def _packed(arrivals: list[tuple[object, int]], max_rows: int = 50, max_bytes: int = 4096) -> list[list[int]]:
    """The offsets of each request for rows arriving as (partition, bytes), offset = arrival order."""
    by_partition: dict[object, list[PendingRow]] = {}
    for offset, (partition, size) in enumerate(arrivals):
        add_row(by_partition, partition, PendingRow(Record("t", 0, offset, 0), statement=None, size=size))
    return [[row.record.offset for row in batch] for batch in batches(by_partition.values(), max_rows, max_bytes)]


def test_a_partitions_rows_go_together_though_others_come_between() -> None:
    arrivals = [(key, 100) for _ in range(3) for key in (b"a", b"b", b"c")]  # a b c a b c a b c
    assert _packed(arrivals) == [[0, 3, 6, 1, 4, 7, 2, 5, 8]]


def test_rows_of_many_partitions_are_held_to_the_byte_limit() -> None:
    batches = _packed([(f"k{i}".encode(), 176) for i in range(50)])
    assert [len(batch) for batch in batches] == [23, 23, 4]  # 23 x 176 = 4,048 bytes; a 24th would pass 4,096
    assert [offset for batch in batches for offset in batch] == list(range(50))


def test_rows_of_one_partition_pass_the_byte_limit_up_to_the_row_limit() -> None:
    assert [len(batch) for batch in _packed([(b"p", 176)] * 120)] == [50, 50, 20]


def test_one_partition_is_held_to_its_own_byte_limit() -> None:
    size = 300_000
    assert [len(batch) for batch in _packed([(b"p", size)] * 8)] == [3, 3, 2]
    assert 3 * size <= ONE_PARTITION_MAX_BYTES < 4 * size


def test_a_partition_that_passed_the_byte_limit_takes_no_other_partition_in() -> None:
    arrivals = [(b"p", 1000)] * 6 + [(b"q", 100)] * 2
    assert _packed(arrivals) == [[0, 1, 2, 3, 4, 5], [6, 7]]


def test_a_partition_joining_a_batch_of_others_is_counted_and_split_at_the_limit() -> None:
    arrivals = [(b"p", 1000)] * 2 + [(b"q", 1000)] * 5  # p alone is 2,000; with q the batch spans partitions
    assert _packed(arrivals) == [[0, 1, 2, 3], [4, 5, 6]]  # q's rest is one partition: no byte limit then


def test_a_large_row_goes_alone_among_other_partitions() -> None:
    assert _packed([(b"a", 100), (b"b", 6000), (b"c", 100)]) == [[0], [1], [2]]


def test_rows_whose_partition_is_unknown_are_never_taken_for_one_partition() -> None:
    batches = _packed([(None, 1000)] * 6)
    assert batches == [[0, 1, 2, 3], [4, 5]]  # held to 4,096 bytes as rows of different partitions


def test_no_row_is_lost_or_repeated() -> None:
    arrivals = [(f"k{i % 7}".encode() if i % 5 else None, 80 + i % 300) for i in range(1000)]
    batches = _packed(arrivals, max_rows=37, max_bytes=2048)
    assert sorted([offset for batch in batches for offset in batch]) == list(range(1000))
    assert max(len(batch) for batch in batches) == 37
