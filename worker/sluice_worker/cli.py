"""`sluice-worker`: run a DataPipeline manifest (`--pipeline FILE`), or re-publish its dead letters."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the real imports happen in main(), after the signal handlers are in place
    from .metrics import Health, WorkerMetrics
    from .model import DataPipeline
    from .pipeline import PipelineWorker
    from .settings import WorkerSettings

EXIT_INVALID = 2
log = logging.getLogger("sluice.worker")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["replay-dlq"]:
        return _replay(argv[1:])
    parser = argparse.ArgumentParser(
        prog="sluice-worker",
        description="Consume Kafka, transform, write Cassandra; commit offsets only after durable writes. "
        "`sluice-worker replay-dlq --help` re-publishes dead letters.",
    )
    _add_pipeline_args(parser)
    args = parser.parse_args(argv)
    # Signals first: Kubernetes may stop a pod that is still starting, and that must still exit cleanly.
    stop = _StopSignals()
    from .metrics import Health, WorkerMetrics, serve_http
    from .model import PipelineError
    from .settings import WorkerSettings

    settings = WorkerSettings()
    _configure_logging(settings)
    try:
        pipeline = _load(args.pipeline, args.name, args.namespace)
    except PipelineError as exc:
        return _refuse(settings, f"sluice-worker: invalid pipeline {args.pipeline}:\n{exc}")
    metrics, health = WorkerMetrics(), Health()
    pipeline = settings.apply_overrides(pipeline)
    source, sink = pipeline.spec.source, pipeline.spec.sink
    tables = ",".join(target.name for target in pipeline.spec.targets())
    log.info("starting pipeline=%s/%s kafka=%s topics=%s group=%s cassandra=%s tables=%s",
             pipeline.metadata.namespace, pipeline.metadata.name, source.bootstrap_servers, ",".join(source.topics),
             pipeline.group_id, ",".join(sink.contact_points), tables)  # fmt: skip
    try:
        worker = build_worker(pipeline, settings, metrics, health)
    except PipelineError as exc:  # the Python hook cannot be loaded
        return _refuse(settings, f"sluice-worker: invalid pipeline {args.pipeline}:\n{exc}")
    stop.forward_to(worker.request_stop)
    server = serve_http(settings.http_port, metrics, health, settings.http_host) if settings.http_port else None
    try:
        code = worker.run()
    finally:
        if server is not None:
            server.shutdown()
    # Everything durable is committed and the clients are closed: exit now, without waiting for library
    # threads that outlived the shutdown deadline (e.g. the driver's reconnection attempt to a hung node).
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def build_worker(
    pipeline: DataPipeline, settings: WorkerSettings, metrics: WorkerMetrics, health: Health
) -> PipelineWorker:
    """The composition root: the sink, the transform with the user's hook, and the loop that drives them.

    `pipeline` has the environment's overrides applied. Imported here, late: `--help` and bad files stay fast.
    Raises PipelineError if the Python hook cannot be loaded.
    """
    from .formats import decoder_for
    from .hooks import load_hook
    from .pipeline import PipelineWorker
    from .sink import CassandraSink
    from .transform import compile_transform

    spec = pipeline.spec
    targets = spec.targets()
    sink = CassandraSink(spec.sink, targets, settings.write_timeout_seconds, settings.credentials_dir)
    transforms = [compile_transform(target.transform, load_hook(target.transform)) for target in targets]
    decode = decoder_for(spec.source, settings.credentials_dir)
    return PipelineWorker(pipeline, sink, transforms, settings, metrics, health, decode)


class _StopSignals:
    """The exit policy: SIGTERM or SIGINT asks the worker to stop (one that comes before the worker exists is
    kept for it); a second one exits the process at once."""

    def __init__(self) -> None:
        self._requested = False
        self._forward: Callable[[], None] | None = None
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        log.info("received %s", signal.Signals(signum).name)
        if self._requested:
            log.warning("second stop signal: exiting at once")
            os._exit(128 + signum)
        self._requested = True
        if self._forward is not None:
            self._forward()

    def forward_to(self, request_stop: Callable[[], None]) -> None:
        self._forward = request_stop
        if self._requested:
            request_stop()


def _replay(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="sluice-worker replay-dlq",
        description="Re-publish dead letters to their source topic (once the pipeline can take them), "
        "at a bounded rate, committing as it goes.",
    )
    _add_pipeline_args(parser)
    parser.add_argument("--rate", type=float, default=100.0, help="most messages per second (default 100)")
    parser.add_argument(
        "--idle-seconds", type=float, default=5.0, help="stop after this long without a dead letter (default 5)"
    )
    args = parser.parse_args(argv)
    from .model import PipelineError
    from .settings import WorkerSettings

    settings = WorkerSettings()
    _configure_logging(settings)
    try:
        pipeline = _load(args.pipeline, args.name, args.namespace)
    except PipelineError as exc:
        return _refuse(settings, f"sluice-worker: invalid pipeline {args.pipeline}:\n{exc}")
    from .replay import replay_dead_letters

    overridden = settings.apply_overrides(pipeline)
    count = replay_dead_letters(overridden, settings, rate=args.rate, idle_seconds=args.idle_seconds)
    print(f"replayed {count} dead letters")
    return 0


def _add_pipeline_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--pipeline", type=Path, required=True, help="a DataPipeline manifest (as for kubectl apply) or just its spec"
    )
    parser.add_argument("--name", help="the pipeline's name, when FILE holds only a spec")
    parser.add_argument("--namespace", default="default", help="with --name (default: default)")


def _load(path: Path, name: str | None, namespace: str) -> DataPipeline:
    """The pipeline in `path`. Raises PipelineError naming each invalid field."""
    from .manifest import load_pipeline

    return load_pipeline(path, name=name, namespace=namespace)


def _refuse(settings: WorkerSettings, message: str) -> int:
    """Says why the pipeline cannot run, on stderr and, in a pod, as the container's termination message."""
    print(message, file=sys.stderr)
    if settings.termination_log.exists():
        try:
            settings.termination_log.write_text(message + "\n")
        except OSError as error:
            log.warning("cannot write the termination message to %s: %s", settings.termination_log, error)
    return EXIT_INVALID


def _configure_logging(settings: WorkerSettings) -> None:
    from .logs import WORKER_TEXT_FORMAT, configure_logging

    configure_logging(settings.log_level, settings.log_format, WORKER_TEXT_FORMAT)
    logging.getLogger("cassandra").setLevel(logging.ERROR)
    logging.getLogger("cassandra.cluster").setLevel(logging.CRITICAL)  # the sink logs each failure itself
