"""The DataPipeline status: its typed shape (also its CRD schema) and the conditions read off the Deployment."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from .api import rfc3339

READY, PROGRESSING, DEGRADED = "Ready", "Progressing", "Degraded"
CONDITION_TYPES = (READY, PROGRESSING, DEGRADED)
REASON_PATTERN = r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$"

ConditionStatus = Literal["True", "False", "Unknown"]


class StatusModel(BaseModel):
    """Base of the status models: camelCase as stored, unknown keys refused."""

    model_config = ConfigDict(populate_by_name=True, extra="forbid", alias_generator=to_camel)


class Condition(StatusModel):
    """One aspect of the pipeline's state, in the shape of a metav1.Condition."""

    type: str = Field(max_length=316, description="Ready, Progressing or Degraded.")
    status: ConditionStatus = Field(description="True, False or Unknown.")
    observed_generation: int = Field(ge=0, description="The metadata.generation this was computed from.")
    last_transition_time: str = Field(
        json_schema_extra={"format": "date-time"}, description="When status last changed, RFC 3339."
    )
    reason: str = Field(min_length=1, max_length=1024, pattern=REASON_PATTERN, description="Why, as a CamelCase word.")
    message: str = Field(max_length=32768, description="Details for humans.")


class PipelineStatus(StatusModel):
    """What the operator last observed of a DataPipeline and its workers."""

    observed_generation: int | None = Field(
        default=None, ge=0, description="The metadata.generation the status describes."
    )
    replicas: int | None = Field(default=None, ge=0, description="Worker pods that exist.")
    ready_replicas: int | None = Field(default=None, ge=0, description="Worker pods that are ready.")
    available_replicas: int | None = Field(
        default=None, ge=0, description="Worker pods ready for at least minReadySeconds."
    )
    selector: str | None = Field(default=None, description="Label selector of the workers, for the scale API.")
    config_hash: str | None = Field(default=None, description="Hash of the pipeline config the workers run.")
    last_handled_spec: dict[str, Any] | None = Field(
        default=None,
        description="The spec the operator last reconciled: what a change of the spec is told against, also one "
        "made while the operator was down.",
        json_schema_extra={"x-kubernetes-preserve-unknown-fields": True},
    )
    conditions: list[Condition] | None = Field(
        default=None,
        description="Ready, Progressing and Degraded.",
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]},
    )
    lag: int | None = Field(
        default=None, ge=0, description="Messages of the source topics the consumer group has not committed yet."
    )
    partitions: int | None = Field(default=None, ge=0, description="Partitions of the source topics.")
    throughput: float | None = Field(
        default=None,
        ge=0,
        description="Messages per second the group committed over the last 30 s (between the last two lag checks "
        "when they are further apart).",
    )
    desired_replicas: int | None = Field(
        default=None, ge=0, description="Workers the autoscaler decided on last, while spec.autoscaling is enabled."
    )
    last_scale_time: str | None = Field(
        default=None,
        json_schema_extra={"format": "date-time"},
        description="When the autoscaler last changed the number of workers, RFC 3339.",
    )


def _aliases(names: Sequence[str]) -> frozenset[str]:
    return frozenset(PipelineStatus.model_fields[name].alias or name for name in names)


# The status keys the lag checks write; the reconciler writes the others. Each merge-patches only its own.
LAG_KEYS: Final = _aliases(("lag", "partitions", "throughput", "desired_replicas", "last_scale_time"))
RECONCILE_KEYS: Final = _aliases([name for name in PipelineStatus.model_fields]) - LAG_KEYS
# The figures a busy pipeline changes at every check, and the step below which a change of one is minor.
MINOR_STEPS: Final = {"lag": 100, "throughput": 1.0}  # messages, messages a second


