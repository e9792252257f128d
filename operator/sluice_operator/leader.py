"""Leader election on a coordination.k8s.io Lease, and the operator's /healthz endpoint."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from .api import LEASES, Obj, rfc3339
from .kube import ApiError, Kube
from .settings import OperatorSettings

logger = logging.getLogger(__name__)


def _now() -> str:
    """MicroTime, as Leases store it."""
    return rfc3339(datetime.now(UTC), microseconds=True)


class LeaderElector:
    """client-go's algorithm: a Lease is free when released, or when its record has not changed for a whole
    lease duration as measured by this process's own clock (so clock skew between hosts does not matter).
    """

    def __init__(self, kube: Kube, settings: OperatorSettings, clock: Callable[[], float] = time.monotonic) -> None:
        self.kube, self.clock = kube, clock
        self.namespace, self.name, self.identity = settings.lease_namespace, settings.lease_name, settings.identity
        self.duration = settings.lease_duration_seconds
        self.retry, self.renew_deadline = settings.renew_interval_seconds, settings.renew_deadline_seconds
        self.leading = self.lost = False
        self.last_renewed = 0.0
        self._observed: tuple[Any, ...] | None = None  # (holder, renewTime) last seen
        self._observed_at = 0.0
        self.holder: str | None = None

    def _spec(self, previous: Obj | None) -> dict[str, Any]:
        now = _now()
        old = (previous or {}).get("spec", {})
        ours = old.get("holderIdentity") == self.identity
        return {
            "holderIdentity": self.identity,
            "leaseDurationSeconds": self.duration,
            "acquireTime": old.get("acquireTime", now) if ours else now,
            "renewTime": now,
            "leaseTransitions": old.get("leaseTransitions", 0) + (0 if ours or previous is None else 1),
        }

    def try_acquire(self) -> bool:
        """One attempt to take or renew the Lease (blocking). True if this process now holds it."""
        lease = self.kube.get(LEASES, self.namespace, self.name)
        if lease is None:
            body = {"metadata": {"name": self.name, "namespace": self.namespace}, "spec": self._spec(None)}
            try:
                self.kube.create(LEASES, self.namespace, body)
            except ApiError as error:
                if error.status == 409:  # someone else created it first
                    return False
                raise
            self.holder = self.identity
            return True
        spec = lease.get("spec", {})
        self.holder = spec.get("holderIdentity") or None
        record = (self.holder, spec.get("renewTime"))
        if record != self._observed:
            self._observed, self._observed_at = record, self.clock()
        held_by_other = self.holder not in (None, self.identity)
        duration = spec.get("leaseDurationSeconds") or self.duration
        if held_by_other and self._observed_at + duration > self.clock():
            return False
        lease["spec"] = self._spec(lease)
        try:
            self.kube.replace(LEASES, self.namespace, self.name, lease)  # resourceVersion: no lost update
        except ApiError as error:
            if error.status == 409:
                return False
            raise
        self.holder = self.identity
        return True

    async def acquire(self) -> None:
        """Waits until this process holds the Lease."""
        logger.info("leader election: %s wants Lease %s/%s", self.identity, self.namespace, self.name)
        announced = None
        while True:
            try:
                if await asyncio.to_thread(self.try_acquire):
                    self.leading, self.last_renewed = True, self.clock()
                    logger.info("leader election: %s is the leader", self.identity)
                    return
                if self.holder != announced:
                    logger.info("leader election: standing by, the Lease is held by %s", self.holder)
                    announced = self.holder
            except ApiError as error:
                logger.warning("leader election: %s", error)
            await asyncio.sleep(self.retry)

    async def keep(self, on_lost: Callable[[], None]) -> None:
        """Renews the Lease until renewing fails for renew_deadline; then calls `on_lost` and returns."""
        while True:
            await asyncio.sleep(self.retry)
            try:
                renewed = await asyncio.wait_for(asyncio.to_thread(self.try_acquire), self.renew_deadline)
            except (ApiError, TimeoutError) as error:
                logger.warning("leader election: renewing failed: %s", error)
                renewed = False
            if renewed:
                self.last_renewed = self.clock()
            elif self.holder not in (None, self.identity) or self.clock() - self.last_renewed > self.renew_deadline:
                self.leading, self.lost = False, True
                logger.error("leader election: lost the Lease (held by %s); stopping", self.holder)
                on_lost()
                return

    def release(self) -> None:
        """Hands the Lease over at once on a clean shutdown (blocking)."""
        if not self.leading:
            return
        try:
            lease = self.kube.get(LEASES, self.namespace, self.name)
            if lease is not None and lease.get("spec", {}).get("holderIdentity") == self.identity:
                lease["spec"] = {**lease["spec"], "holderIdentity": None, "leaseDurationSeconds": 1}
                self.kube.replace(LEASES, self.namespace, self.name, lease)
                logger.info("leader election: released the Lease")
        except ApiError as error:
            logger.warning("leader election: could not release the Lease: %s", error)
        self.leading = False

    def healthy(self) -> bool:
        """A standby is healthy; a leader is while its renewals succeed."""
        if self.lost:
            return False
        return not self.leading or self.clock() - self.last_renewed <= self.renew_deadline + self.retry


async def serve_health(
    host: str, port: int, healthy: Callable[[], bool], registry: CollectorRegistry | None = None
) -> web.AppRunner:
    """Serves GET /healthz (200 while `healthy()`, else 503) and the registry's /metrics. Returns the runner."""

    async def healthz(_: web.Request) -> web.Response:
        ok = healthy()
        return web.Response(status=200 if ok else 503, text="ok\n" if ok else "unhealthy\n")

    async def metrics(_: web.Request) -> web.Response:
        assert registry is not None
        response = web.Response(body=generate_latest(registry))
        response.headers["Content-Type"] = CONTENT_TYPE_LATEST
        return response

    app = web.Application()
    app.router.add_get("/healthz", healthz)
    if registry is not None:
        app.router.add_get("/metrics", metrics)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    logger.info("liveness: http://%s:%d/healthz%s", host, port, ", /metrics" if registry is not None else "")
    return runner
