"""What a row costs Cassandra by the shape of the requests that carry it: batch size, timestamps, nulls, consistency.

#16 asks why Cassandra spends more CPU per row on Sluice's requests than on a tuned Benthos's, and to measure each
hypothesis. Each SHAPE writes the same rows (the run's events, bound as the worker binds them) through
cassandra-driver alone, one process, into a fresh table of its own; the shapes differ from the worker's in one thing
each. Every round runs all shapes in a child process, taking turns slice by slice (its windows on the machine's
monotonic clock), and Cassandra's CPU in a shape's windows over the rows it wrote is that shape's cost; every table
is then checked like the others. Cassandra is a single node here, so every batch is one replica's, and partition
keys do not repeat (`id`): grouping by partition cannot be measured on this workload and is not a shape.
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from cassandra import ConsistencyLevel  # type: ignore[attr-defined]
from cassandra.query import UNSET_VALUE

from ..workload import Pipeline, expected_departments, make_events
from . import Context, report_window, run_child
from .driver import WORKER_ROWS, Row, async_window, bound_rows, connect, grouped, in_flight

CHUNK_ROWS = 10_000  # a shape's turn: about a second of writes, ten 100 ms samples of Cassandra's CPU


@dataclass(frozen=True)
class Shape:
    """How the rows are sent; the defaults are the worker's (the example's settings)."""

    key: str
    title: str
    rows: int = WORKER_ROWS  # per request; 1 is a plain insert, more an unlogged batch
    in_flight: int = 64  # requests (the example's delivery.maxInFlight)
    timestamp: bool = True  # `USING TIMESTAMP ?` bound per row (the worker's), or the coordinator's clock
    consistency: str = "LOCAL_QUORUM"
    price: str = "bound"  # the price column: "bound", "null" (a tombstone cell) or "unset" (not written)


SHAPES = (
    Shape("worker", f"batches of {WORKER_ROWS} rows (3.8 KiB), 64 in flight: the worker's"),
    Shape("one_row", "one row per request, 256 in flight", rows=1, in_flight=256),
    Shape("batch_10", "batches of 10 rows (1.7 KiB)", rows=10),
    Shape("batch_50", "batches of 50 rows (8.2 KiB)", rows=50),
    Shape("batch_100", "batches of 100 rows (16.3 KiB; tuned Benthos's usual)", rows=100),
    Shape("in_flight_16", "16 batches in flight", in_flight=16),
    Shape("no_timestamp", "no USING TIMESTAMP (the coordinator's clock)", timestamp=False),
    Shape("consistency_one", "consistency ONE", consistency="ONE"),
    Shape("price_null", "price bound null (a tombstone cell)", price="null"),
    Shape("price_unset", "price left unset (no cell)", price="unset"),
)
SHAPES_BY_KEY = {shape.key: shape for shape in SHAPES}
ORDER = {shape.key: number for number, shape in enumerate(SHAPES)}


@dataclass
class Shapes:
    """Every round's Cassandra CPU per row and rows/s, per shape; the median is what `make bench` reports."""

    rows: int  # per shape and round
    us_per_row: dict[str, list[float]] = field(default_factory=dict)
    rates: dict[str, list[float]] = field(default_factory=dict)

    def add(self, key: str, us_per_row: float, rate: float) -> None:
        self.us_per_row.setdefault(key, []).append(us_per_row)
        self.rates.setdefault(key, []).append(rate)

    def median(self, key: str) -> float:
        return round(statistics.median(self.us_per_row[key]), 1)

    def relative(self, key: str) -> float:
        """A shape's cost over the worker's shape's in the same round, the median round: below 1, Cassandra spends
        less per row on it. Per round, as what drifts between rounds (the machine, Cassandra's heap) drifts for all."""
        ratios = [us / worker for us, worker in zip(self.us_per_row[key], self.us_per_row["worker"], strict=True)]
        return round(statistics.median(ratios), 3)

    def table(self) -> str:
        """The section of the report: cost per row against the worker's shape, and every round's."""
        lines = [
            f"\nwhat a row costs Cassandra, by request shape ({self.rows:,} rows each, the driver alone; as the worker "
            f"sends them, batches of {WORKER_ROWS} rows, 64 in flight, but for what is said)",
            f"{'shape':<60} {'C* us/row':>9} {'vs worker':>9} {'rows/s':>8}  every round's us/row",
        ]
        for key, costs in sorted(self.us_per_row.items(), key=lambda item: ORDER[item[0]]):
            rate = statistics.median(self.rates[key])
            shown = " / ".join(f"{us:.0f}" for us in costs)
            lines.append(
                f"{SHAPES_BY_KEY[key].title:<60} {self.median(key):>9.0f} {self.relative(key):>9.2f} "
                f"{rate:>8,.0f}  {shown}"
            )
        return "\n".join(lines)

    def summary(self) -> dict[str, object]:
        return {
            "cassandra_us_per_row_by_shape": {key: self.median(key) for key in self.us_per_row},
            "cassandra_cost_vs_worker_by_shape": {key: self.relative(key) for key in self.us_per_row},
            "cassandra_us_per_row_by_shape_runs": {
                key: [round(us, 1) for us in runs] for key, runs in self.us_per_row.items()
            },
        }


