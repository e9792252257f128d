"""The lag check of one pipeline: its lag from Kafka into its status and metrics, and autoscaling by it."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sluice_worker.model import DataPipeline, PipelineError, SourceSpec

from . import credentials, status
from .api import PIPELINES, Obj, rfc3339, secret_name, validated
from .autoscaling import Decision, History, decide, recommend, scale_up_blocker
from .builders import workers
from .children import PipelineCache
from .kafka import LagReader, LagUnavailable
from .kube import ApiError, Event, Kube
from .lag import Snapshot, throughput, total_lag, windowed
from .metrics import OperatorMetrics

logger = logging.getLogger(__name__)


@dataclass
class Memory:
    """What the checks of one pipeline carry over; lost on a restart, which only delays a scale-down."""

    history: History | None = None  # recommendations within the stabilization window
    samples: list[Snapshot] = field(default_factory=list)  # the snapshots the throughput is measured over (windowed)
    told: str | None = None  # the lasting state last told by an event (frozen, deferred, lag unknown)
    brokers: str | None = None  # the workers' SLUICE_KAFKA_BOOTSTRAP_SERVERS, once the spec's address gave no answer
    status_written: float | None = None  # when this process last wrote the lag checks' status keys (epoch s)


@dataclass(frozen=True)
class Check:
    """What one check found and did: the pipeline as read (None when it is gone) and the events to post."""

    body: Obj | None
    events: list[Event] = field(default_factory=list)


def _tell(memory: Memory, state: str | None, event: Event | None) -> list[Event]:
    """A lasting state is told once, when it starts; None ends it."""
    if state == memory.told or event is None:
        memory.told = state
        return []
    memory.told = state
    return [event]


def decision_events(decision: Decision, memory: Memory, blocked_by_degraded: bool) -> list[Event]:
    """The event of a decision: every change of the workers, and each frozen or deferred spell once."""
    if decision.action == "up":
        return [Event("Normal", "ScaledUp", decision.message), *_tell(memory, None, None)]
    if decision.action == "down":
        return [Event("Normal", "ScaledDown", decision.message), *_tell(memory, None, None)]
    if decision.action == "frozen":
        kind = "Warning" if blocked_by_degraded else "Normal"
        return _tell(memory, f"frozen/{kind}", Event(kind, "ScaleUpFrozen", decision.message))
    if decision.action == "deferred":
        return _tell(memory, "deferred", Event("Normal", "ScaleDownDeferred", decision.message))
    return _tell(memory, None, None)


class Scaler:
    """Checks pipelines (each one check at a time) and remembers each between checks."""

    def __init__(
        self,
        kube: Kube,
        reader: LagReader,
        metrics: OperatorMetrics,
        pipelines: PipelineCache | None = None,
        status_refresh_seconds: float = 300.0,
    ) -> None:
        self.kube, self.reader, self.metrics = kube, reader, metrics
        self.status_refresh_seconds = status_refresh_seconds  # how stale a minor change of the figures may get
        self.pipelines = pipelines  # told of each status written, so that the next check compares with it
        self._guard = threading.Lock()
        self._memory: dict[tuple[str, str], Memory] = {}

    def retain(self, pipelines: Collection[tuple[str, str]]) -> None:
        """Forgets the pipelines not among these (namespace, name) pairs: their memory and their metrics."""
        with self._guard:
            gone = [key for key in self._memory if key not in pipelines]
            for key in gone:
                del self._memory[key]
        for namespace, name in gone:
            self.metrics.forget(namespace, name)

    def _remember(self, key: tuple[str, str]) -> Memory:
        with self._guard:
            return self._memory.setdefault(key, Memory())

    async def check(self, body: Obj) -> Check:
        """Reads the lag of a pipeline as listed, writes it to the status and, with autoscaling, scales.

        Kafka is awaited and the API server called in a thread: a broker that does not answer holds no thread.
        Raises ApiError.
        """
        meta = body["metadata"]
        if meta.get("deletionTimestamp"):
            return Check(None)
        try:
            pipeline = validated(body)
        except PipelineError:
            return Check(body)  # the reconciler reports it (InvalidSpec)
        memory = self._remember((meta["namespace"], meta["name"]))
        try:
            login = await asyncio.to_thread(self._source_credentials, pipeline)
            snapshot = await self._read(pipeline, memory, login)
        except LagUnavailable as error:
            return await asyncio.to_thread(self._unavailable, body, pipeline, memory, error)
        return await asyncio.to_thread(self._observed, body, pipeline, memory, snapshot)

    async def _read(self, pipeline: DataPipeline, memory: Memory, login: Mapping[str, str]) -> Snapshot:
        """The offsets where the workers read: at spec.source.bootstrapServers, or at the brokers the workers' Secret
        overrides it with. That Secret is read only once the spec's address gave no answer (an address that only
        the workers' network reaches, say) and then at each check, so that a pipeline without it costs no GET."""
        source, namespace, name = pipeline.spec.source, pipeline.metadata.namespace, pipeline.metadata.name
        if memory.brokers is None:
            try:
                return await self.reader.read(source, pipeline.group_id, login)
            except LagUnavailable as error:
                if error.answered:
                    raise
                memory.brokers = await asyncio.to_thread(self._brokers_override, namespace, name, source)
                if memory.brokers is None:
                    raise
        else:
            memory.brokers = await asyncio.to_thread(self._brokers_override, namespace, name, source)
            if memory.brokers is None:  # the Secret or its key is gone: the spec's address again
                return await self.reader.read(source, pipeline.group_id, login)
        overridden = source.model_copy(update={"bootstrap_servers": memory.brokers})
        return await self.reader.read(overridden, pipeline.group_id, login)

    def _brokers_override(self, namespace: str, name: str, source: SourceSpec) -> str | None:
        found = credentials.brokers_override(self.kube, namespace, name)
        return None if found == source.bootstrap_servers else found

    def _source_credentials(self, pipeline: DataPipeline) -> Mapping[str, str]:
        """The values of spec.source's tls and auth Secrets, read as the workers get them. Raises LagUnavailable."""
        try:
            secrets = credentials.resolve(self.kube, pipeline.metadata.namespace, pipeline.spec, sides=("source",))
        except credentials.CredentialsProblem as problem:
            raise LagUnavailable(str(problem)) from None
        return secrets.side("source")

    def _unavailable(self, body: Obj, pipeline: DataPipeline, memory: Memory, error: LagUnavailable) -> Check:
        namespace, name = pipeline.metadata.namespace, pipeline.metadata.name
        self.metrics.lag_errors.labels(namespace, name).inc()
        for gauge in (self.metrics.lag, self.metrics.partitions, self.metrics.throughput):
            gauge.labels(namespace, name).set(float("nan"))
        memory.samples = []
        self._write_status(body, memory, {"lag": None, "partitions": None, "throughput": None}, time.time())
        secret = secret_name(name)
        if memory.brokers is None:
            where = (
                f"spec.source.bootstrapServers {pipeline.spec.source.bootstrap_servers} (the operator connects there "
                f"itself; when no broker answers, also to {credentials.BROKERS_OVERRIDE} of Secret {secret} if set)"
            )
        else:
            where = f"{credentials.BROKERS_OVERRIDE} {memory.brokers} of Secret {secret} (the workers' brokers)"
        message = f"Cannot read the lag of consumer group {pipeline.group_id} from {where}: {error}"
        if pipeline.spec.autoscaling.enabled:
            message += "; autoscaling keeps the workers as they are"
        logger.warning("%s/%s: %s", namespace, name, message)
        return Check(body, _tell(memory, "lag-unknown", Event("Warning", "LagUnknown", message)))

    def _observed(self, body: Obj, pipeline: DataPipeline, memory: Memory, snapshot: Snapshot) -> Check:
        namespace, name = pipeline.metadata.namespace, pipeline.metadata.name
        spec, previous = pipeline.spec, body.get("status") or {}
        lag, partitions = total_lag(snapshot, spec.source.start_from), len(snapshot.partitions)
        memory.samples = windowed(memory.samples, snapshot)
        rate = throughput(memory.samples[0], snapshot, spec.source.start_from)  # None from the first snapshot
        observed: dict[str, Any] = {
            "lag": lag,
            "partitions": partitions,
            "throughput": None if rate is None else round(rate, 2),
        }
        self.metrics.lag.labels(namespace, name).set(lag)
        self.metrics.partitions.labels(namespace, name).set(partitions)
        self.metrics.throughput.labels(namespace, name).set(float("nan") if rate is None else rate)

        decision: Decision | None = None
        events: list[Event] = []
        if spec.autoscaling.enabled and not spec.paused:
            decision, events = self._autoscale(pipeline, previous, memory, lag, partitions, snapshot.taken)
            observed["desiredReplicas"] = decision.replicas
            if decision.action in ("up", "down"):
                observed["lastScaleTime"] = rfc3339(datetime.fromtimestamp(snapshot.taken, UTC))
        else:
            memory.history = None  # a later start waits a whole window before it scales down
            _tell(memory, None, None)
            if not spec.autoscaling.enabled:
                observed["desiredReplicas"] = None
        self.metrics.desired_replicas.labels(namespace, name).set(workers(pipeline, {**previous, **observed}))

        self._write_status(body, memory, observed, snapshot.taken)
        if decision is not None and spec.replicas != decision.replicas:
            self._set_replicas(body, spec.replicas, decision.replicas)
        return Check(body, events)

    def _autoscale(
        self, pipeline: DataPipeline, previous: Obj, memory: Memory, lag: int, partitions: int, now: float
    ) -> tuple[Decision, list[Event]]:
        """The autoscaler's decision at this check, and its events."""
        namespace, name, spec = pipeline.metadata.namespace, pipeline.metadata.name, pipeline.spec
        decided = previous.get("desiredReplicas") is not None
        current = workers(pipeline, previous)  # not paused here: the autoscaler's last decision, or spec.replicas
        blocker = scale_up_blocker(previous)
        decision = decide(
            current=current,
            recommendation=recommend(lag, partitions, spec.autoscaling),
            history=memory.history,
            now=now,
            window=spec.autoscaling.scale_down_stabilization_seconds,
            blocker=blocker,
        )
        memory.history = decision.history
        events = []
        if decided and spec.replicas != current:  # spec.replicas mirrors the decision: someone else set it
            self.metrics.scale_decisions.labels(namespace, name, "overridden").inc()
            message = (
                f"spec.replicas is {spec.replicas}, but spec.autoscaling is enabled and owns it (kubectl scale and "
                f"edits are overridden): set to {decision.replicas}"
            )
            events.append(Event("Warning", "ScaleOverridden", message))
        if decision.action != "hold":
            self.metrics.scale_decisions.labels(namespace, name, decision.action).inc()
        return decision, events + decision_events(decision, memory, blocker is not None and blocker.degraded)

    def _write_status(self, body: Obj, memory: Memory, observed: Mapping[str, Any], now: float) -> None:
        """Merge-patches the lag checks' keys of the status (LAG_KEYS), if they changed enough (lag_status_due)."""
        previous = status.owned(body.get("status") or {}, status.LAG_KEYS)
        new = {key: value for key, value in {**previous, **observed}.items() if value is not None}
        last = memory.status_written
        refresh_due = last is None or now - last >= self.status_refresh_seconds
        if status.lag_status_due(previous, new, refresh_due):
            meta = body["metadata"]
            patch = {"status": status.merge_patch(previous, new, status.LAG_KEYS)}
            written = self.kube.merge_patch(PIPELINES, meta["namespace"], meta["name"], patch, "status")
            memory.status_written = now
            if self.pipelines is not None:
                self.pipelines.put(written, watched=False)

    def _set_replicas(self, body: Obj, seen: int, replicas: int) -> None:
        """spec.replicas := the autoscaler's count, unless spec.replicas changed since it was read (as `seen`).

        Only that field is tested: kopf's annotations and the status change all the time.
        """
        meta = body["metadata"]
        operations = [
            {"op": "test", "path": "/spec/replicas", "value": seen},
            {"op": "replace", "path": "/spec/replicas", "value": replicas},
        ]
        try:
            self.kube.json_patch(PIPELINES, meta["namespace"], meta["name"], operations)
        except ApiError as error:
            if error.status != 422:
                raise
            where = f"{meta['namespace']}/{meta['name']}"
            logger.info("%s: spec.replicas changed while scaling; the next check decides again", where)
