"""Sluice: one `sluice-worker --pipeline FILE` process running the Gophers R Us example on the run's topic, as
shipped (JSON), on Avro values through the schema registry, or into two tables."""

from __future__ import annotations

import copy
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, Literal

import yaml
from sluice_stack.process import free_port

from ..measure import BenchError, Progress
from ..workload import KEYSPACE
from . import Context, Result, Watched, run_watched, tuning
from .tuning import Setting

TITLE = "sluice-worker (1 process)"
TITLES = {
    "json": TITLE,
    "avro": "sluice-worker, Avro values (schema registry)",
    "two_tables": "sluice-worker, two tables (+ by department)",
    "by_department": "sluice-worker, partitioned by department",
}
WORKER = Path(sys.executable).with_name("sluice-worker")
Variant = Literal["json", "avro", "two_tables", "by_department"]


def manifest(
    ctx: Context,
    name: str,
    table: str,
    changes: Mapping[str, Any],
    shape: Callable[[dict[str, Any]], None] | None = None,
) -> Path:
    """examples/gophers-r-us.yaml as shipped (same delivery settings), on this run's topic and table, with
    `changes` (`{"delivery.maxInFlight": 128}`: dotted paths in the spec) for tuning experiments, and `shape`
    (a variant's change of the spec) applied last."""
    pipeline = copy.deepcopy(ctx.pipeline.manifest)
    pipeline["metadata"]["name"] = name
    spec = pipeline["spec"]
    spec["source"]["topics"] = [ctx.topic]
    spec["sink"]["keyspace"], spec["sink"]["table"] = KEYSPACE, table
    for dotted, value in changes.items():
        *parents, leaf = dotted.split(".")
        node = spec
        for key in parents:
            node = node.setdefault(key, {})
        node[leaf] = value
    if shape is not None:
        shape(spec)
    path = ctx.workdir / f"{name}.yaml"
    path.write_text(yaml.safe_dump(pipeline, sort_keys=False))
    return path


def _avro(ctx: Context) -> Callable[[dict[str, Any]], None]:
    if ctx.avro_topic is None or ctx.registry_url is None:
        raise BenchError("the Avro run needs the Avro topic and the schema registry")
    topic, url = ctx.avro_topic, ctx.registry_url

    def shape(spec: dict[str, Any]) -> None:
        spec["source"].update(topics=[topic], format="avro", schemaRegistry={"url": url})

    return shape


def _department_transform(transform: dict[str, Any]) -> dict[str, Any]:
    """The example's transform for a by-department table (its partition per department, rows by id)."""
    fields = transform["fields"]
    return {
        "fields": {"id": fields["id"], "item_name": {**fields["item_name"], "write": False}, "price": fields["price"]},
        "lookups": transform["lookups"],
        "required": ["id"],
    }


def _two_tables(second: str) -> Callable[[dict[str, Any]], None]:
    """The example's table, and a by-department one beside it."""

    def shape(spec: dict[str, Any]) -> None:
        transform, sink = spec.pop("transform"), spec["sink"]
        spec["tables"] = [{"table": sink.pop("table"), "transform": transform},
                          {"table": second, "transform": _department_transform(transform)}]  # fmt: skip
        sink.pop("createTable", None)

    return shape


# The example's table keyed by department, then id: its partition key repeats (5 partitions), as a sensor's readings
# go to the sensor's partition.
BY_DEPARTMENT_KEY = ("department", "id")


def _by_department(spec: dict[str, Any]) -> None:
    spec["sink"].pop("createTable", None)


def run(
    ctx: Context,
    label: str = "sluice",
    changes: Mapping[str, Any] | None = None,
    on_start: Callable[[int], None] | None = None,
    worker: Path = WORKER,
    variant: Variant = "json",
) -> Result:
    """Runs the worker until every row is durable; `on_start(pid)` is called when it has its first message."""
    watched, table, second = _watch(ctx, label, changes or {}, on_start, worker, variant)
    rows = ctx.tables.check(table, ctx.messages, ctx.expected)
    if second:
        ctx.tables.check_by_department(second, ctx.expected)
    detail = ", ".join(f"{k}={v}" for k, v in (changes or {}).items()) or "the example's delivery settings"
    if worker != WORKER:
        detail += f", {worker}"
    title = TITLES[variant] if worker == WORKER else f"{TITLES[variant]}, {worker.parent.parent.name}"
    return Result(label, title, replace(watched.window, count=ctx.messages), watched.cpu, rows, detail=detail,
                  rows_per_message=2 if second else 1, memory=watched.memory,
                  rows_per_request=watched.rows_per_request, batch_warnings=watched.batch_warnings)  # fmt: skip