def measure(ctx: Context, rows: int, rounds: int, shapes: Sequence[Shape] = SHAPES) -> Shapes:
    """`rounds` times: every shape on a fresh table in one child process (`rows` each, in turns of CHUNK_ROWS),
    then each table checked and dropped."""
    rows = min(rows, ctx.messages)
    chunks = max(1, rows // CHUNK_ROWS)
    expected = expected_departments(make_events(rows, ctx.items, ctx.seed), ctx.pipeline)
    found = Shapes(rows)
    for number in range(1, rounds + 1):
        turn = (number - 1) * len(shapes) // rounds  # each round starts elsewhere: no shape always runs first
        ordered = [*shapes[turn:], *shapes[:turn]]
        tables = {shape.key: ctx.tables.fresh(f"shape_{shape.key}_{number}_{ctx.run_id}") for shape in ordered}
        warmup = ctx.tables.fresh(f"shape_warmup_{number}_{ctx.run_id}")
        args = {
            "contact_point": ctx.contact_point,
            "count": rows,
            "items": ctx.items,
            "seed": ctx.seed,
            "warmup": warmup,
            "chunks": chunks,
            "shapes": [{**asdict(shape), "table": tables[shape.key]} for shape in ordered],
        }
        with ctx.recorder() as recorder:
            _, report = run_child("shapes", args, recorder, ctx.workdir / f"shapes{number}.log")
        for key, windows in report["windows"].items():
            seconds = sum(end - start for start, end in windows)
            used = [recorder.between(start, end).seconds.get("cassandra", 0.0) for start, end in windows]
            found.add(key, sum(used) / rows * 1e6, rows / seconds)
        for table in tables.values():
            ctx.tables.check(table, rows, expected)
        ctx.tables.drop_all()
        costs = ", ".join(f"{key} {us[-1]:.0f}" for key, us in found.us_per_row.items())
        print(f"  request shapes, round {number}: Cassandra us/row {costs}", file=sys.stderr)
    return found


def shaped_rows(rows: Sequence[Row], shape: Shape, price_at: int) -> list[Row]:
    """The worker's bound values (columns, then the timestamp) as `shape` sends them."""
    price = UNSET_VALUE if shape.price == "unset" else None
    out = []
    for row in rows:
        values = list(row if shape.timestamp else row[:-1])
        if shape.price != "bound":
            values[price_at] = price
        out.append(tuple(values))
    return out


def send(session: Any, insert: Any, rows: Sequence[Row], shape: Shape) -> None:
    """Every row in `shape`'s requests, `shape.in_flight` at a time; returns when all are answered."""
    consistency = ConsistencyLevel.name_to_value[shape.consistency]
    if shape.rows == 1:
        insert.consistency_level = consistency
        async_window(session, insert, rows, shape.in_flight)
    else:
        in_flight(session, grouped(session, insert, rows, shape.rows, consistency), shape.in_flight)


def main(args: dict[str, Any]) -> None:
    """Every shape's rows in `chunks` slices, the shapes taking turns slice by slice: what Cassandra does in the
    background (a flush, a compaction, its garbage collector) falls on every shape alike, not on one."""
    cluster, session = connect(args["contact_point"])
    pipeline = Pipeline.example()
    rows = bound_rows(args)
    price_at = pipeline.insert_columns.index("price")
    async_window(session, session.prepare(pipeline.insert_cql(args["warmup"])), rows[:2000], 64)
    sending = []
    for fields in args["shapes"]:
        table = fields.pop("table")
        shape = Shape(**fields)
        cql = pipeline.insert_cql(table)
        insert = session.prepare(cql if shape.timestamp else cql.removesuffix(" USING TIMESTAMP ?"))
        insert.is_idempotent = True
        sending.append((shape, insert, shaped_rows(rows, shape, price_at)))
    windows: dict[str, list[tuple[float, float]]] = {}
    step = -(-len(rows) // args["chunks"])
    for begin in range(0, len(rows), step):
        for shape, insert, values in sending:
            time.sleep(0.1)  # the last slice's answers handled, so its work is not charged to this one
            start = time.monotonic()
            send(session, insert, values[begin : begin + step], shape)
            windows.setdefault(shape.key, []).append((start, time.monotonic()))
    cluster.shutdown()
    first, last = min(w[0][0] for w in windows.values()), max(w[-1][1] for w in windows.values())
    report_window(len(rows) * len(windows), first, last, windows=windows)


if __name__ == "__main__":
    main(json.loads(sys.argv[1]))
