"""The watches' handlers, the queue of pipelines to reconcile, its workers, and the events that tell what they did."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Final

import kopf
from sluice_worker.model import PipelineSpec

from . import credentials
from .api import (
    FIELD_MANAGER,
    GROUP,
    MANAGED_BY,
    PIPELINE_LABEL,
    PLURAL,
    VERSION,
    Obj,
    configmap_name,
    deployment_name,
    owning_pipeline,
)
from .children import Key, resource_version
from .kube import ApiError, Event
from .reconcile import Observed, Outcome, Reconciler
from .scaler import Scaler
from .workers import failure
from .workqueue import WorkQueue

COMPONENT: Final = "sluice-operator"
SLOW_RETRY_SECONDS: Final = 60.0
MAX_RETRY_SECONDS: Final = 300.0
# A Secret a pipeline names but that does not exist yet is looked for again, at most this far apart (the operator
# may get Secrets by name, not watch them).
CREDENTIALS_RETRY_SECONDS: Final = 60.0
# Lag checks running at once; the others wait before they unpack their pipeline. Unbounded, every pipeline's check
# held its pipeline, unpacked and validated, while it queued for a thread: at 1,500 pipelines in a storm 45 MiB.
LAG_CHECKS_AT_ONCE: Final = 64
# Spec fields whose change is told by its own event rather than "Updated".
_OWN_EVENTS: Final = frozenset({"replicas", "paused", "autoscaling"})

logger = logging.getLogger(__name__)


def change_events(outcome: Outcome) -> list[Event]:
    """The events of a reconcile: a problem when it is new; the creation, when no reconcile of the pipeline was
    recorded before (also when the operator died between applying its children and writing its status) or its
    first workers come after reconciles that could not apply them (an invalid spec fixed, a Secret created); and
    what changed in the spec since the spec last handled (status.lastHandledSpec), whether it changed while the
    operator ran or while it was down."""
    if outcome.body is None:
        return []
    if outcome.problem is not None:
        return [Event("Warning", *outcome.problem)] if outcome.new_problem else []
    events = []
    spec = outcome.pipeline.spec if outcome.pipeline else None
    name = outcome.body["metadata"]["name"]
    if (outcome.first or (outcome.created and outcome.never_applied)) and spec is not None:
        events.append(Event("Normal", "Created", f"Created Deployment {deployment_name(name)} with "
                            f"{outcome.workers} workers and ConfigMap {configmap_name(name)}"))  # fmt: skip
    if spec is not None:
        fields = outcome.changes
        if "replicas" in fields and not spec.autoscaling.enabled:  # else the autoscaler tells its own changes
            old, new = fields["replicas"]
            note = " (paused: the Deployment stays at 0 until resumed)" if spec.paused else ""
            events.append(Event("Normal", "Scaled", f"Scaled from {old} to {new} workers{note}"))
        if "paused" in fields:
            if spec.paused:
                message = f"Paused: the workers are scaled to zero; spec.replicas ({spec.replicas}) is kept"
                events.append(Event("Normal", "Paused", message))
            else:
                events.append(Event("Normal", "Resumed", f"Resumed with {spec.replicas} workers"))
        if "autoscaling" in fields:
            events.append(autoscaling_event(spec))
        others = sorted(set(fields) - _OWN_EVENTS)
        if others:
            changed = ", ".join(f"spec.{key}" for key in others)
            message = f"{changed} changed: rolling out config {outcome.config_hash}"
            events.append(Event("Normal", "Updated", message))
    return events


def autoscaling_event(spec: PipelineSpec) -> Event:
    """What spec.autoscaling now means for the workers."""
    scaling = spec.autoscaling
    if not scaling.enabled:
        return Event("Normal", "Autoscaling", f"Autoscaling is off: spec.replicas ({spec.replicas}) decides")
    most = "the partition count" if scaling.max_replicas is None else scaling.max_replicas
    return Event("Normal", "Autoscaling", (
        f"Autoscaling is on: minReplicas {scaling.min_replicas}, maxReplicas {most}, targetLagPerReplica "
        f"{scaling.target_lag_per_replica}, scaleDownStabilizationSeconds {scaling.scale_down_stabilization_seconds}"
        "; the operator sets spec.replicas"
    ))  # fmt: skip


def drift_events(repaired: Mapping[str, list[str]]) -> list[Event]:
    """DriftRepaired events for children that were deleted or edited by hand."""
    return [
        Event("Normal", "DriftRepaired", f"{child}: {', '.join(changes)}; restored")
        for child, changes in repaired.items()
    ]


@dataclass
class Notes:
    """What the events of a pipeline's children said since its last reconcile."""

    repaired: dict[str, list[str]] = field(default_factory=dict)  # hand edits seen, to tell once repaired
    read: bool = False  # a child went away: the pipeline is read, not taken from the cache (it may be gone too)

    def merge(self, other: Notes) -> None:
        self.repaired = {**other.repaired, **self.repaired}
        self.read = self.read or other.read


