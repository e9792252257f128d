"""One reconcile of a DataPipeline: read it, apply its ConfigMap and Deployment, write its status."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sluice_worker.model import DataPipeline, PipelineError

from . import builders, credentials, status, workers
from .api import (
    CONFIGMAPS,
    DEPLOYMENTS,
    DISRUPTION_BUDGETS,
    FIELD_MANAGER,
    KOPF_DIFF_BASE,
    PIPELINES,
    Obj,
    Owner,
    configmap_name,
    controller_of,
    deployment_name,
    disruption_budget_name,
    validated,
)
from .children import ChildCache, Packed, PipelineCache, Seen, holds, resource_version
from .kube import ApiError, Kube
from .metrics import OperatorMetrics
from .settings import OperatorSettings

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Outcome:
    """What one reconcile found and did; the handlers turn it into events."""

    body: Obj | None  # the DataPipeline as read; None when it is gone
    pipeline: DataPipeline | None = None  # the validated model; None when the spec is invalid
    problem: tuple[str, str] | None = None  # (reason, message) when the pipeline cannot be run as specified
    repaired: dict[str, list[str]] = field(default_factory=dict)  # "Deployment x" -> what a hand edit changed
    created: bool = False  # the Deployment did not exist before
    config_hash: str | None = None
    workers: int | None = None  # the worker pods the Deployment runs; None when the spec is invalid
    status: Obj = field(default_factory=dict)
    first: bool = False  # no reconcile of this pipeline had been recorded in its status
    never_applied: bool = False  # no reconcile had applied its children (status.configHash unset): it failed so far
    changes: dict[str, tuple[Any, Any]] = field(default_factory=dict)  # spec field -> (as last handled, as now)
    new_problem: bool = False  # the problem was not what the status said already, or the spec changed


def spec_changes(handled: Mapping[str, Any] | None, spec: Mapping[str, Any]) -> dict[str, tuple[Any, Any]]:
    """The top-level spec fields that differ from the spec last handled, as (old, new); none when none was."""
    if handled is None:
        return {}
    return {key: (handled.get(key), spec.get(key)) for key in {*handled, *spec} if handled.get(key) != spec.get(key)}


@dataclass(frozen=True)
class Observed:
    """A child as a watch event showed it (None: deleted); a hand edit is judged from this, not a later read."""

    kind: str
    obj: Obj | None


@dataclass(frozen=True)
class Applied:
    """A child as the operator last applied it, and the resourceVersion the API server answered with."""

    manifest: Packed
    version: int | None


def _conflict(kind: str, live: Obj | None, owner: Owner) -> str | None:
    if live is None:
        return None
    ref = controller_of(live)
    if ref is not None and ref.get("uid") == owner.uid:
        return None
    held = f"{ref['kind']} {ref['name']} (uid {ref['uid']})" if ref else "nothing"
    return f"{kind} {live['metadata']['name']} already exists and is controlled by {held}, not this DataPipeline"


def _handling(body: Obj) -> dict[str, Any]:
    """Whether a reconcile of this pipeline was recorded before (observedGeneration: also by an operator of before
    lastHandledSpec), whether one applied its children, and which spec fields changed since."""
    recorded = body.get("status") or {}
    return {
        "first": "lastHandledSpec" not in recorded and "observedGeneration" not in recorded,
        "never_applied": "configHash" not in recorded,
        "changes": spec_changes(recorded.get("lastHandledSpec"), body.get("spec") or {}),
    }


def _summary(status: Mapping[str, Any]) -> str:
    return ", ".join(f"{c['type']}={c['status']} ({c['reason']})" for c in status.get("conditions") or [])


class Reconciler:
    """Level-triggered: each call makes the children match the current spec, whatever triggered it."""

    def __init__(
        self,
        kube: Kube,
        settings: OperatorSettings,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        metrics: OperatorMetrics | None = None,
    ) -> None:
        self.kube, self.settings, self.clock = kube, settings, clock
        self.metrics = metrics or OperatorMetrics()
        self._guard = threading.Lock()
        self._locks: dict[tuple[str, str], threading.Lock] = {}
        self._applied: dict[tuple[str, str], dict[str, Applied]] = {}  # by pipeline, then kind
        self.children = ChildCache()  # what the watches last showed of each child
        self.pipelines = PipelineCache()  # what the DataPipeline watch last showed of each pipeline

    def _lock(self, key: tuple[str, str]) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(key, threading.Lock())

    def reconcile(
        self, namespace: str, name: str, observed: Observed | None = None, shown: Obj | None = None
    ) -> Outcome:
        """Reconciles one pipeline, one call at a time per pipeline. `shown` is the DataPipeline as the event being
        handled showed it; `observed` a child event that caused the reconcile, which then takes the pipeline as its
        watch last showed it, unless the child is gone: a child is made again only for a pipeline read now (one
        whose deletion the watch missed must not get children the garbage collector deletes, over and over).
        Otherwise (a resync, a direct call) the pipeline is read; a pipeline found gone is forgotten.

        Raises ApiError if the API server fails.
        """
        key = (namespace, name)
        with self._lock(key), self.metrics.reconcile_seconds.time():
            repaired = self.observe(namespace, name, observed) if observed is not None else {}
            try:
                cached = observed is not None and observed.obj is not None
                body = shown or (self.pipelines.get(key) if cached else None)
                body = body or self.kube.get(PIPELINES, namespace, name)
                if body is None or body["metadata"].get("deletionTimestamp"):
                    self._applied.pop(key, None)  # its children go by garbage collection
                    self.children.forget(key)
                    if body is None:
                        self.pipelines.forget(key)
                    return Outcome(body=None)
                outcome = self._reconcile(key, body, repaired)
            except ApiError as error:
                self.metrics.reconciles.labels("error").inc()
                if error.status == 404:  # gone since it was shown: the next reconcile reads it
                    self.pipelines.forget(key)
                raise
            self.metrics.reconciles.labels("ok" if outcome.problem is None else "invalid").inc()
            return outcome

    def observe(
        self, namespace: str, name: str, observed: Observed, version: int | None = None
    ) -> dict[str, list[str]]:
        """Remembers a child as a watch showed it (also the watches' initial listing, which reconciles nothing),
        and whether it still held every field last applied to it; returns what a hand edit changed in it (see
        `_drift`). `version`: the resourceVersion of a deletion's event."""
        key = (namespace, name)
        last = self._applied.get(key, {}).get(observed.kind)
        obj = observed.obj
        manifest = last.manifest.unpacked() if last is not None else None
        holds_applied = obj is not None and manifest is not None and holds(obj, manifest)
        self.children.put(key, observed.kind, Seen.of(obj, holds_applied, version))
        return self._drift(key, observed, manifest)

    def _live(self, key: tuple[str, str], kind: str, read: Callable[[], Obj | None]) -> Seen:
        """The child as last seen, else as read now (then judged against the manifest last applied)."""
        seen = self.children.get(key, kind)
        if seen is None:
            obj = read()
            last = self._applied.get(key, {}).get(kind)
            seen = Seen.of(obj, obj is not None and last is not None and holds(obj, last.manifest.unpacked()))
            self.children.put(key, kind, seen)
        return seen

    def _may_have_budget(self, key: tuple[str, str], deployment: Obj | None) -> bool:
        """Whether a pipeline without a budget may still have one of ours to remove: one was applied in this
        process, or, on its first reconcile here, it has workers already (a new pipeline has nothing)."""
        if key in self._applied:
            return "PodDisruptionBudget" in self._applied[key]
        return deployment is not None

    def _drift(self, key: tuple[str, str], observed: Observed, manifest: Obj | None) -> dict[str, list[str]]:
        """What a hand edit changed in the observed child, compared with `manifest`, what was last applied to it.

        Never a false alarm: only a version newer than the operator's last apply that differs from it counts.
        Best effort: an edit that a reconcile for another event has already undone is restored but not told.
        """
        last = self._applied.get(key, {}).get(observed.kind)
        if last is None or manifest is None:
            return {}
        seen = resource_version(observed.obj) if observed.obj is not None else None
        if seen is not None and last.version is not None and seen <= last.version:
            return {}  # the event shows the operator's own apply, or something older
        changes = builders.drift(manifest, observed.obj)
        return {f"{observed.kind} {manifest['metadata']['name']}": changes} if changes else {}

    def _reconcile(self, key: tuple[str, str], body: Obj, repaired: dict[str, list[str]]) -> Outcome:
        owner = Owner.of(body)
        seen = {
            "Deployment": self._live(key, "Deployment",
                                     lambda: self.kube.get(DEPLOYMENTS, owner.namespace, deployment_name(owner.name))),
            "ConfigMap": self._live(key, "ConfigMap",
                                    lambda: self.kube.get(CONFIGMAPS, owner.namespace, configmap_name(owner.name))),
        }  # fmt: skip
        live = {kind: child.obj for kind, child in seen.items()}
        try:
            pipeline = validated(body)
        except PipelineError as error:
            return self._failed(body, live["Deployment"], ("InvalidSpec", "; ".join(error.problems)))
        if pipeline.spec.disruption_budget is not None or self._may_have_budget(key, live["Deployment"]):
            live["PodDisruptionBudget"] = self.kube.get(
                DISRUPTION_BUDGETS, owner.namespace, disruption_budget_name(owner.name)
            )
        stale_budget = live.pop("PodDisruptionBudget", None) if pipeline.spec.disruption_budget is None else None
        for kind, obj in live.items():
            if conflict := _conflict(kind, obj, owner):
                return self._failed(body, live["Deployment"], ("NameConflict", conflict), pipeline)

        try:  # before the workers are rolled onto them: a missing Secret leaves the running workers alone
            secrets = credentials.resolve(self.kube, owner.namespace, pipeline.spec)
        except credentials.CredentialsProblem as problem:
            return self._failed(body, live["Deployment"], (credentials.REASON, str(problem)), pipeline)
        children = builders.build_children(
            owner,
            pipeline,
            body.get("status") or {},
            default_image=self.settings.default_worker_image,
            progress_deadline_seconds=self.settings.progress_deadline_seconds,
            credentials_version=secrets.version,
        )
        manifests = children.by_kind()
        packed = {kind: Packed.of(manifest) for kind, manifest in manifests.items()}
        applied: dict[str, Obj] = {}
        unchanged: set[str] = set()  # since the last apply, and still as applied: no request
        try:
            for kind, manifest in manifests.items():  # the ConfigMap first: the pods mount it
                last = self._applied.get(key, {}).get(kind)
                child = seen.get(kind)
                if last is not None and last.manifest == packed[kind] and child is not None and child.holds_applied:
                    obj = live[kind]
                    assert obj is not None  # it holds what was applied
                    applied[kind] = obj
                    unchanged.add(kind)
                    continue
                applied[kind] = self.kube.apply(manifest, FIELD_MANAGER)
                self.children.put(key, kind, Seen.of(applied[kind], True))
        except ApiError as error:
            if not error.permanent:
                raise
            return self._failed(body, live["Deployment"], ("ApplyFailed", error.message), pipeline)
        if stale_budget is not None and _conflict("PodDisruptionBudget", stale_budget, owner) is None:
            meta = stale_budget["metadata"]
            self.kube.delete(DISRUPTION_BUDGETS, meta["namespace"], meta["name"], meta["uid"])  # budget unset
        previous = self._applied.get(key, {})
        self._applied[key] = {  # a child left as it was keeps the version of the apply that made it so
            kind: previous[kind]
            if kind in unchanged and kind in previous
            else Applied(packed[kind], resource_version(obj))
            for kind, obj in applied.items()
        }

        deployment = applied["Deployment"]
        assessment = status.assess(deployment, desired=children.workers, paused=pipeline.spec.paused)
        if assessment.ready.status == "False" and children.workers > 0:  # say why, in the workers' words
            pods = workers.pods_of(self.kube, pipeline.metadata.namespace, pipeline.metadata.name)
            ask = self.settings.ask_workers and assessment.ready.reason == "ReplicasUnavailable"
            assessment = status.with_diagnosis(assessment, workers.diagnose(pods, ask_readyz=ask))
        new_status = self._write_status(body, assessment, deployment, children.config_hash)
        self._remove_kopf_diff_base(body)
        return Outcome(
            body=body,
            pipeline=pipeline,
            repaired=repaired,
            created=live["Deployment"] is None,
            config_hash=children.config_hash,
            workers=children.workers,
            status=new_status,
            **_handling(body),
        )

    def _failed(
        self, body: Obj, deployment: Obj | None, problem: tuple[str, str], pipeline: DataPipeline | None = None
    ) -> Outcome:
        """The pipeline cannot be run as specified: say so in the status, leave the running workers alone."""
        handling = _handling(body)
        ready = status.condition(body.get("status") or {}, status.READY)
        told = (
            (ready.get("reason"), ready.get("message")) == problem and not handling["first"] and not handling["changes"]
        )
        new_status = self._write_status(body, status.failed(*problem), deployment, None)
        return Outcome(
            body=body, pipeline=pipeline, problem=problem, status=new_status, new_problem=not told, **handling
        )

    def _remove_kopf_diff_base(self, body: Obj) -> None:
        """Removes the copy of the spec kopf kept in an annotation (KOPF_DIFF_BASE), once, after an upgrade from an
        operator before 4fd1b48: nothing reads it now. Best effort: a failure is logged, the next reconcile tries."""
        meta = body["metadata"]
        if KOPF_DIFF_BASE not in (meta.get("annotations") or {}):
            return
        path = "/metadata/annotations/" + KOPF_DIFF_BASE.replace("~", "~0").replace("/", "~1")
        try:
            written = self.kube.json_patch(PIPELINES, meta["namespace"], meta["name"], [{"op": "remove", "path": path}])
        except ApiError as error:  # 422: removed meanwhile
            if error.status != 422:
                logger.warning("%s/%s: could not remove annotation %s: %s", meta["namespace"], meta["name"],
                               KOPF_DIFF_BASE, error)  # fmt: skip
            return
        self.pipelines.put(written, watched=False)

    def _write_status(
        self, body: Obj, assessment: status.Assessment, deployment: Obj | None, config_hash: str | None
    ) -> Obj:
        meta = body["metadata"]
        previous = status.owned(body.get("status") or {}, status.RECONCILE_KEYS)  # the lag checks own the rest
        new_status = status.build_status(
            generation=meta.get("generation", 0),
            assessment=assessment,
            deployment=deployment,
            selector=builders.selector(meta["name"]),
            config_hash=config_hash,
            previous=previous,
            now=self.clock(),
            handled_spec=body.get("spec") or {},
        )
        if new_status != previous:
            patch = status.merge_patch(previous, new_status, status.RECONCILE_KEYS)  # also removes spec keys unset
            written = self.kube.merge_patch(PIPELINES, meta["namespace"], meta["name"], {"status": patch}, "status")
            self.pipelines.put(written, watched=False)  # a child's event right after must see this status
            summary = _summary(new_status)
            if summary != _summary(previous):
                logger.info("%s/%s generation %s: %s", meta["namespace"], meta["name"], meta.get("generation"), summary)
        return new_status
