"""Benthos v4.27.0 (MIT) doing the same job: kafka_franz in, a bloblang mapping with the example's department
table, the same INSERT ... USING TIMESTAMP through its cassandra output. Built by hack/build-benthos.sh."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import yaml
from sluice_stack.process import free_port

from ..measure import Progress
from ..workload import REPO_DIR, Pipeline
from . import Context, Result, Watched, run_watched, tail, tuning
from .tuning import Setting

VERSION = "4.27.0"
TITLE = f"Benthos {VERSION} (1 process)"
BUILD = REPO_DIR / "hack" / "build-benthos.sh"


def build(log: Path) -> tuple[Path | None, float, str]:
    """Builds Benthos (or finds it cached): (binary or None, seconds this call took, why it failed)."""
    started = time.monotonic()
    with open(log, "wb") as out:
        done = subprocess.run(["bash", str(BUILD)], stdout=subprocess.PIPE, stderr=out, env=None)
    seconds = time.monotonic() - started
    binary = Path(done.stdout.decode().strip().splitlines()[-1]) if done.returncode == 0 and done.stdout else None
    if binary is None or not binary.exists():
        return None, seconds, f"hack/build-benthos.sh failed ({done.returncode}): {tail(log, 5)}"
    return binary, seconds, ""


class _Block(str):
    """A string YAML writes as a literal block, so the generated config reads like a hand-written one."""


yaml.SafeDumper.add_representer(
    _Block, lambda dumper, text: dumper.represent_scalar("tag:yaml.org,2002:str", text, style="|")
)


def department_mapping(pipeline: Pipeline) -> str:
    """The example's lookup as a bloblang `match`."""
    cases = "".join(f"\n  {json.dumps(item)} => {json.dumps(dept)}," for item, dept in pipeline.departments.items())
    return f"match this.item.name {{{cases}\n  _ => {json.dumps(pipeline.default_department)},\n}}"


def config(
    ctx: Context, table: str, port: int, batch: int, label: str = "benthos", in_flight: int | None = None
) -> dict[str, Any]:
    """The same job as the worker's: same columns, same idempotent insert, same consistency and in-flight cap.

    Benthos only has the record time in whole seconds (`kafka_timestamp_unix`), so event_time and the write
    timestamp are that second (plus the offset tie-break, as the worker does with milliseconds).
    """
    spec = ctx.pipeline.spec
    mapping = "\n".join(
        [
            "root.id = this.id",
            "root.item_name = this.item.name",
            "root.price = this.item.price.number()",
            f"root.department = {department_mapping(ctx.pipeline)}",
            "root.event_time = @kafka_timestamp_unix",
            "root.write_time = @kafka_timestamp_unix * 1000000 + @kafka_offset % 1000",
        ]
    )
    columns = ", ".join(f"this.{c}" for c in ctx.pipeline.insert_columns)
    output: dict[str, Any] = {
        "addresses": [ctx.contact_point],
        "query": ctx.pipeline.insert_cql(table),
        "args_mapping": f"root = [{columns}, this.write_time]",
        "consistency": spec["sink"]["consistency"],
        "logged_batch": False,
        "max_in_flight": in_flight or spec["delivery"]["maxInFlight"],
        "timeout": "10s",  # the worker's SLUICE_WRITE_TIMEOUT_SECONDS; Benthos's 600 ms default retries on a busy box
    }
    if batch > 1:
        output["batching"] = {"count": batch, "period": "50ms"}
    return {
        "http": {"address": f"127.0.0.1:{port}"},
        "logger": {"level": "WARN", "format": "logfmt"},
        "metrics": {"prometheus": {}},
        "input": {
            "kafka_franz": {
                "seed_brokers": [ctx.bootstrap],
                "topics": [ctx.topic],
                "consumer_group": f"bench-{label}-{ctx.run_id}",
                "start_from_oldest": True,
            }
        },
        "pipeline": {"processors": [{"mapping": _Block(mapping)}]},
        "output": {"cassandra": output},
    }


def run(ctx: Context, binary: Path, run: int = 1) -> Result:
    """Benthos as commonly configured (one row a request) on the run's topic until every row is durable; `run` > 1
    repeats it (own group and table)."""
    label = "benthos" + (f"_run{run}" if run > 1 else "")
    return _measured(ctx, binary, "benthos", label, TITLE, "single-row inserts", batch=1)


TUNED_TITLE = f"Benthos {VERSION}, tuned batching"


def search(ctx: Context, binary: Path, settings: Sequence[Setting], trial_rows: int) -> list[dict[str, Any]]:
    """Each setting on the first `trial_rows` rows of the topic (own group and table, nothing checked)."""

    def trial(setting: Setting) -> float:
        label = f"benthos_trial_b{setting.batch}_f{setting.in_flight}"
        watched, _ = _window(replace(ctx, messages=trial_rows), binary, label, setting.batch, setting.in_flight)
        return watched.window.rate

    return tuning.search("benthos", settings, trial)


def run_tuned(ctx: Context, binary: Path, best: Setting, run: int = 1, trials: Sequence[dict[str, Any]] = ()) -> Result:
    """Benthos at the setting the search found, on every message, rows checked."""
    label = "benthos_tuned" + (f"_run{run}" if run > 1 else "")
    result = _measured(ctx, binary, "benthos_tuned", label, TUNED_TITLE, str(best), best.batch, best.in_flight)
    return replace(result, extra={"best": {"batch": best.batch, "in_flight": best.in_flight}, "trials": list(trials)})


def _measured(
    ctx: Context, binary: Path, key: str, label: str, title: str, detail: str, batch: int, in_flight: int | None = None
) -> Result:
    watched, table = _window(ctx, binary, label, batch, in_flight)
    rows = ctx.tables.check(table, ctx.messages, ctx.expected)
    return Result(key, title, watched.window, watched.cpu, rows, detail=detail, memory=watched.memory,
                  rows_per_request=watched.rows_per_request, batch_warnings=watched.batch_warnings)  # fmt: skip


def _window(ctx: Context, binary: Path, label: str, batch: int, in_flight: int | None) -> tuple[Watched, str]:
    """One Benthos process on a fresh table and group until `ctx.messages` rows are durable."""
    table = ctx.tables.fresh(f"{label}_{ctx.run_id}")
    port = free_port()
    path = ctx.workdir / f"{label}.yaml"
    path.write_text(yaml.safe_dump(config(ctx, table, port, batch, label, in_flight), sort_keys=False))
    log = ctx.workdir / f"{label}.log"
    progress = Progress(f"http://127.0.0.1:{port}/metrics", "input_received", "output_sent", "output_batch_sent")
    return run_watched(ctx, "Benthos", [str(binary), "-c", str(path)], progress, log), table
