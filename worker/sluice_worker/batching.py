"""How a poll's rows become write requests: each Cassandra partition's rows together, within Cassandra's limits."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence

from .writes import PendingRow

# Cassandra counts a batch's bytes against batch_size_warn_threshold / batch_size_fail_threshold only when it spans
# partitions (CASSANDRA-10876): a batch of one partition is one mutation, bounded by max_mutation_size (half a commit
# log segment, 16 MiB by default). Its rows are bounded by this, far under that, and by maxRowsPerWrite.
ONE_PARTITION_MAX_BYTES = 1_048_576


def add_row(by_partition: dict[object, list[PendingRow]], partition: object, row: PendingRow) -> None:
    """Puts `row` after the rows of its Cassandra partition; `partition` is its key as the sink encodes it (None when
    the sink cannot tell: the row is then a partition of its own)."""
    rows = by_partition.get(partition)
    if rows is None:
        by_partition[object() if partition is None else partition] = [row]
    else:
        rows.append(row)


def batches(partitions: Iterable[Sequence[PendingRow]], max_rows: int, max_bytes: int) -> Iterator[list[PendingRow]]:
    """The requests for rows grouped by Cassandra partition (of the same replicas, table and Kafka partition), in
    that order: a partition's rows go together, so Cassandra applies each partition once, not once for each request
    its rows are spread over (make bench: 40-45 against 47-53 us of Cassandra a row). A request holds at most
    `max_rows` rows; one spanning partitions at most `max_bytes` of their `size` (a larger row goes alone), one
    of a single partition at most ONE_PARTITION_MAX_BYTES."""
    batch: list[PendingRow] = []
    size = 0
    spans = False  # the batch holds rows of more than one partition: Cassandra counts its bytes
    for rows in partitions:
        joins = bool(batch)  # this partition's first row would join other partitions' rows
        for row in rows:
            spanning = spans or joins
            limit = max_bytes if spanning else ONE_PARTITION_MAX_BYTES
            if batch and (len(batch) >= max_rows or size + row.size > limit):
                yield batch
                batch, size, spanning = [], 0, False
            batch.append(row)
            size += row.size
            spans, joins = spanning, False
    if batch:
        yield batch
