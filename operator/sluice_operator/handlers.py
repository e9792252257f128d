"""kopf handlers: thin shims that run the reconciler and turn what it did into Kubernetes events."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable, Sequence
from typing import Any, Final, Literal

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
from .children import Key
from .kube import ApiError, Event
from .reconcile import Observed, Outcome, Reconciler
from .scaler import Scaler
from .workers import failure

COMPONENT: Final = "sluice-operator"
CHILD_ATTEMPTS: Final = 3
SLOW_RETRY_SECONDS: Final = 60.0
MAX_RETRY_SECONDS: Final = 300.0
# A Secret a pipeline names but that does not exist yet is looked for again, at most this far apart (the operator
# may get Secrets by name, not watch them).
CREDENTIALS_RETRY_SECONDS: Final = 60.0
# Spec fields whose change is told by its own event rather than "Updated".
_OWN_EVENTS: Final = frozenset({"replicas", "paused", "autoscaling"})

logger = logging.getLogger(__name__)


def _changed(diff: Iterable[Sequence[Any]]) -> dict[str, tuple[Any, Any]]:
    """Top-level spec fields a kopf diff touches -> (old, new) of the field itself when it changed whole."""
    fields: dict[str, tuple[Any, Any]] = {}
    for _op, path, old, new in diff:
        path = tuple(path)
        if len(path) >= 2 and path[0] == "spec":
            fields.setdefault(path[1], (old, new) if len(path) == 2 else (None, None))
        elif path == ("spec",):
            old, new = old or {}, new or {}
            for key in {*old, *new}:
                if old.get(key) != new.get(key):
                    fields.setdefault(key, (old.get(key), new.get(key)))
    return fields


Role = Literal["create", "update", "resume"]


def change_events(role: Role, diff: Iterable[Sequence[Any]], outcome: Outcome) -> list[Event]:
    """The events of a reconcile that the kopf handler of that role ran for a change of the DataPipeline.

    Only the update handler tells spec changes: after an operator restart kopf runs the resume handler too,
    with the same diff, and the change must be told once. The create handler tells Created even when the
    Deployment exists: kopf runs it again when the operator died between applying and recording the creation.
    """
    if outcome.body is None:
        return []
    if outcome.problem is not None:
        return [Event("Warning", *outcome.problem)]
    events = []
    spec = outcome.pipeline.spec if outcome.pipeline else None
    name = outcome.body["metadata"]["name"]
    if (role == "create" or outcome.created) and spec is not None:
        events.append(Event("Normal", "Created", f"Created Deployment {deployment_name(name)} with "
                            f"{outcome.workers} workers and ConfigMap {configmap_name(name)}"))  # fmt: skip
    if role == "update" and spec is not None:
        fields = _changed(diff)
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
    return events + drift_events(outcome)


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


def drift_events(outcome: Outcome) -> list[Event]:
    """DriftRepaired events for children that were deleted or edited by hand."""
    return [
        Event("Normal", "DriftRepaired", f"{child}: {', '.join(changes)}; restored")
        for child, changes in outcome.repaired.items()
    ]


class Handlers:
    """The kopf handlers of one operator, bound to its reconciler, and its lag checks, bound to its scaler."""

    def __init__(self, reconciler: Reconciler, retry_delay: float, scaler: Scaler | None = None) -> None:
        self.reconciler, self.retry_delay, self.scaler = reconciler, retry_delay, scaler
        self._failures: dict[str, str] = {}  # by pod uid: what is wrong with a failing worker pod, as last seen

    def register(self, registry: kopf.OperatorRegistry) -> None:
        """DataPipeline changes (with kopf's retries) and events of the children it labels as its own."""
        kopf.on.create(GROUP, VERSION, PLURAL, id="create", registry=registry)(self.on_create)
        kopf.on.update(GROUP, VERSION, PLURAL, id="update", registry=registry)(self.on_update)
        kopf.on.resume(GROUP, VERSION, PLURAL, id="resume", registry=registry)(self.on_resume)
        kopf.on.event(GROUP, VERSION, PLURAL, registry=registry)(self.on_pipeline_event)
        children = {MANAGED_BY: FIELD_MANAGER}
        kopf.on.event("apps", "v1", "deployments", labels=children, registry=registry)(self.on_child)
        kopf.on.event("v1", "configmaps", labels=children, registry=registry)(self.on_child)
        kopf.on.event("v1", "pods", labels={PIPELINE_LABEL: kopf.PRESENT}, registry=registry)(self.on_worker_pod)

    def watched(self) -> list[Key]:
        """Every DataPipeline its watch has shown, by (namespace, name)."""
        return self.reconciler.pipelines.keys()

    async def check_lag(self, key: Key) -> None:
        """One lag check of a pipeline as its watch last showed it (its status, metrics and autoscaling), then its
        events. The body is unpacked here, for this check only."""
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
        """Every event of a DataPipeline, before kopf's change handlers run for it: remembered, so that the
        reconciles its children's events cause read no pipeline."""
        if type == "DELETED":
            self.reconciler.pipelines.forget((body.metadata.namespace or "", body.metadata.name or ""))
        else:
            self.reconciler.pipelines.put(body)

    def on_create(self, body: kopf.Body, diff: kopf.Diff, retry: int, **_: Any) -> None:
        self.on_pipeline("create", body, diff, retry)

    def on_update(self, body: kopf.Body, diff: kopf.Diff, retry: int, **_: Any) -> None:
        self.on_pipeline("update", body, diff, retry)

    def on_resume(self, body: kopf.Body, diff: kopf.Diff, retry: int, **_: Any) -> None:
        self.on_pipeline("resume", body, diff, retry)

    def on_pipeline(self, role: Role, body: kopf.Body, diff: kopf.Diff, retry: int) -> None:
        """Create, update or resume of a DataPipeline: reconcile; API failures retry with a growing delay."""
        try:
            namespace, name = body.metadata.namespace or "", body.metadata.name or ""
            outcome = self.reconciler.reconcile(namespace, name, shown=dict(body))
        except ApiError as error:
            first = self.retry_delay if error.transient else SLOW_RETRY_SECONDS  # e.g. forbidden: wait for a fix
            delay = min(first * 2 ** min(retry, 10), MAX_RETRY_SECONDS)
            raise kopf.TemporaryError(
                f"reconcile failed (retry {retry + 1} in {delay:.0f}s): {error}", delay=delay
            ) from error
        if retry == 0:  # told once; the retries below only look again
            self.post(outcome.body, change_events(role, diff, outcome))
        if outcome.problem is not None and outcome.problem[0] == credentials.REASON:
            delay = min(self.retry_delay * 2 ** min(retry, 10), CREDENTIALS_RETRY_SECONDS)
            raise kopf.TemporaryError(f"{outcome.problem[1]} (looked for again in {delay:.0f}s)", delay=delay)

    def on_child(self, type: str | None, body: kopf.Body, resource: kopf.Resource, **_: Any) -> None:
        """A child changed or went away: reconcile its pipeline. The initial listing is only remembered (the
        resume handlers reconcile), so a restarted operator reads no child it has just been shown."""
        pipeline = owning_pipeline(body)
        if pipeline is None:
            return
        observed = Observed(resource.kind or "", None if type == "DELETED" else dict(body))
        if type is None:
            self.reconciler.observe(body.metadata.namespace or "", pipeline, observed)
            return
        self.reconcile_for(body.metadata.namespace or "", pipeline, observed)

    def on_worker_pod(self, type: str | None, body: kopf.Body, **_: Any) -> None:
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
        self.reconcile_for(body.metadata.namespace or "", pipeline)

    def reconcile_for(self, namespace: str, pipeline: str, observed: Observed | None = None) -> None:
        """Reconciles a pipeline for an event of something it owns; transient API failures retried a few times."""
        for attempt in range(1, CHILD_ATTEMPTS + 1):
            try:
                outcome = self.reconciler.reconcile(namespace, pipeline, observed)
            except ApiError as error:
                if attempt == CHILD_ATTEMPTS or not error.transient:
                    logger.warning("reconcile of %s/%s failed: %s", namespace, pipeline, error)
                    return
                logger.warning("reconcile of %s/%s failed (%s), retrying", namespace, pipeline, error)
                time.sleep(self.retry_delay)
                continue
            self.post(outcome.body, drift_events(outcome))
            return

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
