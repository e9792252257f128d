"""`make bench`: Sluice against this machine's limits and against its peers, all in one run.

Produces N Gophers R Us store events to a fresh topic, then measures, each with a table of its own that
must hold exactly the expected rows: the consume ceiling, the driver ceiling, one sluice-worker (as shipped, and at
the best setting of the search tuned Benthos gets), its Avro, two-table and by-department variants, Benthos as
commonly configured and Benthos at the batching a search found best, and the naive loop; what a row costs Cassandra
by the shape of its requests; then the operator at 200 and 1,000 DataPipelines. The systems the ratios compare (the
batched driver ceiling, Sluice, both Benthos, tuned Sluice) run --rounds times, interleaved, and each reports its
median run.
Prints a table, then on the last line one JSON object. Exits non-zero if any count is wrong or a system fails.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import yaml
from sluice_stack import Stack  # PYTHONPATH=hack, as the Makefile sets it
from sluice_stack.kafka import log_clients_to

from . import profile as profiling
from . import recovery as recovering
from . import report
from .measure import BenchError
from .placement import Placement, pinned
from .systems import Context, Result, benthos, consume, driver, naive, operator, shapes, sluice, tuning
from .systems.operator import OperatorResult
from .systems.tuning import Setting
from .tables import Tables
from .workload import (
    REPO_DIR,
    UNKNOWN_ITEMS,
    Pipeline,
    as_avro,
    create_topic,
    delete_topic,
    expected_departments,
    make_events,
    produce,
)

CONTROL_PLANE = ("kube-apiserver", "etcd", "kube-controller-manager")  # charged with their CPU of the operator's run
SYSTEMS = (
    "consume",
    "driver",
    "sluice",
    "avro",
    "tables",
    "department",
    "benthos",
    "naive",
    "shapes",
    "recovery",
    "operator",
)
# What the ratios compare: on a 2-core machine shared with Cassandra one run of each varies by about 10%, so
# these run --rounds times, one after another in each round, and each reports its median run. sluice_before
# (with --before-worker) is Sluice as it was, run right after Sluice in each round.
REPEATED = ("driver_batched", "sluice", "sluice_before", "benthos", "benthos_tuned", "sluice_tuned")
SEED = 6
TRIAL_ROWS = {False: 20_000, True: 5_000}  # each tuning trial's messages, by --quick


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="make bench", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--messages", "-n", type=int, help="store events (default 200,000; 20,000 with --quick)")
    parser.add_argument(
        "--quick", action="store_true",
        help="CI size: 20,000 events, naive 1,000, driver search 64/256, operator 200 pipelines",
    )  # fmt: skip
    parser.add_argument("--partitions", type=int, default=3, help="of the topic (default 3)")
    parser.add_argument("--naive-messages", type=int, default=10_000, help="the naive loop's prefix (default 10,000)")
    parser.add_argument("--systems", default=",".join(SYSTEMS), help=f"subset of {','.join(SYSTEMS)}")
    parser.add_argument("--operator-sizes", default="200,1000", help="DataPipelines per step (default 200,1000)")
    parser.add_argument("--operator-replicas", type=int, default=0, help="spec.replicas of those (default 0)")
    parser.add_argument(
        "--placement", choices=("pinned", "shared"), default="pinned",
        help="pinned (default): Cassandra on CPUs of its own, Kafka and each measured client on the others "
        "(needs 2+ CPUs); shared: everything on every CPU",
    )  # fmt: skip
    parser.add_argument(
        "--rounds", type=int, help="runs of the batched driver ceiling, Sluice and Benthos (default 3; 1 with --quick)"
    )
    parser.add_argument("--stack", type=Path, help="a running stack's root (default: $SLUICE_STACK_DIR or .stack, "
                        "else a stack of its own in a temporary folder, stopped at the end)")  # fmt: skip
    parser.add_argument("--out", type=Path, help="logs and configs of the run (default: a temporary folder)")
    parser.add_argument(
        "--sluice-set", action="append", default=[], metavar="PATH=YAML",
        help="change the worker's spec for an experiment, e.g. delivery.maxInFlight=128 (repeatable)",
    )  # fmt: skip
    parser.add_argument(
        "--worker", type=Path, default=sluice.WORKER, help="a candidate sluice-worker executable to measure instead"
    )
    parser.add_argument(
        "--before-worker", type=Path,
        help="also measure this sluice-worker (e.g. a venv of an earlier commit) in every round, right after the "
        "current one: the plain JSON path (and the two-table row) before and after a change, in one run",
    )  # fmt: skip
    parser.add_argument("--profile", action="store_true", help="one more sluice-worker run under py-spy")
    parser.add_argument("--keep", action="store_true", help="keep the topic and tables")
    args = parser.parse_args(argv)
    if args.messages is None:
        args.messages = 20_000 if args.quick else 200_000
    if args.rounds is None:
        args.rounds = 1 if args.quick else 3
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    if args.placement == "pinned" and len(os.sched_getaffinity(0)) < 2:
        parser.error("--placement pinned needs at least 2 CPUs; use --placement shared")
    if args.quick:
        args.naive_messages, args.operator_sizes = min(args.naive_messages, 300), "200"
    args.systems = [s.strip() for s in args.systems.split(",") if s.strip()]
    if unknown := set(args.systems) - set(SYSTEMS):
        parser.error(f"unknown system(s): {', '.join(sorted(unknown))}")
    args.operator_sizes = [int(s) for s in args.operator_sizes.split(",") if s.strip()]
    args.sluice_set = {path: yaml.safe_load(value) for path, _, value in (c.partition("=") for c in args.sluice_set)}
    return args


@contextlib.contextmanager
def local_stack(root: Path | None, groups: list[str]) -> Iterator[Stack]:
    """The running stack at `root` (given, $SLUICE_STACK_DIR or .stack), else one of our own, stopped at the end."""
    default = Path(os.environ.get("SLUICE_STACK_DIR", REPO_DIR / ".stack"))
    running = Stack.attach(root or default)
    if running is None and root is not None:
        raise SystemExit(f"no running stack at {root}")
    if running is not None:
        print(f"using the stack at {running.root}", file=sys.stderr)
        running.up(groups)  # adds a missing group, as the test fixtures do
        yield running
        return
    own = Stack(Path(tempfile.mkdtemp(prefix="sluice-bench-stack-")))
    print(f"starting a stack of its own in {own.root}", file=sys.stderr)
    try:
        own.up(groups)
        yield own
    finally:
        own.down()


def measure(args: argparse.Namespace) -> int:
    workdir = args.out or Path(tempfile.mkdtemp(prefix="sluice-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    print(f"logs and configs: {workdir}", file=sys.stderr)
    log_clients_to(workdir / "kafka-clients.log")
    wanted = set(args.systems)
    load_before = os.getloadavg()[0]

    benthos_binary, benthos_seconds, benthos_error = None, None, None
    if "benthos" in wanted:
        print("building Benthos (cached after the first time) ...", file=sys.stderr)
        benthos_binary, benthos_seconds, benthos_error = benthos.build(workdir / "benthos-build.log")
        benthos_error = benthos_error or None

    groups = ["kafka", "cassandra", *(["kube"] if "operator" in wanted else [])]
    groups += ["registry"] if "avro" in wanted else []
    with local_stack(args.stack, groups) as stack:
        env = stack.env()
        pipeline = Pipeline.example()
        items = [*pipeline.departments, *UNKNOWN_ITEMS]
        events = make_events(args.messages, items, SEED)
        run_id = f"{time.strftime('%H%M%S')}_{uuid.uuid4().hex[:4]}"
        topic = f"bench-events-{run_id}"
        bootstrap, contact_point = env["KAFKA_BOOTSTRAP_SERVERS"], env["CASSANDRA_CONTACT_POINTS"]
        create_topic(bootstrap, topic, args.partitions)
        if wanted - {"operator", "recovery", "shapes"}:
            produce(bootstrap, topic, events)
        avro_topic, registry_url = None, env.get("SCHEMA_REGISTRY_URL")
        if "avro" in wanted and registry_url:
            avro_topic = f"{topic}-avro"
            create_topic(bootstrap, avro_topic, args.partitions)
            produce(bootstrap, avro_topic, as_avro(events, registry_url, f"{avro_topic}-value"))
        tables = Tables(contact_point, pipeline)
        ctx = Context(
            bootstrap=bootstrap,
            contact_point=contact_point,
            topic=topic,
            partitions=args.partitions,
            messages=args.messages,
            items=items,
            seed=SEED,
            expected=expected_departments(events, pipeline),
            pipeline=pipeline,
            tables=tables,
            workdir=workdir,
            run_id=run_id,
            server_pids={name: int(stack.services[name].pid or 0) for name in ("kafka", "cassandra")},
            cassandra_log=Path(stack.services["cassandra"].log_path),
            avro_topic=avro_topic,
            registry_url=registry_url,
        )
        del events
        results: dict[str, Result] = {}
        operator_result: OperatorResult | None = None
        operator_error: str | None = "not measured (--systems)"
        profile_text: str | None = None
        recovery: recovering.Recovery | None = None
        by_shape: shapes.Shapes | None = None
        placement = Placement.split(os.sched_getaffinity(0)) if args.placement == "pinned" else None
        try:
            with pinned(placement, ctx.server_pids["cassandra"], ctx.server_pids["kafka"]):
                results = measure_systems(ctx, args, benthos_binary)
                if "shapes" in wanted:
                    print("measuring what a row costs Cassandra by request shape ...", file=sys.stderr)
                    by_shape = shapes.measure(ctx, 3_000 if args.quick else 100_000, args.rounds)
            if "recovery" in wanted:  # unpinned, as servers restart; after the others, as it restarts Kafka
                print("measuring recovery ...", file=sys.stderr)
                recovery = recovering.measure(ctx, stack, args.rounds)
            if "operator" in wanted:
                try:
                    kube_env = {k: v for k, v in env.items() if k in ("KUBECONFIG", "PATH")}
                    servers = operator.Servers(bootstrap, contact_point, topic)
                    operator_result = operator.run(
                        kube_env,
                        servers,
                        args.operator_sizes,
                        run_id.replace("_", "-"),
                        workdir,
                        args.operator_replicas,
                        {name: int(stack.services[name].pid or 0) for name in CONTROL_PLANE},
                    )
                    operator_error = None
                except Exception as error:  # the operator is optional: report why it is null
                    operator_error = f"{type(error).__name__}: {error}".splitlines()[0][:300]
                    print(f"operator: {error}", file=sys.stderr)
            if args.profile:
                profile_text = run_profile(ctx, args.sluice_set, args.worker)
        finally:
            if not args.keep:
                tables.drop_all()
                delete_topic(bootstrap, topic)
                if avro_topic:
                    delete_topic(bootstrap, avro_topic)
            tables.close()

    summary = report.summary(
        results, args.messages, args.partitions, benthos_error, benthos_seconds, operator_result, operator_error,
        str(workdir / "profile.txt") if profile_text else None,
    )  # fmt: skip
    if recovery is not None:
        summary |= recovery.summary()
    if by_shape is not None:
        summary |= by_shape.summary()
    summary["rounds"] = args.rounds
    summary["placement"] = placement.describe() if placement else "shared: every process on every CPU"
    print()
    print(f"Sluice benchmark: {args.messages:,} store events, {args.partitions} partitions, {os.cpu_count()} CPUs, "
          f"{time.strftime('%Y-%m-%d %H:%M')}, load average before {load_before:.1f}")  # fmt: skip
    rounds = f"; the batched driver, Sluice and Benthos: median of {args.rounds} runs" if args.rounds > 1 else ""
    print(f"{summary['placement']}{rounds}")
    print(report.table(results, summary, operator_result))
    if by_shape is not None:
        print(by_shape.table())
    if recovery is not None:
        print(recovery.table())
    if profile_text:
        print(f"\nprofile of one more sluice-worker run ({workdir / 'profile.txt'}):\n{profile_text}")
    print(json.dumps(summary))
    return 0


def measure_systems(ctx: Context, args: argparse.Namespace, benthos_binary: Path | None) -> dict[str, Result]:
    """Every wanted system but the operator, in order, then the further --rounds of the REPEATED ones."""
    wanted = set(args.systems)
    results: dict[str, Result] = {}
    tables = ctx.tables
    steps: dict[str, Callable[[], list[Result]]] = {
        "consume": lambda: [consume.run(ctx)],
        "driver": lambda: driver.run(
            ctx,
            driver.QUICK_CONCURRENCY if args.quick else driver.CONCURRENCY,
            TRIAL_ROWS[args.quick],
        ),
        "sluice": lambda: [sluice.run(ctx, changes=args.sluice_set, worker=args.worker)],
    }
    if args.before_worker is not None:
        before = args.before_worker
        steps["sluice_before"] = lambda: [sluice.run(ctx, "sluice_before", args.sluice_set, worker=before)]
    steps["avro"] = lambda: [sluice.run(ctx, "avro", args.sluice_set, worker=args.worker, variant="avro")]
    steps["tables"] = lambda: [sluice.run(ctx, "two_tables", args.sluice_set, worker=args.worker,
                                          variant="two_tables")]  # fmt: skip
    steps["department"] = lambda: [sluice.run(ctx, "by_department", args.sluice_set, worker=args.worker,
                                              variant="by_department")]  # fmt: skip
    if args.before_worker is not None:
        before = args.before_worker
        steps["tables_before"] = lambda: [sluice.run(ctx, "two_tables_before", args.sluice_set, worker=before,
                                                     variant="two_tables")]  # fmt: skip
        steps["department_before"] = lambda: [sluice.run(ctx, "by_department_before", args.sluice_set,
                                                         worker=before, variant="by_department")]  # fmt: skip
    if benthos_binary is not None:
        binary = benthos_binary
        steps["benthos"] = lambda: [benthos.run(ctx, binary)]
        steps["benthos_tuned"] = lambda: [tuned_benthos(ctx, binary, args.quick)]
    steps["sluice_tuned"] = lambda: [tuned_sluice(ctx, args.quick, args.worker)]
    steps["naive"] = lambda: [naive.run(ctx, args.naive_messages)]
    for key, step in steps.items():
        if key.split("_")[0] not in wanted:
            continue
        print(f"measuring {key} ...", file=sys.stderr)
        measured = step()
        for result in measured:
            results[result.key] = result
            print(f"  {result.title}: {_rate_and_cpu(result)}", file=sys.stderr)
        if not args.keep:
            tables.drop_all()  # so compaction of earlier tables does not slow later systems
    runs = {key: [results[key]] for key in REPEATED if key in results}
    for number in range(2, args.rounds + 1):
        print(f"round {number} of {args.rounds} ...", file=sys.stderr)
        for result in repeat_round(ctx, args, results, benthos_binary, number):
            runs[result.key].append(result)
            print(f"  {result.title}: {_rate_and_cpu(result)}", file=sys.stderr)
            if not args.keep:
                tables.drop_all()
    results |= {key: median_run(measured) for key, measured in runs.items()}
    return results


def _rate_and_cpu(result: Result) -> str:
    return f"{result.window.rate:,.0f} msgs/s, {result.cpu_per_1k:.4f} CPU s/1k"


def repeat_round(
    ctx: Context, args: argparse.Namespace, first: dict[str, Result], benthos_binary: Path | None, number: int
) -> Iterator[Result]:
    """One more run of each REPEATED system measured in the first round, in the same order."""
    if "driver_batched" in first:
        yield driver.rerun_batched(ctx, first["driver_batched"].extra["best"], number)
    if "sluice" in first:
        again = sluice.run(ctx, f"sluice_run{number}", changes=args.sluice_set, worker=args.worker)
        yield replace(again, key="sluice")
    if "sluice_before" in first and args.before_worker is not None:
        again = sluice.run(ctx, f"sluice_before_run{number}", args.sluice_set, worker=args.before_worker)
        yield replace(again, key="sluice_before")
    if "benthos" in first and benthos_binary is not None:
        yield benthos.run(ctx, benthos_binary, run=number)
    if "benthos_tuned" in first and benthos_binary is not None:
        tuned = first["benthos_tuned"].extra
        yield benthos.run_tuned(ctx, benthos_binary, Setting(**tuned["best"]), number, tuned["trials"])
    if "sluice_tuned" in first:
        tuned = first["sluice_tuned"].extra
        yield sluice.run_tuned(ctx, Setting(**tuned["best"]), number, tuned["trials"], args.worker)


def tuned_benthos(ctx: Context, binary: Path, quick: bool) -> Result:
    """Benthos batching at the best batch size and in-flight count of a search on the first rows of the topic."""
    trials = benthos.search(ctx, binary, tuning.grid(quick), trial_rows=TRIAL_ROWS[quick])
    return benthos.run_tuned(ctx, binary, Setting(trials[0]["batch"], trials[0]["in_flight"]), trials=trials)


def tuned_sluice(ctx: Context, quick: bool, worker: Path) -> Result:
    """The worker at the best of the same settings, found by the same search: tuned against tuned."""
    trials = sluice.search(ctx, tuning.grid(quick), trial_rows=TRIAL_ROWS[quick], worker=worker)
    return sluice.run_tuned(ctx, Setting(trials[0]["batch"], trials[0]["in_flight"]), trials=trials, worker=worker)


def median_run(runs: list[Result]) -> Result:
    """The run with the median rate (the lower middle one of an even count), noting every run's rate."""
    middle = sorted(runs, key=lambda r: r.window.rate)[(len(runs) - 1) // 2]
    if len(runs) == 1:
        return middle
    rates = [round(r.window.rate) for r in runs]
    shown = " / ".join(f"{rate:,}" for rate in rates)
    return replace(middle, detail=f"{middle.detail}; median of {shown}", extra={**middle.extra, "runs": rates})


def run_profile(ctx: Context, changes: dict[str, object], worker: Path) -> str:
    """A separate sluice-worker run with py-spy attached from its first message to its last row."""
    recorder = profiling.Recorder(ctx.workdir / "py-spy.txt", gil_only=True)
    print("profiling one more sluice-worker run with py-spy ...", file=sys.stderr)
    try:
        result = sluice.run(ctx, "sluice_profiled", changes, on_start=recorder.attach, worker=worker)
    finally:
        recorder.stop()
    profile = profiling.Profile.read(recorder.output, "samples of the thread holding the GIL")
    held = profile.total / (result.window.seconds * recorder.rate)
    text = f"the GIL was held {held:.0%} of the window ({result.window.rate:,.0f} msgs/s under py-spy)\n"
    text += profile.report()
    (ctx.workdir / "profile.txt").write_text(text + "\n")
    return text


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        return measure(args)
    except BenchError as error:
        print(f"\nbench FAILED: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
