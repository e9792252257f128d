"""Sluice: one `sluice-worker --pipeline FILE` process running the Gophers R Us example on the run's topic, as
shipped (JSON), on Avro values through the schema registry, or into two tables."""

from __future__ import annotations

import copy
import os
import sys
from collections.abc import Callable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any, Literal

import yaml
from sluice_stack.process import free_port

from ..measure import BenchError, Progress
from ..workload import KEYSPACE
from . import Context, Result, run_watched

TITLE = "sluice-worker (1 process)"
TITLES = {
    "json": TITLE,
    "avro": "sluice-worker, Avro values (schema registry)",
    "two_tables": "sluice-worker, two tables (+ by department)",
}
WORKER = Path(sys.executable).with_name("sluice-worker")
Variant = Literal["json", "avro", "two_tables"]


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


def _two_tables(second: str) -> Callable[[dict[str, Any]], None]:
    """The example's table, and a by-department one (its partition per department, rows by id) beside it."""

    def shape(spec: dict[str, Any]) -> None:
        transform, sink = spec.pop("transform"), spec["sink"]
        fields = transform["fields"]
        by_department = {
            "fields": {"id": fields["id"], "item_name": {**fields["item_name"], "write": False},
                       "price": fields["price"]},
            "lookups": transform["lookups"],
            "required": ["id"],
        }  # fmt: skip
        spec["tables"] = [{"table": sink.pop("table"), "transform": transform},
                          {"table": second, "transform": by_department}]  # fmt: skip
        sink.pop("createTable", None)

    return shape


def run(
    ctx: Context,
    label: str = "sluice",
    changes: Mapping[str, Any] | None = None,
    on_start: Callable[[int], None] | None = None,
    worker: Path = WORKER,
    variant: Variant = "json",
) -> Result:
    """Runs the worker until every row is durable; `on_start(pid)` is called when it has its first message."""
    table = ctx.tables.fresh(f"{label}_{ctx.run_id}")
    name = f"bench-{label}-{ctx.run_id}".replace("_", "-")
    second = ctx.tables.fresh_by_department(f"{label}_dept_{ctx.run_id}") if variant == "two_tables" else None
    shape = _avro(ctx) if variant == "avro" else _two_tables(second) if second else None
    path = manifest(ctx, name, table, changes or {}, shape)
    port = free_port()
    env = {
        **os.environ,
        "SLUICE_KAFKA_BOOTSTRAP_SERVERS": ctx.bootstrap,
        "SLUICE_CASSANDRA_CONTACT_POINTS": ctx.contact_point,
        "SLUICE_HTTP_HOST": "127.0.0.1",
        "SLUICE_HTTP_PORT": str(port),
    }
    log = ctx.workdir / f"{label}.log"
    progress = Progress(
        f"http://127.0.0.1:{port}/metrics",
        "sluice_messages_consumed_total",
        "sluice_rows_written_total",
        "sluice_write_latency_seconds_count",  # one sample per write request answered
    )
    argv = [str(worker), "--pipeline", str(path)]
    tables = 2 if second else 1  # the window ends when every table has every row
    window, cpu, memory, per_request = run_watched(replace(ctx, messages=ctx.messages * tables), "sluice-worker", argv,
                                                   progress, log, env=env, on_start=on_start)  # fmt: skip
    window = replace(window, count=ctx.messages)
    rows = ctx.tables.check(table, ctx.messages, ctx.expected)
    if second:
        ctx.tables.check_by_department(second, ctx.expected)
    detail = ", ".join(f"{k}={v}" for k, v in (changes or {}).items()) or "the example's delivery settings"
    if worker != WORKER:
        detail += f", {worker}"
    return Result(label, TITLES[variant] if worker == WORKER else f"{TITLE}, {worker.parent.parent.name}", window,
                  cpu, rows, detail=detail, rows_per_message=tables, memory=memory,
                  rows_per_request=per_request)  # fmt: skip
