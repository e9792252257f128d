"""Benthos v4.27.0 (MIT) doing the same job: kafka_franz in, a bloblang mapping with the example's department
table, the same INSERT ... USING TIMESTAMP through its cassandra output. Built by hack/build-benthos.sh."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import yaml
from sluice_stack.process import free_port

from ..measure import CpuUse, Progress, Window
from ..workload import REPO_DIR, Pipeline
from . import Context, Memory, Result, run_watched, tail

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


@dataclass(frozen=True)
class Setting:
    """How the tuned Benthos sends: rows per unlogged batch (its `batching.count`) and batches in flight."""

    batch: int
    in_flight: int

    def __str__(self) -> str:
        return f"unlogged batches of {self.batch}, {self.in_flight} in flight"


TUNED_TITLE = f"Benthos {VERSION}, tuned batching"
# The search's grid: Cassandra warns past 10 partitions a batch and refuses past 50 KiB (about 300 rows of 168 B).
BATCHES, IN_FLIGHT = (10, 25, 50, 100), (8, 32, 128)
QUICK_BATCHES, QUICK_IN_FLIGHT = (10, 50), (32,)


def search(ctx: Context, binary: Path, settings: Sequence[Setting], trial_rows: int) -> list[dict[str, Any]]:
    """Each setting on the first `trial_rows` rows of the topic (own group and table, nothing checked): the
    driver ceiling's search, for Benthos. Returns the trials, fastest first."""
    trials = []
    for setting in settings:
        label = f"benthos_trial_b{setting.batch}_f{setting.in_flight}"
        rate = _window(replace(ctx, messages=trial_rows), binary, label, setting.batch, setting.in_flight)[0].rate
        trials.append({"batch": setting.batch, "in_flight": setting.in_flight, "rate": round(rate)})
        print(f"benthos trial {setting}: {rate:,.0f} msgs/s", file=sys.stderr)
    return sorted(trials, key=lambda t: -t["rate"])


def run_tuned(ctx: Context, binary: Path, best: Setting, run: int = 1, trials: Sequence[dict[str, Any]] = ()) -> Result:
    """Benthos at the setting the search found, on every message, rows checked."""
    label = "benthos_tuned" + (f"_run{run}" if run > 1 else "")
    result = _measured(ctx, binary, "benthos_tuned", label, TUNED_TITLE, str(best), best.batch, best.in_flight)
    return replace(result, extra={"best": {"batch": best.batch, "in_flight": best.in_flight}, "trials": list(trials)})


def _measured(
    ctx: Context, binary: Path, key: str, label: str, title: str, detail: str, batch: int, in_flight: int | None = None
) -> Result:
    window, cpu, memory, per_request, table = _window(ctx, binary, label, batch, in_flight)
    rows = ctx.tables.check(table, ctx.messages, ctx.expected)
    return Result(key, title, window, cpu, rows, detail=detail, memory=memory, rows_per_request=per_request)


def _window(
    ctx: Context, binary: Path, label: str, batch: int, in_flight: int | None
) -> tuple[Window, CpuUse, Memory | None, float | None, str]:
    """One Benthos process on a fresh table and group until `ctx.messages` rows are durable."""
    table = ctx.tables.fresh(f"{label}_{ctx.run_id}")
    port = free_port()
    path = ctx.workdir / f"{label}.yaml"
    path.write_text(yaml.safe_dump(config(ctx, table, port, batch, label, in_flight), sort_keys=False))
    log = ctx.workdir / f"{label}.log"
    progress = Progress(f"http://127.0.0.1:{port}/metrics", "input_received", "output_sent", "output_batch_sent")
    window, cpu, memory, per_request = run_watched(ctx, "Benthos", [str(binary), "-c", str(path)], progress, log)
    return window, cpu, memory, per_request, table
