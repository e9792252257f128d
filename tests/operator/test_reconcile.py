"""The reconciler against a real API server: children, scaling, config rollouts, pause, drift and deletion."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest
from operator_harness import Kubectl, Operator, condition, events, pipeline, sample, wait_for
from sluice_operator.api import CONFIGMAPS, DEPLOYMENTS, DISRUPTION_BUDGETS, PIPELINE_LABEL, PIPELINES, PODS
from sluice_operator.builders import CONFIG_FILE, CONFIG_HASH
from sluice_operator.kube import Kube

pytestmark = pytest.mark.kube

NAME = "gophers-r-us"


def deployment(admin: Kube, namespace: str) -> dict[str, Any] | None:
    return admin.get(DEPLOYMENTS, namespace, NAME)


def configmap(admin: Kube, namespace: str) -> dict[str, Any] | None:
    return admin.get(CONFIGMAPS, namespace, f"{NAME}-pipeline")


def config_hash(obj: dict[str, Any]) -> str:
    return str(obj["spec"]["template"]["metadata"]["annotations"][CONFIG_HASH])


def ready(admin: Kube, namespace: str) -> dict[str, Any] | None:
    """The pipeline once its status describes its current generation and says Ready=True."""
    obj = pipeline(admin, namespace)
    current = obj.get("status", {}).get("observedGeneration") == obj["metadata"]["generation"]
    return obj if current and condition(obj, "Ready").get("status") == "True" else None


def test_the_sample_becomes_a_configmap_and_a_deployment(
    operator: Operator, kubectl: Kubectl, admin: Kube, namespace: str
) -> None:
    kubectl.apply(sample(namespace, terminationGracePeriodSeconds=45))
    made = wait_for(lambda: deployment(admin, namespace), what="the Deployment")
    owner = pipeline(admin, namespace)

    config = configmap(admin, namespace)
    assert config is not None
    assert "item_name" in config["data"][CONFIG_FILE] and "store_events" in config["data"][CONFIG_FILE]
    for child in (made, config):
        (ref,) = child["metadata"]["ownerReferences"]
        assert (ref["kind"], ref["name"], ref["uid"], ref["controller"]) == (
            "DataPipeline",
            NAME,
            owner["metadata"]["uid"],
            True,
        )

    spec = made["spec"]
    pod = spec["template"]["spec"]
    (worker,) = pod["containers"]
    assert spec["replicas"] == 1
    assert worker["image"] == "sluice-worker:test"  # the operator's default: the sample sets no image
    assert worker["args"] == ["--pipeline", "/etc/sluice/pipeline.yaml"]
    assert "command" not in worker  # the image's entrypoint, tini, stays PID 1 and forwards SIGTERM
    assert pod["terminationGracePeriodSeconds"] == 45
    assert worker["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert worker["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert {"name": "http", "containerPort": 8080, "protocol": "TCP"} in worker["ports"]
    assert worker["envFrom"] == [{"secretRef": {"name": f"{NAME}-credentials", "optional": True}}]
    assert config_hash(made) == owner_hash(admin, namespace)

    done = wait_for(lambda: ready(admin, namespace), what="Ready=True")
    assert done["status"]["observedGeneration"] == done["metadata"]["generation"]
    assert done["status"]["availableReplicas"] == 1
    assert len(events(admin, namespace, "Created")) == 1
    assert "finalizers" not in done["metadata"]  # the children go by garbage collection
    # The operator writes nothing into the pipeline's metadata: what it handled is recorded in its status.
    assert set(done["metadata"].get("annotations") or {}) <= {"kubectl.kubernetes.io/last-applied-configuration"}
    assert done["status"]["lastHandledSpec"] == done["spec"]
    managers = {(m["manager"], m["operation"]) for m in made["metadata"]["managedFields"]}
    assert ("sluice-operator", "Apply") in managers


def owner_hash(admin: Kube, namespace: str) -> str:
    return str(wait_for(lambda: pipeline(admin, namespace).get("status", {}).get("configHash"), what="configHash"))


def test_kubectl_scale_scales_the_workers(operator: Operator, kubectl: Kubectl, admin: Kube, namespace: str) -> None:
    kubectl.apply(sample(namespace))
    wait_for(lambda: ready(admin, namespace), what="Ready=True")

    kubectl.run("scale", "-n", namespace, f"dp/{NAME}", "--replicas=5")
    wait_for(lambda: (deployment(admin, namespace) or {}).get("spec", {}).get("replicas") == 5, what="5 replicas")
    done = wait_for(lambda: ready(admin, namespace), what="Ready=True with 5 workers")
    assert (done["status"]["replicas"], done["status"]["availableReplicas"]) == (5, 5)

    table = kubectl.run("get", "dp", "-n", namespace).stdout.splitlines()
    assert table[0].split() == ["NAME", "READY", "REASON", "REPLICAS", "AVAILABLE", "LAG", "TOPICS", "AGE"]
    # LAG blank: no Kafka at :9092
    assert table[1].split()[:6] == [NAME, "True", "ReplicasAvailable", "5", "5", '["store-events"]']
    (scaled,) = events(admin, namespace, "Scaled")
    assert scaled["message"] == "Scaled from 1 to 5 workers"


def _new_id_path(spec: dict[str, Any]) -> None:
    spec["transform"]["fields"]["id"]["path"] = "$.order.id"


def _longer_grace(spec: dict[str, Any]) -> None:
    spec["terminationGracePeriodSeconds"] = 60


@pytest.mark.parametrize("change", [_longer_grace, _new_id_path], ids=["grace-period", "transform"])
def test_a_config_change_rolls_the_pods(
    operator: Operator,
    kubectl: Kubectl,
    admin: Kube,
    namespace: str,
    change: Callable[[dict[str, Any]], None],
) -> None:
    kubectl.apply(sample(namespace))
    wait_for(lambda: ready(admin, namespace), what="Ready=True")
    before = deployment(admin, namespace)
    assert before is not None

    changed = sample(namespace)
    change(changed["spec"])
    kubectl.apply(changed)

    def rolled() -> dict[str, Any] | None:
        made = deployment(admin, namespace)
        return made if made is not None and config_hash(made) != config_hash(before) else None

    after = wait_for(rolled, what="a new config hash in the pod template")
    if change is _longer_grace:
        assert after["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] == 60
    else:
        config = configmap(admin, namespace)
        assert config is not None and "$.order.id" in config["data"][CONFIG_FILE]
    done = wait_for(lambda: ready(admin, namespace), what="the rollout to finish")
    assert done["status"]["configHash"] == config_hash(after)
    (updated,) = events(admin, namespace, "Updated")
    assert updated["message"].startswith("spec.terminationGracePeriodSeconds changed" if change is _longer_grace
                                         else "spec.transform changed")  # fmt: skip


def test_pause_scales_to_zero_and_resume_scales_back(
    operator: Operator, kubectl: Kubectl, admin: Kube, namespace: str
) -> None:
    kubectl.apply(sample(namespace, replicas=3))
    wait_for(lambda: ready(admin, namespace), what="Ready=True")
    config_before = configmap(admin, namespace)

    kubectl.run("patch", "-n", namespace, f"dp/{NAME}", "--type=merge", "-p", '{"spec":{"paused":true}}')
    paused = wait_for(
        lambda: (p := ready(admin, namespace)) and condition(p, "Ready")["reason"] == "Paused" and p,
        what="Ready=True (Paused) with no workers",
    )
    assert paused["spec"]["replicas"] == 3 and paused["status"]["replicas"] == 0
    made = deployment(admin, namespace)
    assert made is not None and made["spec"]["replicas"] == 0
    config = configmap(admin, namespace)
    assert config is not None and config_before is not None
    assert config["data"] == config_before["data"]  # the config is kept

    kubectl.run("patch", "-n", namespace, f"dp/{NAME}", "--type=merge", "-p", '{"spec":{"paused":false}}')
    resumed = wait_for(
        lambda: (p := ready(admin, namespace)) and p["status"]["availableReplicas"] == 3 and p,
        what="3 workers again",
    )
    assert condition(resumed, "Ready")["reason"] == "ReplicasAvailable"
    assert [len(events(admin, namespace, reason)) for reason in ("Paused", "Resumed")] == [1, 1]


def test_drift_is_repaired(operator: Operator, kubectl: Kubectl, admin: Kube, namespace: str) -> None:
    kubectl.apply(sample(namespace, replicas=2))
    wait_for(lambda: ready(admin, namespace), what="Ready=True")
    original = deployment(admin, namespace)
    assert original is not None

    kubectl.run("delete", "-n", namespace, "deployment", NAME)
    wait_for(
        lambda: (d := deployment(admin, namespace)) and d["metadata"]["uid"] != original["metadata"]["uid"],
        what="the Deployment to be recreated",
    )

    kubectl.run("scale", "-n", namespace, "deployment", NAME, "--replicas=7")
    wait_for(lambda: (deployment(admin, namespace) or {}).get("spec", {}).get("replicas") == 2, what="2 replicas")

    kubectl.run("patch", "-n", namespace, "configmap", f"{NAME}-pipeline", "--type=merge",
                "-p", '{"data":{"pipeline.yaml":"edited: by hand"}}')  # fmt: skip
    wait_for(
        lambda: "edited" not in (configmap(admin, namespace) or {}).get("data", {}).get(CONFIG_FILE, "edited"),
        what="the ConfigMap to be restored",
    )
    wait_for(lambda: ready(admin, namespace), what="Ready=True after the repairs")
    # A deletion is always told, once its watch event is handled: on a busy machine that may come after another
    # event (a worker pod's) already had the Deployment restored. An edit that another reconcile undid before
    # its event was handled may not be told.
    messages = wait_for(
        lambda: "Deployment gophers-r-us: deleted; restored" in (m := [e["message"] for e in events(
            admin, namespace, "DriftRepaired")]) and m,
        what="a DriftRepaired event for the deleted Deployment",
    )  # fmt: skip
    assert all(m.startswith(("Deployment gophers-r-us: ", "ConfigMap gophers-r-us-pipeline: ")) for m in messages)


def test_deleting_the_pipeline_garbage_collects_its_children(
    operator: Operator, kubectl: Kubectl, admin: Kube, namespace: str
) -> None:
    kubectl.apply(sample(namespace))
    wait_for(lambda: deployment(admin, namespace), what="the Deployment")

    kubectl.run("delete", "-n", namespace, f"dp/{NAME}")
    wait_for(
        lambda: deployment(admin, namespace) is None and configmap(admin, namespace) is None,
        what="the garbage collector to delete the Deployment and the ConfigMap",
    )
    assert pipeline_gone(admin, namespace)


def pipeline_gone(admin: Kube, namespace: str) -> bool:
    return admin.get(PIPELINES, namespace, NAME) is None


def test_a_spec_the_model_refuses_is_reported_once_and_leaves_the_workers(
    operator: Operator, kubectl: Kubectl, admin: Kube, namespace: str
) -> None:
    kubectl.apply(sample(namespace))
    wait_for(lambda: ready(admin, namespace), what="Ready=True")
    running_hash = config_hash(deployment(admin, namespace) or {})

    # The CRD cannot see that a consumerConfig key belongs to the worker: the model can.
    bad = sample(namespace)
    bad["spec"]["source"]["consumerConfig"] = {"group.id": "stolen"}
    kubectl.apply(bad)
    invalid = wait_for(
        lambda: (
            (p := pipeline(admin, namespace))
            and condition(p, "Ready").get("reason") == "InvalidSpec"
            and p["status"]["observedGeneration"] == p["metadata"]["generation"]
            and p
        ),
        what="Ready=False (InvalidSpec)",
    )
    ready_condition = condition(invalid, "Ready")
    assert ready_condition["status"] == "False"
    assert ready_condition["message"].startswith("spec.source.consumerConfig: 'group.id' is managed by the worker")
    assert condition(invalid, "Degraded")["status"] == "True"
    assert config_hash(deployment(admin, namespace) or {}) == running_hash  # the workers keep the last good config

    # No retry storm: the object settles (its status records the spec handled, once), and one event is posted.
    wait_for(lambda: events(admin, namespace, "InvalidSpec"), what="the InvalidSpec event")
    wait_for(lambda: _unchanged_for(admin, namespace, seconds=3), what="three quiet seconds")
    assert len(events(admin, namespace, "InvalidSpec")) == 1

    kubectl.apply(sample(namespace))
    wait_for(lambda: ready(admin, namespace), what="Ready=True once the spec is fixed")


def _unchanged_for(admin: Kube, namespace: str, seconds: float) -> bool:
    """Whether the pipeline's resourceVersion stays the same for `seconds` (a window, hence the sleep)."""
    version = pipeline(admin, namespace)["metadata"]["resourceVersion"]
    time.sleep(seconds)
    return bool(pipeline(admin, namespace)["metadata"]["resourceVersion"] == version)