def lag_status_due(shown: Mapping[str, Any], observed: Mapping[str, Any], refresh_due: bool) -> bool:
    """Whether the lag checks' part of the status (`shown`) is to be written as `observed`.

    At once when a key but the figures changed, or a figure appeared, went away, fell to zero or moved by at least
    its minor step and 10% of the value shown; a minor change of the figures waits until `refresh_due`. So a
    pipeline whose lag wavers costs the API server a write each refresh, not each check, while a backlog, a
    catch-up or a stop shows at the next check. /metrics has every check's figures.
    """
    minor = False
    for key in shown.keys() | observed.keys():
        before, after = shown.get(key), observed.get(key)
        if before == after:
            continue
        step = MINOR_STEPS.get(key)
        if step is None or before is None or after is None or after == 0:
            return True
        if abs(after - before) >= max(step, 0.1 * abs(before)):
            return True
        minor = True
    return minor and refresh_due


@dataclass(frozen=True)
class Verdict:
    """The status and reason of one condition, before timestamps are added."""

    status: ConditionStatus
    reason: str
    message: str


@dataclass(frozen=True)
class Assessment:
    """The three conditions of a pipeline at one moment."""

    ready: Verdict
    progressing: Verdict
    degraded: Verdict

    def by_type(self) -> dict[str, Verdict]:
        return {READY: self.ready, PROGRESSING: self.progressing, DEGRADED: self.degraded}


def failed(reason: str, message: str) -> Assessment:
    """A pipeline the operator cannot run as specified (e.g. InvalidSpec): not ready, degraded, stopped."""
    return Assessment(
        ready=Verdict("False", reason, message),
        progressing=Verdict("False", reason, message),
        degraded=Verdict("True", reason, message),
    )


