"""The commit watermark never passes a message that is not yet durable."""

from sluice_worker.offsets import OffsetTracker

TP = ("store-events", 0)


def test_watermark_waits_for_the_gap_to_fill() -> None:
    tracker = OffsetTracker()
    for offset in (10, 11, 12, 13):
        tracker.consumed(TP, offset)
    tracker.done(TP, 12)
    tracker.done(TP, 13)
    assert tracker.to_commit() == {}  # 10 and 11 are still in flight
    tracker.done(TP, 10)
    assert tracker.to_commit() == {TP: 11}
    tracker.done(TP, 11)
    assert tracker.to_commit() == {TP: 14}
    assert tracker.outstanding() == 0


def test_committed_watermarks_are_not_offered_again() -> None:
    tracker = OffsetTracker()
    tracker.consumed(TP, 0)
    tracker.done(TP, 0)
    tracker.committed(tracker.to_commit())
    assert tracker.to_commit() == {}
    tracker.consumed(TP, 1)
    tracker.done(TP, 1)
    assert tracker.to_commit() == {TP: 2}


def test_partitions_are_independent_and_forgotten_on_revoke() -> None:
    other = ("store-events", 1)
    tracker = OffsetTracker()
    tracker.consumed(TP, 5)
    tracker.consumed(other, 7)
    tracker.done(other, 7)
    assert tracker.to_commit() == {other: 8}
    assert tracker.outstanding([TP]) == 1
    tracker.forget([TP])
    tracker.done(TP, 5)  # a late completion for a revoked partition is ignored
    assert TP not in tracker.to_commit()
    assert tracker.partitions() == [other]


def test_a_writes_rows_are_done_together_and_an_offset_of_two_tables_waits_for_both() -> None:
    tracker = OffsetTracker()
    tracker.consumed(TP, 20, parts=2)  # feeds two tables
    for offset in (21, 22, 23):
        tracker.consumed(TP, offset)
    tracker.all_done(TP, [23, 21, 20])  # one table's write, rows in any order
    assert tracker.to_commit() == {}  # 20 waits for its other table
    tracker.all_done(TP, [20, 22])
    assert tracker.to_commit() == {TP: 24}
    assert tracker.outstanding() == 0
    tracker.all_done(("gone", 0), [1])  # a revoked partition's late answer changes nothing
    assert tracker.partitions() == [TP]