class Handlers:
    """The watches' handlers, a queue of pipelines to reconcile and the workers that reconcile them; and the lag
    checks, bound to the scaler.

    The shape of a controller-runtime controller: an event only updates the caches and queues its pipeline's key,
    on the event loop, in microseconds; `workers` threads reconcile the keys, each pipeline once at a time, however
    many events it had meanwhile. (kopf's change handlers kept every event's object queued until one of its
    workers was free, and wrote a copy of each spec into an annotation: at 1,500 pipelines in a creation storm,
    138-148 MiB of the operator's memory and one PATCH per change.)
    """

    def __init__(
        self, reconciler: Reconciler, retry_delay: float, scaler: Scaler | None = None, workers: int = 8
    ) -> None:
        self.reconciler, self.retry_delay, self.scaler = reconciler, retry_delay, scaler
        self.queue = WorkQueue()
        self.workers = workers
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="reconcile")
        self._notes: dict[Key, Notes] = {}  # by pipeline, until its next reconcile takes them
        self._retries: dict[Key, int] = {}  # by pipeline: reconciles failed in a row
        self._failures: dict[str, str] = {}  # by pod uid: what is wrong with a failing worker pod, as last seen
        self._checking = asyncio.Semaphore(LAG_CHECKS_AT_ONCE)

    def register(self, registry: kopf.OperatorRegistry) -> None:
        """Events of DataPipelines, of the children they label as their own and of their worker pods."""
        kopf.on.event(GROUP, VERSION, PLURAL, registry=registry)(self.on_pipeline_event)
        children = {MANAGED_BY: FIELD_MANAGER}
        kopf.on.event("apps", "v1", "deployments", labels=children, registry=registry)(self.on_child)
        kopf.on.event("v1", "configmaps", labels=children, registry=registry)(self.on_child)
        kopf.on.event("v1", "pods", labels={PIPELINE_LABEL: kopf.PRESENT}, registry=registry)(self.on_worker_pod)

    async def run(self) -> None:
        """The reconcile workers, until cancelled."""
        try:
            await asyncio.gather(*(self._work() for _ in range(self.workers)))
        finally:
            self._pool.shutdown(wait=False, cancel_futures=True)

    async def _work(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            key = await self.queue.get()
            notes = self._notes.pop(key, Notes())
            try:
                retry = await loop.run_in_executor(self._pool, self.handle, key, notes)
            except Exception:  # a bug, not the API server: say so, and let the pipeline wait before it tries again
                logger.exception("reconcile of %s/%s failed", *key)
                retry = MAX_RETRY_SECONDS
            finally:
                self.queue.done(key)
            if retry is not None:
                self._notes.setdefault(key, Notes()).merge(notes)
                self.queue.add(key, retry)

    def handle(self, key: Key, notes: Notes) -> float | None:
        """Reconciles one pipeline and tells what it did; returns in how many seconds to try again, if it must."""
        namespace, name = key
        retry = self._retries.get(key, 0)
        shown = None if notes.read else self.reconciler.pipelines.get(key)
        try:
            outcome = self.reconciler.reconcile(namespace, name, shown=shown)
        except ApiError as error:
            first = self.retry_delay if error.transient else SLOW_RETRY_SECONDS  # e.g. forbidden: wait for a fix
            delay = min(first * 2.0 ** min(retry, 10), MAX_RETRY_SECONDS)
            logger.warning(
                "reconcile of %s/%s failed (retry %d in %.0fs): %s", namespace, name, retry + 1, delay, error
            )
            self._retries[key] = retry + 1
            return delay
        self.post(outcome.body, change_events(outcome) + drift_events({**notes.repaired, **outcome.repaired}))
        if outcome.problem is not None and outcome.problem[0] == credentials.REASON:
            self._retries[key] = retry + 1
            delay = min(self.retry_delay * 2.0 ** min(retry, 10), CREDENTIALS_RETRY_SECONDS)
            logger.info("%s/%s: %s (looked for again in %.0fs)", namespace, name, outcome.problem[1], delay)
            return delay
        self._retries.pop(key, None)
        return None

    def watched(self) -> list[Key]:
        """Every DataPipeline its watch has shown, by (namespace, name)."""
        return self.reconciler.pipelines.keys()

    async def check_lag(self, key: Key) -> None:
        """One lag check of a pipeline as its watch last showed it (its status, metrics and autoscaling), then its
        events; at most LAG_CHECKS_AT_ONCE at a time. The body is unpacked here, for this check only."""
        async with self._checking:
            await self._check_lag(key)

    async def _check_lag(self, key: Key) -> None:
        assert self.scaler is not None
        body = self.reconciler.pipelines.get(key)
        if body is None:
            return  # deleted since the turn began
        meta = body["metadata"]
        try:
            checked = await self.scaler.check(body)
        except ApiError as error:
            logger.warning("lag check of %s/%s failed: %s", meta["namespace"], meta["name"], error)
            if error.status == 404:  # deleted, and the watch did not say so: checked no more
                self.reconciler.pipelines.forget((meta["namespace"], meta["name"]))
            return
        except Exception:  # a background task: say what went wrong, the next check runs anyway
            logger.exception("lag check of %s/%s failed", meta["namespace"], meta["name"])
            return
        await asyncio.to_thread(self.post, checked.body, checked.events)

    async def on_pipeline_event(self, type: str | None, body: kopf.Body, **_: Any) -> None:
        """A DataPipeline as its watch shows it: remembered, and reconciled when its spec, labels or deletion
        changed (or it is new to this operator: also each pipeline at start-up)."""
        key = (body.metadata.namespace or "", body.metadata.name or "")
        if type == "DELETED":  # its children go by garbage collection; their events tidy up the rest
            self.reconciler.pipelines.forget(key)
            self.queue.forget(key)
            self._retries.pop(key, None)
        elif self.reconciler.pipelines.put(body):
            self.queue.add(key)

    async def on_child(self, type: str | None, body: kopf.Body, resource: kopf.Resource, **_: Any) -> None:
        """A child changed or went away: remembered, and its pipeline reconciled. The initial listing is only
        remembered (each pipeline is reconciled at start-up anyway), so a restarted operator reads no child."""
        pipeline = owning_pipeline(body)
        if pipeline is None:
            return
        key = (body.metadata.namespace or "", pipeline)
        gone = type == "DELETED"
        observed = Observed(resource.kind or "", None if gone else dict(body))
        version = resource_version(body) if gone else None
        repaired = self.reconciler.observe(*key, observed, version)
        if type is None:
            return
        notes = self._notes.setdefault(key, Notes())
        notes.merge(Notes(repaired, read=gone))
        self.queue.add(key)

    async def on_worker_pod(self, type: str | None, body: kopf.Body, **_: Any) -> None:
        """A worker pod started failing, failed differently (e.g. once more) or stopped failing: reconcile its
        pipeline, whose conditions tell it. The Deployment alone does not show a pod that keeps crashing."""
        uid, pipeline = body.metadata.uid or "", body.metadata.labels.get(PIPELINE_LABEL)
        wrong = None if type == "DELETED" else failure(body)
        if type is None or pipeline is None or self._failures.get(uid) == wrong:
            return
        if wrong is None:
            self._failures.pop(uid, None)
        else:
            self._failures[uid] = wrong
        self.queue.add((body.metadata.namespace or "", pipeline))

    def resync(self, found: Iterable[Obj]) -> set[Key]:
        """Every DataPipeline of a page of a listing is remembered and queued (a safety net under the watches);
        returns their keys."""
        listed = set()
        for body in found:
            key = (body["metadata"]["namespace"], body["metadata"]["name"])
            listed.add(key)
            self.reconciler.pipelines.put(body)
            self.queue.add(key)
        return listed

    def read_unlisted(self, listed: set[Key]) -> None:
        """A pipeline remembered that a whole listing did not find is read again (its deletion's event was missed)."""
        for key in set(self.reconciler.pipelines.keys()) - listed:
            self._notes.setdefault(key, Notes()).read = True
            self.queue.add(key)

    def post(self, body: Obj | None, events: Iterable[Event]) -> None:
        """Posts events on the pipeline; an event that cannot be posted is logged, never fatal."""
        if body is None:
            return
        meta = body["metadata"]
        for event in events:
            logger.info("%s/%s: %s %s: %s", meta["namespace"], meta["name"], event.type, event.reason, event.message)
            try:
                self.reconciler.kube.post_event(
                    body, type=event.type, reason=event.reason, message=event.message, component=COMPONENT
                )
            except ApiError as error:
                logger.warning("could not post event %s on %s/%s: %s", event.reason, meta["namespace"],
                               meta["name"], error)  # fmt: skip
