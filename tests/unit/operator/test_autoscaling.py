"""The autoscaler's pure decisions: workers from the lag, bounds, divisor rounding, the window, the freeze."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from sluice_operator.autoscaling import (
    Action,
    Blocker,
    Decision,
    Recommendation,
    ceil_div,
    decide,
    divisor_at_least,
    recommend,
    scale_up_blocker,
)
from sluice_operator.scaler import Memory, decision_events
from sluice_worker.model import AutoscalingSpec, PipelineError, parse_spec

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "gophers-r-us.yaml"
T0 = 1_800_000_000.0
NOT_READY = Blocker("1 of 3 workers are not ready", degraded=False)


def policy(**fields: Any) -> AutoscalingSpec:
    return AutoscalingSpec.model_validate({"enabled": True, "targetLagPerReplica": 100, **fields})


def test_ceil_div_and_divisors() -> None:
    assert [ceil_div(n, 100) for n in (0, 1, 100, 101, 250)] == [0, 1, 1, 2, 3]
    assert [divisor_at_least(n, 6) for n in (1, 2, 3, 4, 5, 6)] == [1, 2, 3, 6, 6, 6]
    assert [divisor_at_least(n, 12) for n in (5, 7)] == [6, 12]
    assert divisor_at_least(2, 7) == 7  # a prime number of partitions: all or one


@pytest.mark.parametrize(
    ("lag", "partitions", "fields", "replicas"),
    [
        (0, 6, {}, 1),  # minReplicas, default 1
        (0, 6, {"minReplicas": 0}, 0),  # scale to zero when idle
        (1, 6, {"minReplicas": 0}, 1),
        (100, 6, {}, 1),
        (101, 6, {}, 2),
        (300, 6, {}, 3),
        (390, 6, {}, 6),  # 4 rounds up to 6
        (450, 6, {}, 6),  # 5 rounds up to 6
        (10_000, 6, {}, 6),  # capped at the partition count
        (500, 12, {}, 6),  # 5 rounds up to 6
        (700, 12, {}, 12),  # 7 rounds up to 12
        (200, 7, {}, 7),  # 2 rounds up to 7: each worker one partition
        (200, 7, {"maxReplicas": 4}, 2),  # 7 would break maxReplicas: 2 stays, uneven
        (400, 6, {"maxReplicas": 4}, 4),  # 6 would break maxReplicas: 4 stays, uneven
        (10_000, 6, {"maxReplicas": 3}, 3),  # capped at maxReplicas
        (10_000, 6, {"maxReplicas": 10}, 6),  # the partition count is the lower cap
        (0, 6, {"minReplicas": 4}, 6),  # minReplicas 4 rounds up too
        (0, 6, {"minReplicas": 8}, 6),  # more workers than partitions would idle
        (0, 1, {}, 1),
        (10_000, 1, {}, 1),
    ],
)
def test_recommended_workers(lag: int, partitions: int, fields: dict[str, Any], replicas: int) -> None:
    assert recommend(lag, partitions, policy(**fields)).replicas == replicas


def test_the_recommendation_says_how_it_came_about() -> None:
    assert recommend(300, 6, policy()).reason == "lag 300 at 100 per worker needs 3"
    assert recommend(390, 6, policy()).reason == (
        "lag 390 at 100 per worker needs 4, rounded up to 6 to divide the 6 partitions evenly"
    )
    assert recommend(0, 6, policy()).reason == "lag 0 at 100 per worker needs 0, raised to minReplicas 1"
    assert recommend(5000, 6, policy()).reason == "lag 5000 at 100 per worker needs 50, capped at the partition count 6"
    assert (
        recommend(5000, 6, policy(maxReplicas=3)).reason
        == "lag 5000 at 100 per worker needs 50, capped at maxReplicas 3"
    )


def test_no_partitions_no_recommendation() -> None:
    with pytest.raises(ValueError, match="without partitions"):
        recommend(10, 0, policy())


def wanted(replicas: int, reason: str = "lag") -> Recommendation:
    return Recommendation(replicas, reason)


def test_scale_up_is_immediate() -> None:
    decision = decide(current=1, recommendation=wanted(3, "lag 300"), history=(), now=T0, window=300, blocker=None)
    assert decision == Decision("up", 3, "Scaled up from 1 to 3 workers: lag 300", ((T0, 3),))


def test_scale_up_is_frozen_while_blocked_and_told_why() -> None:
    degraded = Blocker("the pipeline is Degraded (ProgressDeadlineExceeded: timed out)", degraded=True)
    decision = decide(current=1, recommendation=wanted(6, "lag 600"), history=(), now=T0, window=300, blocker=degraded)
    assert (decision.action, decision.replicas) == ("frozen", 1)
    assert decision.message == (
        "Scale-up from 1 to 6 workers frozen: the pipeline is Degraded (ProgressDeadlineExceeded: timed out) (lag 600)"
    )


def test_a_blocker_does_not_stop_a_scale_down() -> None:
    decision = decide(current=6, recommendation=wanted(1), history=(), now=T0, window=0, blocker=NOT_READY)
    assert (decision.action, decision.replicas) == ("down", 1)


def test_scale_down_waits_for_the_window_then_takes_its_highest_recommendation() -> None:
    history = ((T0, 6), (T0 + 100, 3))
    waiting = decide(current=6, recommendation=wanted(1), history=history, now=T0 + 299, window=300, blocker=None)
    assert (waiting.action, waiting.replicas) == ("deferred", 6)
    assert waiting.message.startswith("Scale-down from 6 to 1 workers deferred for 1s: the lag asked for 6 within")
    assert waiting.history == ((T0, 6), (T0 + 100, 3), (T0 + 299, 1))

    after = decide(current=6, recommendation=wanted(1), history=waiting.history, now=T0 + 300, window=300, blocker=None)
    assert (after.action, after.replicas) == ("down", 3)  # 3 was asked for 200 s ago
    assert after.message == "Scaled down from 6 to 3 workers: lag; the lag asked for 3 within the last 300s"
    assert after.history == ((T0 + 100, 3), (T0 + 299, 1), (T0 + 300, 1))

    last = decide(current=3, recommendation=wanted(1), history=after.history, now=T0 + 400, window=300, blocker=None)
    assert (last.action, last.replicas) == ("down", 1)


def test_without_history_a_scale_down_waits_a_whole_window() -> None:
    """After a restart (or when autoscaling starts) the current count counts as recommended now."""
    first = decide(current=4, recommendation=wanted(1), history=None, now=T0, window=60, blocker=None)
    assert (first.action, first.replicas) == ("deferred", 4)
    later = decide(current=4, recommendation=wanted(1), history=first.history, now=T0 + 60, window=60, blocker=None)
    assert (later.action, later.replicas) == ("down", 1)


def test_no_window_scales_down_at_once() -> None:
    decision = decide(current=6, recommendation=wanted(2), history=((T0, 6),), now=T0 + 1, window=0, blocker=None)
    assert (decision.action, decision.replicas) == ("down", 2)


def test_a_recommendation_that_matches_holds() -> None:
    decision = decide(current=3, recommendation=wanted(3), history=((T0, 6),), now=T0 + 1, window=300, blocker=None)
    assert (decision.action, decision.replicas) == ("hold", 3)


def test_a_scale_up_within_the_window_is_not_delayed() -> None:
    decision = decide(current=2, recommendation=wanted(6), history=((T0, 1),), now=T0 + 1, window=300, blocker=None)
    assert (decision.action, decision.replicas) == ("up", 6)


def conditions(degraded: str = "False", reason: str = "AsExpected") -> list[dict[str, str]]:
    return [{"type": "Degraded", "status": degraded, "reason": reason, "message": "timed out"}]


def test_what_blocks_a_scale_up() -> None:
    assert scale_up_blocker({}) is None
    assert scale_up_blocker({"replicas": 3, "readyReplicas": 3, "conditions": conditions()}) is None
    assert scale_up_blocker({"replicas": 3, "readyReplicas": 1, "conditions": conditions()}) == Blocker(
        "2 of 3 workers are not ready", degraded=False
    )
    degraded = {"replicas": 1, "readyReplicas": 0, "conditions": conditions("True", "ProgressDeadlineExceeded")}
    assert scale_up_blocker(degraded) == Blocker(
        "the pipeline is Degraded (ProgressDeadlineExceeded: timed out)", degraded=True
    )


def test_every_scale_is_an_event_and_a_lasting_state_is_told_once() -> None:
    memory = Memory()

    def told(action: Action, blocker_degraded: bool = False) -> list[tuple[str, str]]:
        decision = Decision(action, 1, f"{action} message", ())
        return [(e.type, e.reason) for e in decision_events(decision, memory, blocker_degraded)]

    assert told("frozen") == [("Normal", "ScaleUpFrozen")]
    assert told("frozen") == []
    assert told("frozen", blocker_degraded=True) == [("Warning", "ScaleUpFrozen")]  # a new cause is told
    assert told("frozen", blocker_degraded=True) == []
    assert told("up") == [("Normal", "ScaledUp")]
    assert told("up") == [("Normal", "ScaledUp")]
    assert told("deferred") == [("Normal", "ScaleDownDeferred")]
    assert told("deferred") == []
    assert told("hold") == []
    assert told("deferred") == [("Normal", "ScaleDownDeferred")]  # a new spell, after a hold
    assert told("down") == [("Normal", "ScaledDown")]


def test_the_autoscaling_spec() -> None:
    defaults = AutoscalingSpec()
    assert (defaults.enabled, defaults.min_replicas, defaults.max_replicas) == (False, 1, None)
    assert (defaults.target_lag_per_replica, defaults.scale_down_stabilization_seconds) == (1000, 300)
    with pytest.raises(ValueError, match=r"minReplicas \(4\) must not exceed maxReplicas \(2\)"):
        policy(minReplicas=4, maxReplicas=2)
    for field, value in (("targetLagPerReplica", 0), ("maxReplicas", 0), ("minReplicas", -1)):
        with pytest.raises(ValueError, match=field):
            policy(**{field: value})


def test_a_pipeline_without_autoscaling_is_not_autoscaled(sample_spec: dict[str, Any]) -> None:
    assert parse_spec(sample_spec).autoscaling == AutoscalingSpec()
    sample_spec["autoscaling"] = {"enabled": True, "minReplicas": 3, "maxReplicas": 1}
    with pytest.raises(PipelineError, match=r"spec\.autoscaling: minReplicas"):
        parse_spec(sample_spec)


@pytest.fixture
def sample_spec() -> dict[str, Any]:
    return dict(yaml.safe_load(EXAMPLE.read_text())["spec"])
