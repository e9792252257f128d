"""Sluice: one `sluice-worker --pipeline FILE` process running the Gophers R Us example on the run's topic."""

from __future__ import annotations

import copy
import os
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import yaml
from sluice_stack.process import free_port

from ..measure import Progress
from ..workload import KEYSPACE
from . import Context, Result, run_watched

TITLE = "sluice-worker (1 process)"
WORKER = Path(sys.executable).with_name("sluice-worker")


def manifest(ctx: Context, name: str, table: str, changes: Mapping[str, Any]) -> Path:
    """examples/gophers-r-us.yaml as shipped (same delivery settings), on this run's topic and table, with
    `changes` (`{"delivery.maxInFlight": 128}`: dotted paths in the spec) for tuning experiments."""
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
    path = ctx.workdir / f"{name}.yaml"
    path.write_text(yaml.safe_dump(pipeline, sort_keys=False))
    return path


def run(
    ctx: Context,
    label: str = "sluice",
    changes: Mapping[str, Any] | None = None,
    on_start: Callable[[int], None] | None = None,
    worker: Path = WORKER,
) -> Result:
    """Runs the worker until every row is durable; `on_start(pid)` is called when it has its first message."""
    table = ctx.tables.fresh(f"{label}_{ctx.run_id}")
    name = f"bench-{label}-{ctx.run_id}".replace("_", "-")
    path = manifest(ctx, name, table, changes or {})
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
        f"http://127.0.0.1:{port}/metrics", "sluice_messages_consumed_total", "sluice_rows_written_total"
    )
    argv = [str(worker), "--pipeline", str(path)]
    window, cpu = run_watched(ctx, "sluice-worker", argv, progress, log, env=env, on_start=on_start)
    rows = ctx.tables.check(table, ctx.messages, ctx.expected)
    detail = ", ".join(f"{k}={v}" for k, v in (changes or {}).items()) or "the example's delivery settings"
    if worker != WORKER:
        detail += f", {worker}"
    return Result(label, TITLE, window, cpu, rows, detail=detail)
