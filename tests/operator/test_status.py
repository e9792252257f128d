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
from sluice_operator.api import DEPLOYMENTS, PODS
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


HOOK_ERROR = (
    "sluice-worker: invalid pipeline /etc/sluice/pipeline.yaml:\n"
    "spec.transform.python: cannot import 'no_such_module': No module named 'no_such_module'"
)


def crash_looping(pod: dict[str, Any]) -> dict[str, Any]:
    """The status a kubelet gives a worker whose container keeps exiting 2 (what kwok never does)."""
    worker = {
        "name": "worker", "ready": False, "started": False, "restartCount": 3,
        "image": pod["spec"]["containers"][0]["image"], "imageID": "",
        "state": {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 40s restarting failed container"}},
        "lastState": {"terminated": {"exitCode": 2, "reason": "Error", "message": HOOK_ERROR + "\n"}},
    }  # fmt: skip
    status = pod["status"]
    conditions = [c for c in status.get("conditions", []) if c["type"] not in ("Ready", "ContainersReady")]
    not_ready = {"status": "False", "reason": "ContainersNotReady", "lastTransitionTime": "2026-12-01T00:00:00Z"}
    conditions += [{"type": "Ready", **not_ready}, {"type": "ContainersReady", **not_ready}]
    return {**status, "containerStatuses": [worker], "conditions": conditions}


def test_crash_looping_workers_are_told_in_the_conditions_with_their_last_words(
    operator: Operator, kubectl: Kubectl, admin: Kube, namespace: str
) -> None:
    kubectl.apply(sample(namespace, replicas=1))
    wait_for(lambda: condition(pipeline(admin, namespace), "Ready").get("status") == "True", what="Ready=True")
    (pod,) = admin.list(PODS, namespace, selector=f"sluice.dev/pipeline={NAME}")
    assert pod["spec"]["containers"][0]["terminationMessagePolicy"] == "FallbackToLogsOnError"
    pod["status"] = crash_looping(pod)
    admin.request("PUT", PODS.path(namespace, pod["metadata"]["name"]) + "/status", pod)

    failing = wait_for(
        lambda: (p := pipeline(admin, namespace)) and condition(p, "Ready").get("reason") == "WorkersFailing" and p,
        what="Ready=False with reason WorkersFailing",
    )
    assert conditions(failing)["Degraded"] == ("True", "WorkersFailing")
    message = condition(failing, "Ready")["message"]
    assert message.startswith(f"0/1 workers available; failing: {pod['metadata']['name']}: CrashLoopBackOff, ")
    assert "exit code 2 (Error), 3 restarts: " in message
    assert message.endswith("cannot import 'no_such_module': No module named 'no_such_module'")
    listed = kubectl.run("get", "datapipeline", NAME, "-n", namespace).stdout
    assert "WorkersFailing" in listed.splitlines()[1], listed  # the REASON column, without -o wide
    assert "No module named 'no_such_module'" in kubectl.run("describe", "datapipeline", NAME, "-n", namespace).stdout

    # The container runs again and turns ready: the pipeline says so without waiting for a resync.
    pod = admin.get(PODS, namespace, pod["metadata"]["name"])
    assert pod is not None
    running = {**pod["status"]["containerStatuses"][0], "ready": True, "started": True, "state": {"running": {}}}
    ready = [
        {**c, "status": "True"} if c["type"] in ("Ready", "ContainersReady") else c for c in pod["status"]["conditions"]
    ]
    pod["status"] = {**pod["status"], "containerStatuses": [running], "conditions": ready}
    admin.request("PUT", PODS.path(namespace, pod["metadata"]["name"]) + "/status", pod)
    recovered = wait_for(
        lambda: (p := pipeline(admin, namespace)) and condition(p, "Ready").get("status") == "True" and p,
        what="Ready=True once the worker runs again",
    )
    assert conditions(recovered)["Degraded"] == ("False", "AsExpected")


def test_workers_are_admitted_where_pods_must_be_restricted(
    operator: Operator, kubectl: Kubectl, admin: Kube, namespace: str
) -> None:
    """The API server's Pod Security admission enforcing `restricted` admits the worker pods (it refused them
    for want of runAsNonRoot), so the pipeline turns Ready there."""
    kubectl.run("label", "namespace", namespace, "pod-security.kubernetes.io/enforce=restricted")
    kubectl.apply(sample(namespace, replicas=2))
    done = wait_for(
        lambda: (p := pipeline(admin, namespace)) and condition(p, "Ready").get("status") == "True" and p,
        what="Ready=True in a restricted namespace",
    )
    assert conditions(done)["Degraded"] == ("False", "AsExpected")
    pods = admin.list(PODS, namespace, selector=f"sluice.dev/pipeline={NAME}")
    assert len(pods) == 2 and all(p["spec"]["securityContext"]["runAsNonRoot"] for p in pods)
    # A pod that breaks the profile is refused in this namespace: the check above is a real one.
    bare = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "bare", "namespace": namespace},
            "spec": {"containers": [{"name": "c", "image": "sluice-worker:0.1.0"}]}}  # fmt: skip
    refused = kubectl.apply(bare, check=False)
    assert refused.returncode != 0 and 'violates PodSecurity "restricted' in refused.stderr, refused.stderr
