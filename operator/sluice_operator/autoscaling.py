"""Pure autoscaling decisions: workers from the lag, bounded, spread evenly over partitions, stabilised."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from sluice_worker.model import AutoscalingSpec

from .status import DEGRADED, condition

Action = Literal["up", "down", "hold", "frozen", "deferred"]
History = tuple[tuple[float, int], ...]  # (seconds since the epoch, recommended workers), oldest first


@dataclass(frozen=True)
class Recommendation:
    """The workers the lag asks for now, and how that number came about, in words."""

    replicas: int
    reason: str


@dataclass(frozen=True)
class Blocker:
    """Why workers must not be added now; `degraded` when the pipeline's Degraded condition is the cause."""

    message: str
    degraded: bool


@dataclass(frozen=True)
class Decision:
    """What the autoscaler does at one check: the workers to run, why, and the history to keep."""

    action: Action
    replicas: int
    message: str
    history: History


def ceil_div(numerator: int, denominator: int) -> int:
    """⌈numerator / denominator⌉ for non-negative integers, without floats."""
    return -(-numerator // denominator)


def divisor_at_least(count: int, partitions: int) -> int:
    """The smallest divisor of `partitions` that is at least `count` (1 ≤ count ≤ partitions)."""
    return next(d for d in range(max(count, 1), partitions + 1) if partitions % d == 0)


def recommend(lag: int, partitions: int, spec: AutoscalingSpec) -> Recommendation:
    """⌈lag / targetLagPerReplica⌉ workers, within [minReplicas, maxReplicas] and at most one per partition,
    then rounded up to a divisor of the partition count (so each worker gets as many partitions) if that
    stays within the bounds. Needs at least one partition.
    """
    if partitions < 1:
        raise ValueError("a consumer group without partitions cannot be scaled")
    needed = ceil_div(lag, spec.target_lag_per_replica)
    reason = f"lag {lag} at {spec.target_lag_per_replica} per worker needs {needed}"
    upper = partitions if spec.max_replicas is None else min(spec.max_replicas, partitions)
    replicas = min(max(needed, spec.min_replicas), upper)
    if replicas > needed:
        reason += f", raised to minReplicas {replicas}"
    elif replicas < needed:
        cap = "the partition count" if upper == partitions else "maxReplicas"
        reason += f", capped at {cap} {replicas}"
    if replicas > 0:
        even = divisor_at_least(replicas, partitions)
        if even <= upper and even != replicas:
            reason += f", rounded up to {even} to divide the {partitions} partitions evenly"
            replicas = even
    return Recommendation(replicas, reason)


def scale_up_blocker(status: Mapping[str, Any]) -> Blocker | None:
    """Why more workers would not help now: the pipeline is Degraded, or some of its workers are not ready.

    Workers that cannot write (the sink is down, or they cannot even be scheduled) only add rebalances.
    """
    degraded = condition(status, DEGRADED)
    if degraded.get("status") == "True":
        why = f"the pipeline is Degraded ({degraded.get('reason')}: {degraded.get('message')})"
        return Blocker(why, degraded=True)
    replicas, ready = status.get("replicas") or 0, status.get("readyReplicas") or 0
    if ready < replicas:
        return Blocker(f"{replicas - ready} of {replicas} workers are not ready", degraded=False)
    return None


def decide(
    *,
    current: int,
    recommendation: Recommendation,
    history: History | None,
    now: float,
    window: float,
    blocker: Blocker | None,
) -> Decision:
    """Scale up at once unless blocked; scale down only to the highest recommendation of the last `window`
    seconds (a Kubernetes HPA's stabilization window). No history (the first check, or after a restart) counts
    as `current` recommended now, so a scale-down always waits a whole window.
    """
    wanted = recommendation.replicas
    past = history if history is not None else ((now, current),)
    kept = (*((at, count) for at, count in past if now - at < window), (now, wanted))
    if wanted > current:
        if blocker is not None:
            message = f"Scale-up from {current} to {wanted} workers frozen: {blocker.message} ({recommendation.reason})"
            return Decision("frozen", current, message, kept)
        return Decision("up", wanted, f"Scaled up from {current} to {wanted} workers: {recommendation.reason}", kept)
    stable = max(count for _, count in kept)
    if stable < current:
        message = f"Scaled down from {current} to {stable} workers: {recommendation.reason}"
        if stable > wanted:
            message += f"; the lag asked for {stable} within the last {window:g}s"
        return Decision("down", stable, message, kept)
    if wanted < current:
        last_high = max(at for at, count in kept if count >= current)
        wait = last_high + window - now
        message = (
            f"Scale-down from {current} to {wanted} workers deferred for {wait:.0f}s: the lag asked for {current} "
            f"within the {window:g}s stabilization window ({recommendation.reason})"
        )
        return Decision("deferred", current, message, kept)
    return Decision("hold", current, f"Keeping {current} workers: {recommendation.reason}", kept)