def _conditions_of(deployment: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    return {c["type"]: c for c in deployment.get("status", {}).get("conditions") or []}


def assess(deployment: Mapping[str, Any] | None, *, desired: int, paused: bool) -> Assessment:
    """Ready, Progressing and Degraded of a pipeline whose workers should be `desired` pods.

    Ready: the Deployment has rolled out (current generation observed, all pods updated, no old ones left)
    and `desired` pods are available. Degraded: the Deployment says the rollout cannot finish (its progress
    deadline passed, or it cannot create pods). Progressing: anything else that is still moving.
    """
    if deployment is None:
        missing = "the worker Deployment does not exist yet"
        return Assessment(
            Verdict("False", "DeploymentMissing", missing),
            Verdict("True", "Creating", missing),
            Verdict("False", "AsExpected", "no problems observed"),
        )
    status = deployment.get("status", {})
    replicas, updated = status.get("replicas", 0), status.get("updatedReplicas", 0)
    available = status.get("availableReplicas", 0)
    generation = deployment.get("metadata", {}).get("generation", 0)
    observed = status.get("observedGeneration", 0) >= generation
    counts = f"{available}/{desired} workers available"
    if not observed or deployment.get("spec", {}).get("replicas") != desired or replicas > updated:
        moving = "RollingOut"  # the controller has not caught up yet, or pods of an old template remain
    elif replicas < desired or updated < desired:
        moving = "ScalingUp"
    elif replicas > desired:
        moving = "ScalingDown"
    elif available < desired:
        moving = "WaitingForReplicas"
    else:
        moving = ""

    conditions = _conditions_of(deployment)
    failure, progress = conditions.get("ReplicaFailure", {}), conditions.get("Progressing", {})
    if failure.get("status") == "True":
        degraded = Verdict("True", failure.get("reason") or "ReplicaFailure", failure.get("message", ""))
    elif moving and progress.get("status") == "False":
        degraded = Verdict("True", progress.get("reason") or "ProgressDeadlineExceeded", progress.get("message", ""))
    else:
        degraded = Verdict("False", "AsExpected", "no problems observed")

    if not moving:
        if paused:
            why = "spec.paused is true: the workers are scaled to zero"
            return Assessment(Verdict("True", "Paused", why), Verdict("False", "Paused", why), degraded)
        if desired == 0:
            why = "spec.replicas is 0"
            return Assessment(Verdict("True", "ScaledToZero", why), Verdict("False", "ScaledToZero", why), degraded)
        return Assessment(
            Verdict("True", "ReplicasAvailable", counts), Verdict("False", "RolloutComplete", counts), degraded
        )
    ready = Verdict("False", "ReplicasUnavailable" if moving == "WaitingForReplicas" else moving, counts)
    if degraded.status == "True":
        return Assessment(ready, Verdict("False", degraded.reason, degraded.message), degraded)
    return Assessment(ready, Verdict("True", moving, counts), degraded)


@dataclass(frozen=True)
class Diagnosis:
    """`pod: what is wrong` for the pods of a pipeline that are not ready."""

    failing: list[str] = field(default_factory=list)  # the worker container exits with an error, over and over
    unready: list[str] = field(default_factory=list)  # running, and /readyz says why it is not ready


def with_diagnosis(assessment: Assessment, diagnosis: Diagnosis) -> Assessment:
    """A Ready=False assessment that also says why workers are not ready, in their own words: failing
    containers' last message (then also Degraded: the rollout cannot finish by waiting), else their /readyz."""
    if assessment.ready.status != "False":
        return assessment
    if diagnosis.failing:
        message = f"{assessment.ready.message}; failing: {'; '.join(diagnosis.failing)}"
        failing = Verdict("False", "WorkersFailing", message)
        return Assessment(failing, assessment.progressing, Verdict("True", "WorkersFailing", message))
    if diagnosis.unready:
        message = f"{assessment.ready.message}; not ready: {'; '.join(diagnosis.unready)}"
        return Assessment(Verdict("False", "WorkersNotReady", message), assessment.progressing, assessment.degraded)
    return assessment


def merge_conditions(
    previous: Sequence[Mapping[str, Any]], assessment: Assessment, generation: int, now: datetime
) -> list[dict[str, Any]]:
    """The new conditions; each keeps its lastTransitionTime unless its status changed."""
    before = {c.get("type"): c for c in previous}
    merged = []
    for kind, verdict in assessment.by_type().items():
        old = before.get(kind, {})
        changed = old.get("status") != verdict.status or "lastTransitionTime" not in old
        merged.append(
            Condition(
                type=kind,
                status=verdict.status,
                observed_generation=generation,
                last_transition_time=rfc3339(now) if changed else old["lastTransitionTime"],
                reason=verdict.reason,
                message=verdict.message[:32768],
            ).model_dump(by_alias=True)
        )
    return merged


def build_status(
    *,
    generation: int,
    assessment: Assessment,
    deployment: Mapping[str, Any] | None,
    selector: str,
    config_hash: str | None,
    previous: Mapping[str, Any],
    now: datetime,
    handled_spec: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The reconciler's part of the status (RECONCILE_KEYS): counts from the Deployment, conditions."""
    counts = (deployment or {}).get("status", {})
    status = PipelineStatus(
        observed_generation=generation,
        replicas=counts.get("replicas", 0),
        ready_replicas=counts.get("readyReplicas", 0),
        available_replicas=counts.get("availableReplicas", 0),
        selector=selector,
        config_hash=config_hash if config_hash is not None else previous.get("configHash"),
        last_handled_spec=dict(handled_spec) if handled_spec is not None else previous.get("lastHandledSpec"),
        conditions=[
            Condition.model_validate(c)
            for c in merge_conditions(previous.get("conditions") or [], assessment, generation, now)
        ],
    )
    return status.model_dump(by_alias=True, exclude_none=True)


def condition(status: Mapping[str, Any], kind: str) -> Mapping[str, Any]:
    """The condition of that type in a status, or an empty mapping."""
    return next((c for c in status.get("conditions") or [] if c.get("type") == kind), {})


def owned(status: Mapping[str, Any], keys: frozenset[str]) -> dict[str, Any]:
    """The part of a status that one writer (RECONCILE_KEYS or LAG_KEYS) owns."""
    return {key: value for key, value in status.items() if key in keys}


def merge_patch(previous: Mapping[str, Any], new: Mapping[str, Any], keys: frozenset[str]) -> dict[str, Any]:
    """The merge patch from one writer's part of `previous` to `new`: its keys left out of `new` are removed, also
    inside objects (lastHandledSpec: a spec field unset)."""
    patch: dict[str, Any] = _removing(owned(previous, keys), new)
    return patch


def _removing(old: Any, new: Any) -> Any:
    """`new` as a JSON merge patch over `old`: the keys of objects it lacks set to null."""
    if not isinstance(old, Mapping) or not isinstance(new, Mapping):
        return new
    return {key: None for key in old if key not in new} | {
        key: _removing(old.get(key), value) for key, value in new.items()
    }