def test_a_deployment_the_pipeline_does_not_own_is_left_alone(
    operator: Operator, kubectl: Kubectl, admin: Kube, namespace: str
) -> None:
    kubectl.run("create", "deployment", NAME, "-n", namespace, "--image=someone/else:1")
    kubectl.apply(sample(namespace))
    conflict = wait_for(
        lambda: (p := pipeline(admin, namespace)) and condition(p, "Ready").get("reason") == "NameConflict" and p,
        what="Ready=False (NameConflict)",
    )
    assert (
        "Deployment gophers-r-us already exists and is controlled by nothing" in condition(conflict, "Ready")["message"]
    )
    assert container_image(deployment(admin, namespace)) == "someone/else:1"
    assert configmap(admin, namespace) is None


def test_children_the_api_server_refuses_are_reported(
    operator: Operator, kubectl: Kubectl, admin: Kube, namespace: str
) -> None:
    # Valid quantities, but a request above its limit: only the Deployment's own validation sees that.
    kubectl.apply(sample(namespace, resources={"requests": {"cpu": "2"}, "limits": {"cpu": "1"}}))
    failed = wait_for(
        lambda: (p := pipeline(admin, namespace)) and condition(p, "Ready").get("reason") == "ApplyFailed" and p,
        what="Ready=False (ApplyFailed)",
    )
    assert "must be less than or equal to cpu limit" in condition(failed, "Degraded")["message"]
    assert deployment(admin, namespace) is None
    kubectl.apply(sample(namespace, resources={"requests": {"cpu": "100m"}, "limits": {"cpu": 1}}))
    wait_for(lambda: ready(admin, namespace), what="Ready=True once the resources are valid")
    assert container_image(deployment(admin, namespace)) == "sluice-worker:test"


