"""The DataPipeline's status follows its Deployment: counts, Ready, Progressing and Degraded."""

from __future__ import annotations

from typing import Any

import pytest
from operator_harness import (
    PROGRESS_DEADLINE_SECONDS,
    Kubectl,
    Operator,
    condition,
    pipeline,
    sample,
    wait_for,
)
from sluice_operator.api import DEPLOYMENTS
from sluice_operator.kube import Kube

pytestmark = pytest.mark.kube

NAME = "gophers-r-us"
CONDITION_KEYS = {"type", "status", "observedGeneration", "lastTransitionTime", "reason", "message"}


def conditions(obj: dict[str, Any]) -> dict[str, tuple[str, str]]:
    return {c["type"]: (c["status"], c["reason"]) for c in obj.get("status", {}).get("conditions", [])}


def test_ready_when_the_workers_are_available(
    operator: Operator, kubectl: Kubectl, admin: Kube, namespace: str
) -> None:
    kubectl.apply(sample(namespace, replicas=2))
    done = wait_for(
        lambda: (p := pipeline(admin, namespace)) and condition(p, "Ready").get("status") == "True" and p,
        what="Ready=True",
    )
    assert conditions(done) == {
        "Ready": ("True", "ReplicasAvailable"),
        "Progressing": ("False", "RolloutComplete"),
        "Degraded": ("False", "AsExpected"),
    }
    for item in done["status"]["conditions"]:  # the metav1.Condition shape
        assert set(item) == CONDITION_KEYS and item["observedGeneration"] == done["metadata"]["generation"]
    made = admin.get(DEPLOYMENTS, namespace, NAME)
    assert made is not None
    status = done["status"]
    assert status["availableReplicas"] == made["status"]["availableReplicas"] == 2
    assert status["readyReplicas"] == status["replicas"] == 2
    assert status["selector"] == "app.kubernetes.io/name=sluice-worker,sluice.dev/pipeline=gophers-r-us"


def test_degraded_when_the_workers_cannot_be_scheduled(
    operator: Operator, kubectl: Kubectl, admin: Kube, namespace: str
) -> None:
    # The fake node has 32 CPUs: pods asking for 64 stay Pending until the progress deadline passes.
    kubectl.apply(sample(namespace, resources={"requests": {"cpu": "64"}}))
    progressing = wait_for(
        lambda: (p := pipeline(admin, namespace)) and condition(p, "Progressing").get("status") == "True" and p,
        what="Progressing=True",
    )
    assert condition(progressing, "Ready")["status"] == "False"

    degraded = wait_for(
        lambda: (p := pipeline(admin, namespace)) and condition(p, "Degraded").get("status") == "True" and p,
        timeout=PROGRESS_DEADLINE_SECONDS + 45,
        what="Degraded=True",
    )
    assert conditions(degraded) == {
        "Ready": ("False", "ReplicasUnavailable"),
        "Progressing": ("False", "ProgressDeadlineExceeded"),
        "Degraded": ("True", "ProgressDeadlineExceeded"),
    }
    assert "has timed out progressing" in condition(degraded, "Degraded")["message"]
    assert degraded["status"]["availableReplicas"] == 0

    kubectl.apply(sample(namespace, resources={"requests": {"cpu": "100m"}}))
    recovered = wait_for(
        lambda: (p := pipeline(admin, namespace)) and condition(p, "Ready").get("status") == "True" and p,
        what="Ready=True once the workers fit",
    )
    assert conditions(recovered)["Degraded"] == ("False", "AsExpected")