def _watch(
    ctx: Context,
    label: str,
    changes: Mapping[str, Any],
    on_start: Callable[[int], None] | None,
    worker: Path,
    variant: Variant,
) -> tuple[Watched, str, str | None]:
    """One worker on fresh tables and group until `ctx.messages` messages are durable in each: what it did, its
    table and the by-department one (two_tables)."""
    table = ctx.tables.fresh(f"{label}_{ctx.run_id}", BY_DEPARTMENT_KEY if variant == "by_department" else None)
    name = f"bench-{label}-{ctx.run_id}".replace("_", "-")
    second = ctx.tables.fresh_by_department(f"{label}_dept_{ctx.run_id}") if variant == "two_tables" else None
    shape: Callable[[dict[str, Any]], None] | None = None
    if variant == "avro":
        shape = _avro(ctx)
    elif variant == "by_department":
        shape = _by_department
    elif second:
        shape = _two_tables(second)
    path = manifest(ctx, name, table, changes, shape)
    port = free_port()
    env = {
        **os.environ,
        "SLUICE_KAFKA_BOOTSTRAP_SERVERS": ctx.bootstrap,
        "SLUICE_CASSANDRA_CONTACT_POINTS": ctx.contact_point,
        "SLUICE_HTTP_HOST": "127.0.0.1",
        "SLUICE_HTTP_PORT": str(port),
    }
    progress = Progress(
        f"http://127.0.0.1:{port}/metrics",
        "sluice_messages_consumed_total",
        "sluice_rows_written_total",
        "sluice_write_latency_seconds_count",  # one sample per write request answered
    )
    argv = [str(worker), "--pipeline", str(path)]
    tables = 2 if second else 1  # the window ends when every table has every row
    watched = run_watched(replace(ctx, messages=ctx.messages * tables), "sluice-worker", argv, progress,
                          ctx.workdir / f"{label}.log", env=env, on_start=on_start)  # fmt: skip
    return watched, table, second


TUNED_TITLE = "sluice-worker, tuned batching"
# maxBytesPerWrite for each row of a setting: above what the sink counts for a row of the example (176 B), so that
# the setting's rows, not bytes, make the batch, as Benthos's batching.count does.
BYTES_PER_ROW = 256


def tuned_changes(setting: Setting) -> dict[str, int]:
    """The worker's delivery settings that send as `setting` says."""
    return {
        "delivery.maxRowsPerWrite": setting.batch,
        "delivery.maxBytesPerWrite": setting.batch * BYTES_PER_ROW,
        "delivery.maxInFlight": setting.in_flight,
    }


def search(ctx: Context, settings: Sequence[Setting], trial_rows: int, worker: Path = WORKER) -> list[dict[str, Any]]:
    """Each setting on the first `trial_rows` rows of the topic (own group and table, nothing checked): the search
    tuned Benthos gets, for the worker."""

    def trial(setting: Setting) -> float:
        label = f"sluice_trial_b{setting.batch}_f{setting.in_flight}"
        watched, _, _ = _watch(replace(ctx, messages=trial_rows), label, tuned_changes(setting), None, worker, "json")
        return watched.window.rate

    return tuning.search("sluice", settings, trial)


def run_tuned(
    ctx: Context, best: Setting, run_number: int = 1, trials: Sequence[dict[str, Any]] = (), worker: Path = WORKER
) -> Result:
    """The worker at the setting the search found, on every message, rows checked."""
    label = "sluice_tuned" + (f"_run{run_number}" if run_number > 1 else "")
    result = run(ctx, label, tuned_changes(best), worker=worker)
    extra = {"best": {"batch": best.batch, "in_flight": best.in_flight}, "trials": list(trials)}
    return replace(result, key="sluice_tuned", title=TUNED_TITLE, detail=str(best), extra=extra)
