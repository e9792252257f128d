"""Conditions read off a Deployment's status, their transition times, and the status document."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sluice_operator.status import (
    LAG_KEYS,
    RECONCILE_KEYS,
    PipelineStatus,
    assess,
    build_status,
    condition,
    failed,
    lag_status_due,
    merge_conditions,
    merge_patch,
    owned,
)

T0 = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def deployment(
    *,
    spec: int = 2,
    replicas: int = 2,
    updated: int = 2,
    available: int = 2,
    generation: int = 1,
    observed: int = 1,
    conditions: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    return {
        "metadata": {"generation": generation},
        "spec": {"replicas": spec},
        "status": {
            "observedGeneration": observed,
            "replicas": replicas,
            "updatedReplicas": updated,
            "readyReplicas": available,
            "availableReplicas": available,
            "conditions": conditions or [],
        },
    }


def verdicts(deployment_: dict[str, Any] | None, desired: int = 2, paused: bool = False) -> dict[str, tuple[str, str]]:
    return {
        kind: (v.status, v.reason) for kind, v in assess(deployment_, desired=desired, paused=paused).by_type().items()
    }


DEADLINE = {"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded", "message": "timed out"}
QUOTA = {"type": "ReplicaFailure", "status": "True", "reason": "FailedCreate", "message": "exceeded quota"}


@pytest.mark.parametrize(
    ("live", "desired", "paused", "expected"),
    [
        (deployment(), 2, False, {"Ready": ("True", "ReplicasAvailable"), "Progressing": ("False", "RolloutComplete"),
                                  "Degraded": ("False", "AsExpected")}),
        (None, 2, False, {"Ready": ("False", "DeploymentMissing"), "Progressing": ("True", "Creating"),
                          "Degraded": ("False", "AsExpected")}),
        (deployment(observed=0), 2, False, {"Ready": ("False", "RollingOut"), "Progressing": ("True", "RollingOut"),
                                            "Degraded": ("False", "AsExpected")}),
        (deployment(replicas=3, updated=1), 2, False, {"Ready": ("False", "RollingOut"),
                                                       "Progressing": ("True", "RollingOut"),
                                                       "Degraded": ("False", "AsExpected")}),
        (deployment(spec=5, replicas=2, updated=2), 5, False, {"Ready": ("False", "ScalingUp"),
                                                               "Progressing": ("True", "ScalingUp"),
                                                               "Degraded": ("False", "AsExpected")}),
        (deployment(spec=1, replicas=2, updated=2), 1, False, {"Ready": ("False", "ScalingDown"),
                                                               "Progressing": ("True", "ScalingDown"),
                                                               "Degraded": ("False", "AsExpected")}),
        (deployment(available=1), 2, False, {"Ready": ("False", "ReplicasUnavailable"),
                                             "Progressing": ("True", "WaitingForReplicas"),
                                             "Degraded": ("False", "AsExpected")}),
        (deployment(available=0, conditions=[DEADLINE]), 2, False, {
            "Ready": ("False", "ReplicasUnavailable"), "Progressing": ("False", "ProgressDeadlineExceeded"),
            "Degraded": ("True", "ProgressDeadlineExceeded")}),
        (deployment(replicas=1, updated=1, available=1, conditions=[QUOTA]), 2, False, {
            "Ready": ("False", "ScalingUp"), "Progressing": ("False", "FailedCreate"),
            "Degraded": ("True", "FailedCreate")}),
        (deployment(spec=0, replicas=0, updated=0, available=0), 0, True, {
            "Ready": ("True", "Paused"), "Progressing": ("False", "Paused"), "Degraded": ("False", "AsExpected")}),
        (deployment(spec=0, replicas=2, updated=2, available=2), 0, True, {
            "Ready": ("False", "ScalingDown"), "Progressing": ("True", "ScalingDown"),
            "Degraded": ("False", "AsExpected")}),
        (deployment(spec=0, replicas=0, updated=0, available=0), 0, False, {
            "Ready": ("True", "ScaledToZero"), "Progressing": ("False", "ScaledToZero"),
            "Degraded": ("False", "AsExpected")}),
    ],
    ids=["available", "missing", "not-observed", "old-pods", "scaling-up", "scaling-down", "unavailable",
         "deadline", "quota", "paused", "pausing", "zero"],
)  # fmt: skip
def test_conditions_follow_the_deployment(
    live: dict[str, Any] | None, desired: int, paused: bool, expected: dict[str, tuple[str, str]]
) -> None:
    assert verdicts(live, desired, paused) == expected


def test_a_stale_deadline_does_not_degrade_a_finished_rollout() -> None:
    assert verdicts(deployment(conditions=[DEADLINE]))["Degraded"] == ("False", "AsExpected")


def test_a_failure_is_degraded_and_stops_progress() -> None:
    verdict = failed("InvalidSpec", "spec.source.topics: too short")
    assert (verdict.ready.status, verdict.progressing.status, verdict.degraded.status) == ("False", "False", "True")
    assert verdict.ready.message == "spec.source.topics: too short"


def test_transition_times_change_only_with_the_status() -> None:
    first = merge_conditions([], assess(deployment(available=1), desired=2, paused=False), 1, T0)
    assert {c["lastTransitionTime"] for c in first} == {"2026-01-02T03:04:05Z"}
    later = T0 + timedelta(minutes=5)
    second = merge_conditions(first, assess(deployment(), desired=2, paused=False), 2, later)
    times = {c["type"]: c["lastTransitionTime"] for c in second}
    assert times == {"Ready": "2026-01-02T03:09:05Z", "Progressing": "2026-01-02T03:09:05Z",
                     "Degraded": "2026-01-02T03:04:05Z"}  # fmt: skip
    assert {c["observedGeneration"] for c in second} == {2}


def test_the_status_document_has_the_counts_the_selector_and_the_conditions() -> None:
    status = build_status(
        generation=4,
        assessment=assess(deployment(available=1), desired=2, paused=False),
        deployment=deployment(available=1),
        selector="a=b",
        config_hash="abc",
        previous={},
        now=T0,
    )
    assert {k: v for k, v in status.items() if k != "conditions"} == {
        "observedGeneration": 4,
        "replicas": 2,
        "readyReplicas": 1,
        "availableReplicas": 1,
        "selector": "a=b",
        "configHash": "abc",
    }
    assert condition(status, "Ready")["reason"] == "ReplicasUnavailable"
    assert PipelineStatus.model_validate(status).conditions is not None


def test_a_failed_reconcile_keeps_the_last_config_hash() -> None:
    status = build_status(
        generation=5,
        assessment=failed("InvalidSpec", "bad"),
        deployment=None,
        selector="a=b",
        config_hash=None,
        previous={"configHash": "old"},
        now=T0,
    )
    assert status["configHash"] == "old" and status["replicas"] == 0


def test_the_reconciler_and_the_lag_checks_each_write_only_their_own_keys() -> None:
    assert {"lag", "partitions", "throughput", "desiredReplicas", "lastScaleTime"} == LAG_KEYS
    assert not LAG_KEYS & RECONCILE_KEYS
    assert {field.alias for field in PipelineStatus.model_fields.values()} == LAG_KEYS | RECONCILE_KEYS
    live = {"replicas": 2, "selector": "a=b", "lag": 40, "desiredReplicas": 2}
    assert owned(live, LAG_KEYS) == {"lag": 40, "desiredReplicas": 2}
    # A key of the writer's that the new document leaves out is removed; the other writer's are left alone.
    assert merge_patch(live, {"lag": 0}, LAG_KEYS) == {"desiredReplicas": None, "lag": 0}
    assert merge_patch(live, {"replicas": 3}, RECONCILE_KEYS) == {"selector": None, "replicas": 3}


def test_a_spec_field_unset_is_removed_from_the_spec_last_handled() -> None:
    live = {"observedGeneration": 1, "lastHandledSpec": {"replicas": 2, "disruptionBudget": {"maxUnavailable": 1}}}
    new = {"observedGeneration": 2, "lastHandledSpec": {"replicas": 2}}
    assert merge_patch(live, new, RECONCILE_KEYS) == {
        "observedGeneration": 2,
        "lastHandledSpec": {"replicas": 2, "disruptionBudget": None},  # a merge patch of {"replicas": 2} keeps it
    }


SHOWN = {"lag": 1200, "partitions": 6, "throughput": 400.0, "desiredReplicas": 3}


@pytest.mark.parametrize(
    "change",
    [
        {"lag": 1299, "throughput": 439.0},  # under 100 messages, under 10% of 400 msgs/s
        {"lag": 1101},
        {"throughput": 360.5},
    ],
)
def test_a_minor_change_of_the_figures_waits_for_the_refresh(change: dict[str, Any]) -> None:
    observed = SHOWN | change
    assert not lag_status_due(SHOWN, observed, refresh_due=False)
    assert lag_status_due(SHOWN, observed, refresh_due=True)


@pytest.mark.parametrize(
    "change",
    [
        {"lag": 1320},  # 120 messages, 10% of the lag shown
        {"lag": 0},  # caught up
        {"throughput": 0.0},  # stopped
        {"throughput": 440.0},  # 10% of the throughput shown
        {"partitions": 12},
        {"desiredReplicas": 4},
        {"lastScaleTime": "2026-01-02T03:04:05Z"},
    ],
)
def test_a_change_a_user_acts_on_is_written_at_once(change: dict[str, Any]) -> None:
    assert lag_status_due(SHOWN, SHOWN | change, refresh_due=False)


def test_figures_appearing_or_going_away_are_written_at_once() -> None:
    assert lag_status_due({}, {"lag": 3, "partitions": 6}, refresh_due=False)
    unknown = {key: value for key, value in SHOWN.items() if key not in ("lag", "throughput", "partitions")}
    assert lag_status_due(SHOWN, unknown, refresh_due=False)


def test_small_lags_need_a_step_of_100_messages_and_the_same_figures_are_never_written() -> None:
    small = {"lag": 0, "throughput": 0.0}
    assert not lag_status_due(small, {"lag": 40, "throughput": 0.5}, refresh_due=False)
    assert lag_status_due(small, {"lag": 100, "throughput": 0.0}, refresh_due=False)
    assert lag_status_due({"lag": 40}, {"lag": 0}, refresh_due=False)  # back to 0 shows at once
    assert not lag_status_due(SHOWN, dict(SHOWN), refresh_due=True)
