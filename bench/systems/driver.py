"""The driver ceiling: the worker's prepared insert through cassandra-driver alone, in ONE Python process.

No Kafka, no transform: the rows' values are made before the clock starts. The child first searches the
concurrency (16..512 requests in flight) with two ways of keeping requests in flight, on a scratch table,
then writes all N rows with each of the two fastest settings into a fresh table (emptied in between) and
keeps the faster full run; the table is checked like the others. One process, because one sluice-worker
is one process: this is what the worker's Python could reach if its own work cost nothing.

Two ways of sending are searched and checked the same way: one row per request, and unlogged batches of
WORKER_ROWS rows whose partitions have the same replicas (what the worker sends). The ceiling is the faster.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from cassandra import ConsistencyLevel  # type: ignore[attr-defined]
from cassandra.cluster import EXEC_PROFILE_DEFAULT, Cluster, ExecutionProfile, Session
from cassandra.concurrent import execute_concurrent_with_args
from cassandra.policies import DCAwareRoundRobinPolicy, TokenAwarePolicy
from cassandra.query import BatchStatement, BatchType, BoundStatement, PreparedStatement, Statement
from sluice_worker.pipeline import tune_garbage_collector
from sluice_worker.sink import PROTOCOL_VERSION
from sluice_worker.statements import to_cql_value

from ..measure import Window
from ..workload import KEYSPACE, Pipeline, make_events
from . import Context, Result, report_window, run_child

TITLE = "driver alone, one row per request"
# Rows a request of the example's worker carries: delivery.maxBytesPerWrite 4096 fits about 23 of the bench's rows
# (make bench counts 22.6 rows a request). Until 2026-12-05 the batched ceiling sent 10, which costs Cassandra
# 1.14x the CPU per row (bench.systems.shapes): a ceiling lower than what the worker itself sends.
WORKER_ROWS = 23
BATCHED_TITLE = f"driver alone, batches of {WORKER_ROWS} rows"
CONCURRENCY = (16, 32, 64, 128, 256, 512)
QUICK_CONCURRENCY = (64, 256)
BATCH_CONCURRENCY = (8, 16, 32, 64)

Row = tuple[object, ...]
Method = Callable[[Session, PreparedStatement, Sequence[Row], int], None]


def run(ctx: Context, concurrency: Sequence[int], trial_rows: int) -> list[Result]:
    """The ceiling (single-row requests) and, for comparison, the batched rate: two checked Results."""
    tables = {name: ctx.tables.fresh(f"driver_{name}_{ctx.run_id}") for name in ("trials", "ceiling", "batched")}
    args = {
        "contact_point": ctx.contact_point,
        "count": ctx.messages,
        "items": ctx.items,
        "seed": ctx.seed,
        "tables": tables,
        "concurrency": list(concurrency),
        "batch_concurrency": list(BATCH_CONCURRENCY),
        "trial_rows": min(trial_rows, ctx.messages),
    }
    with ctx.recorder() as recorder:
        window, report = run_child("driver", args, recorder, ctx.workdir / "driver.log")
    results = []
    for key, title, found in (("driver", TITLE, report), ("driver_batched", BATCHED_TITLE, report["batched"])):
        table = tables["ceiling" if key == "driver" else "batched"]
        span = Window(found["count"], found["start"], found["end"], window.launched)
        best = found["best"]
        results.append(
            Result(
                key,
                title,
                span,
                recorder.between(span.start, span.end),
                ctx.tables.check(table, ctx.messages, ctx.expected),
                detail=f"{best['method']}, {best['concurrency']} in flight",
                extra={"trials": found["trials"], "best": best},
            )
        )
    return results


def rerun_batched(ctx: Context, best: dict[str, Any], run: int) -> Result:
    """The batched ceiling again at the setting `run()` found (`best`), on all rows: a checked Result."""
    table = ctx.tables.fresh(f"driver_batched{run}_{ctx.run_id}")
    args = {
        "contact_point": ctx.contact_point,
        "count": ctx.messages,
        "items": ctx.items,
        "seed": ctx.seed,
        "tables": {"batched": table},
        "batched_at": best,
    }
    with ctx.recorder() as recorder:
        window, _ = run_child("driver", args, recorder, ctx.workdir / f"driver{run}.log")
    return Result(
        "driver_batched",
        BATCHED_TITLE,
        window,
        recorder.between(window.start, window.end),
        ctx.tables.check(table, ctx.messages, ctx.expected),
        detail=f"{best['method']}, {best['concurrency']} in flight",
        extra={"best": best},
    )


def in_flight(session: Session, statements: Iterable[Statement], concurrency: int) -> None:
    """Sends with execute_async while fewer than `concurrency` are out (the worker's shape: the main thread
    sends, the driver's event-loop thread frees a slot per answer); returns when all are answered."""
    slots = threading.BoundedSemaphore(concurrency)
    errors: list[BaseException] = []

    def ok(_: object) -> None:
        slots.release()

    def failed(error: BaseException) -> None:
        errors.append(error)
        slots.release()

    for statement in statements:
        slots.acquire()
        session.execute_async(statement).add_callbacks(ok, failed)
    for _ in range(concurrency):  # wait for the last answers
        slots.acquire()
    if errors:
        raise RuntimeError(f"{len(errors)} writes failed, first: {errors[0]!r}")


def async_window(session: Session, insert: PreparedStatement, rows: Sequence[Row], concurrency: int) -> None:
    """One row per request, `concurrency` requests in flight."""
    in_flight(session, (insert.bind(row) for row in rows), concurrency)


def concurrent(session: Session, insert: PreparedStatement, rows: Sequence[Row], concurrency: int) -> None:
    """cassandra.concurrent: the driver chains the next request from each answer's callback."""
    execute_concurrent_with_args(session, insert, rows, concurrency=concurrency, results_generator=False)


def replica_batches(session: Session, insert: PreparedStatement, rows: Sequence[Row], concurrency: int) -> None:
    """Unlogged batches of up to WORKER_ROWS rows whose partitions have the same replicas, so a batch costs
    its coordinator no extra hop: the grouping (bind, routing key, replica lookup) is inside the clock."""
    in_flight(session, grouped(session, insert, rows, WORKER_ROWS), concurrency)


def grouped(
    session: Session, insert: PreparedStatement, rows: Iterable[Row], size: int, consistency: int | None = None
) -> Iterator[BatchStatement]:
    """`rows` bound to `insert`, in unlogged batches of up to `size` rows whose partitions have the same replicas
    (what the worker sends), at the profile's consistency unless `consistency` is given."""
    metadata = session.cluster.metadata
    groups: dict[tuple[object, ...], list[BoundStatement]] = {}
    for row in rows:
        bound = insert.bind(row)
        group = groups.setdefault(tuple(metadata.get_replicas(insert.keyspace, bound.routing_key)), [])
        group.append(bound)
        if len(group) == size:
            yield _batch(group, consistency)
            group.clear()
    yield from (_batch(group, consistency) for group in groups.values() if group)


def _batch(statements: list[BoundStatement], consistency: int | None = None) -> BatchStatement:
    batch = BatchStatement(batch_type=BatchType.UNLOGGED, consistency_level=consistency)
    for statement in statements:
        batch.add(statement)
    batch.is_idempotent = True
    return batch


METHODS: dict[str, Method] = {"execute_async": async_window, "execute_concurrent": concurrent}
BATCHED: dict[str, Method] = {f"unlogged batches of {WORKER_ROWS}": replica_batches}


def bound_rows(args: dict[str, Any]) -> list[Row]:
    """The rows the worker would bind for the run's events: columns in insert order, then the timestamp."""
    pipeline = Pipeline.example()
    base = datetime(2025, 1, 1, tzinfo=UTC)
    rows: list[Row] = []
    for i, (_, value) in enumerate(make_events(args["count"], args["items"], args["seed"])):
        event = json.loads(value)
        name = event["item"]["name"]
        columns = {
            "id": event["id"],
            "item_name": name,
            "price": float(event["item"]["price"]),
            "event_time": to_cql_value(base + timedelta(milliseconds=i)),  # bound as the worker binds it
            "department": pipeline.department(name),
        }
        rows.append((*(columns[c] for c in pipeline.insert_columns), (1_735_689_600_000 + i) * 1000))
    return rows


def search(
    session: Session,
    methods: dict[str, Method],
    concurrency: Sequence[int],
    scratch: PreparedStatement,
    rows: list[Row],
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Tries every method at every concurrency on `rows`; returns the fastest and all the trials."""
    trials = []
    for level in concurrency:
        for name, method in methods.items():
            started = time.monotonic()
            method(session, scratch, rows, level)
            rate = len(rows) / (time.monotonic() - started)
            trials.append({"method": name, "concurrency": level, "rate": round(rate)})
            print(f"driver trial {name:<24} {level:>4} in flight: {rate:,.0f} rows/s", file=sys.stderr)
    return max(trials, key=lambda t: t["rate"]), trials


def measure(
    session: Session, methods: dict[str, Method], concurrency: Sequence[int], scratch: PreparedStatement,
    insert: PreparedStatement, table: str, rows: list[Row], trial_rows: int, finalists: int,
) -> dict[str, Any]:  # fmt: skip
    """The search on the scratch table, then all rows into `table` with each of the `finalists` fastest
    settings (emptying it in between): the fastest full run's window, and every trial."""
    _, trials = search(session, methods, concurrency, scratch, rows[:trial_rows])
    runs = []
    for best in sorted(trials, key=lambda t: -t["rate"])[:finalists]:
        session.execute(f"TRUNCATE {KEYSPACE}.{table}", timeout=60)
        start = time.monotonic()
        methods[best["method"]](session, insert, rows, best["concurrency"])
        end = time.monotonic()
        runs.append({"count": len(rows), "start": start, "end": end, "best": best, "trials": trials})
        rate = len(rows) / (end - start)
        print(f"driver full run {best['method']}, {best['concurrency']} in flight: {rate:,.0f} rows/s", file=sys.stderr)
    return min(runs, key=lambda r: float(r["end"] - r["start"]))


def connect(contact_point: str) -> tuple[Cluster, Session]:
    """Connected as the worker connects: token-aware, LOCAL_QUORUM, protocol v4 (v5 checksums its frames in
    Python), so a ceiling is not lowered by a setting the worker does not pay for."""
    host, port = contact_point.rsplit(":", 1)
    profile = ExecutionProfile(
        load_balancing_policy=TokenAwarePolicy(DCAwareRoundRobinPolicy(local_dc="datacenter1")),
        consistency_level=ConsistencyLevel.LOCAL_QUORUM,
        request_timeout=10,
    )
    cluster = Cluster(
        [host], port=int(port), execution_profiles={EXEC_PROFILE_DEFAULT: profile}, protocol_version=PROTOCOL_VERSION
    )
    return cluster, cluster.connect()


def main(args: dict[str, Any]) -> None:
    cluster, session = connect(args["contact_point"])
    pipeline = Pipeline.example()
    rows = bound_rows(args)
    tables: dict[str, str] = args["tables"]
    inserts = {role: session.prepare(pipeline.insert_cql(table)) for role, table in tables.items()}
    for insert in inserts.values():
        insert.is_idempotent = True
    if best := args.get("batched_at"):  # a repeat: the batched ceiling only, at the setting found before
        async_window(session, inserts["batched"], rows[:2000], 64)  # the same warm-up as below
        session.execute(f"TRUNCATE {KEYSPACE}.{tables['batched']}", timeout=60)
        tune_garbage_collector()
        start = time.monotonic()
        BATCHED[best["method"]](session, inserts["batched"], rows, best["concurrency"])
        end = time.monotonic()
        cluster.shutdown()
        report_window(len(rows), start, end)
        return
    scratch, trial_rows = inserts["trials"], args["trial_rows"]
    async_window(session, scratch, rows[:2000], 64)  # warm up connections and both sides' code
    tune_garbage_collector()  # as the worker does
    ceiling = measure(
        session, METHODS, args["concurrency"], scratch, inserts["ceiling"], tables["ceiling"], rows, trial_rows, 2
    )
    batched = measure(
        session, BATCHED, args["batch_concurrency"], scratch, inserts["batched"], tables["batched"], rows, trial_rows, 1
    )
    cluster.shutdown()
    report_window(**ceiling, batched=batched)


if __name__ == "__main__":
    main(json.loads(sys.argv[1]))