def test_the_template_places_and_labels_the_worker_pods(
    operator: Operator, kubectl: Kubectl, admin: Kube, namespace: str
) -> None:
    kubectl.run("create", "serviceaccount", "gophers", "-n", namespace)
    toleration = {"key": "dedicated", "operator": "Equal", "value": "pipelines", "effect": "NoSchedule"}
    template = {
        "labels": {"team": "gophers"},
        "annotations": {"example.com/owner": "data"},
        "nodeSelector": {"type": "kwok"},  # the fake node's label: the pods are still scheduled
        "tolerations": [toleration],
        "serviceAccountName": "gophers",
    }
    kubectl.apply(sample(namespace, replicas=2, template=template))
    wait_for(lambda: ready(admin, namespace), what="Ready=True with the template")
    pods = admin.list(PODS, namespace, selector=f"sluice.dev/pipeline={NAME},team=gophers")
    assert len(pods) == 2, [p["metadata"]["labels"] for p in pods]
    for pod in pods:
        spec = pod["spec"]
        assert pod["metadata"]["annotations"]["example.com/owner"] == "data"
        assert spec["nodeSelector"] == {"type": "kwok"} and toleration in spec["tolerations"]
        assert spec["serviceAccountName"] == "gophers" and spec["nodeName"] == "kwok-node-0"

    # An affinity the API server refuses: the pipeline says why, in its words, and the workers stay as they are.
    broken = {**template, "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {}}}}
    kubectl.apply(sample(namespace, replicas=2, template=broken))
    failed = wait_for(
        lambda: (p := pipeline(admin, namespace)) and condition(p, "Ready").get("reason") == "ApplyFailed" and p,
        what="Ready=False (ApplyFailed) for a refused affinity",
    )
    message = condition(failed, "Degraded")["message"]
    assert "spec.template.spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution" in message
    assert len(admin.list(PODS, namespace, selector=f"sluice.dev/pipeline={NAME}")) == 2


def test_a_disruption_budget_follows_the_spec_and_goes_when_unset(
    operator: Operator, kubectl: Kubectl, admin: Kube, namespace: str
) -> None:
    kubectl.apply(sample(namespace, replicas=3, disruptionBudget={"maxUnavailable": 1}))
    # The disruption controller counts the ready workers: a drain may take one of three at a time.
    budget = wait_for(
        lambda: (b := admin.get(DISRUPTION_BUDGETS, namespace, NAME)) and b.get("status", {}).get("currentHealthy") == 3
        and b,
        what="a PodDisruptionBudget counting 3 healthy workers",
    )  # fmt: skip
    assert budget["spec"]["maxUnavailable"] == 1 and budget["status"]["disruptionsAllowed"] == 1
    assert budget["spec"]["selector"]["matchLabels"] == {
        "app.kubernetes.io/name": "sluice-worker",
        PIPELINE_LABEL: NAME,
    }

    kubectl.apply(sample(namespace, replicas=3, disruptionBudget={"minAvailable": "100%"}))
    budget = wait_for(
        lambda: (b := admin.get(DISRUPTION_BUDGETS, namespace, NAME)) and "minAvailable" in b["spec"]
        and b.get("status", {}).get("observedGeneration") == b["metadata"]["generation"] and b,
        what="the budget switched to minAvailable",
    )  # fmt: skip
    assert "maxUnavailable" not in budget["spec"] and budget["status"]["disruptionsAllowed"] == 0

    kubectl.apply(sample(namespace, replicas=3))
    wait_for(lambda: admin.get(DISRUPTION_BUDGETS, namespace, NAME) is None, what="the budget deleted once unset")
    # The same reconcile then writes the status of this generation: the budget may be seen gone a moment before.
    wait_for(lambda: ready(admin, namespace), what="Ready=True for the generation without a budget")


def container_image(obj: dict[str, Any] | None) -> str:
    assert obj is not None
    return str(obj["spec"]["template"]["spec"]["containers"][0]["image"])
