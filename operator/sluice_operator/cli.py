"""Command line entry point of `sluice-operator`: leader election, /healthz, then the kopf operator."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import sys
from collections.abc import Sequence

import kopf
from kubernetes.config import ConfigException
from pydantic import ValidationError

from .handlers import Handlers
from .kube import ApiError, Kube
from .leader import LeaderElector, serve_health
from .reconcile import PIPELINES, Reconciler
from .settings import OperatorSettings, help_text, kopf_settings

logger = logging.getLogger("sluice_operator")

DESCRIPTION = """Runs the DataPipeline operator: reconciles each sluice.dev/v1alpha1 DataPipeline into a
ConfigMap and a Deployment of workers. Install the CRD (crds/) and the RBAC (deploy/rbac.yaml) first.
Settings come from the environment; Kubernetes credentials from the pod's service account or $KUBECONFIG."""


async def resync(reconciler: Reconciler, namespaces: Sequence[str], interval: float) -> None:
    """Reconciles every pipeline every `interval` seconds: a safety net under the watches."""
    kube = reconciler.kube
    while True:
        await asyncio.sleep(interval)
        try:
            scopes: list[str | None] = [*namespaces] or [None]
            found = [obj for ns in scopes for obj in await asyncio.to_thread(kube.list, PIPELINES, ns)]
        except ApiError as error:
            logger.warning("resync: cannot list DataPipelines: %s", error)
            continue
        for obj in found:
            meta = obj["metadata"]
            try:
                await asyncio.to_thread(reconciler.reconcile, meta["namespace"], meta["name"])
            except ApiError as error:
                logger.warning("resync of %s/%s failed: %s", meta["namespace"], meta["name"], error)


async def run(settings: OperatorSettings) -> int:
    """Runs until SIGTERM/SIGINT (0) or until the Lease is lost (1)."""
    kube = Kube.from_environment(timeout=settings.api_timeout_seconds)
    elector = LeaderElector(kube, settings) if settings.leader_election else None
    health = None
    if settings.liveness_port:
        health = await serve_health(
            settings.liveness_host, settings.liveness_port, elector.healthy if elector else lambda: True
        )
    stop = asyncio.Event()
    background: list[asyncio.Task[None]] = []
    try:
        if elector is not None:
            await elector.acquire()
            background.append(asyncio.create_task(elector.keep(on_lost=stop.set)))
        reconciler = Reconciler(kube, settings)
        handlers = Handlers(reconciler, settings.retry_delay_seconds)
        registry = kopf.OperatorRegistry()
        kopf.on.login(registry=registry)(kopf.login_via_client)

        async def raise_stop_flag(**_: object) -> None:
            stop.set()  # stopped by a signal: kopf's stop-flag waiter would otherwise hang its shutdown for 5 s

        kopf.on.cleanup(registry=registry)(raise_stop_flag)
        handlers.register(registry)
        if settings.resync_seconds:
            background.append(
                asyncio.create_task(resync(reconciler, settings.watch_namespaces, settings.resync_seconds))
            )
        logger.info("watching %s", ", ".join(settings.watch_namespaces) or "all namespaces")
        await kopf.operator(
            registry=registry,
            settings=kopf_settings(settings),
            clusterwide=not settings.watch_namespaces,
            namespaces=settings.watch_namespaces,
            standalone=True,  # no kopf peering: the Lease decides who acts
            stop_flag=stop,
        )
    finally:
        for task in background:
            task.cancel()
        for task in background:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if elector is not None:
            await asyncio.to_thread(elector.release)
        if health is not None:
            await health.cleanup()
    lost = elector is not None and elector.lost
    logger.info("stopped%s", " (the Lease was lost)" if lost else "")
    return 1 if lost else 0


class JsonLogFormatter(logging.Formatter):
    """One JSON object a line: time, level, logger, message (and the traceback, if any)."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S%z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry)


def configure_logging(settings: OperatorSettings) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if settings.log_format == "json":
        handler.setFormatter(JsonLogFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s"))
    logging.basicConfig(level=settings.log_level, handlers=[handler], force=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="sluice-operator",
        description=DESCRIPTION,
        epilog=help_text(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--check-settings", action="store_true", help="print the settings and exit")
    args = parser.parse_args(argv)
    try:
        settings = OperatorSettings()
    except ValidationError as error:
        print(f"sluice-operator: invalid settings:\n{error}", file=sys.stderr)
        return 2
    if args.check_settings:
        print(settings.model_dump_json(indent=2))
        return 0
    configure_logging(settings)
    try:
        return asyncio.run(run(settings))
    except ConfigException as error:
        print(f"sluice-operator: no Kubernetes credentials: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
