"""The pure builders: one call from a typed pipeline to its ConfigMap, Deployment, config hash and worker count."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml
from sluice_operator import api, builders
from sluice_worker.manifest import load_pipeline
from sluice_worker.model import DataPipeline, PipelineError, parse_pipeline

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "gophers-r-us.yaml"
OWNER = api.Owner(name="gophers-r-us", namespace="shop", uid="1234-5678")


def pipeline(**spec: Any) -> DataPipeline:
    manifest = yaml.safe_load(EXAMPLE.read_text())
    manifest["metadata"]["namespace"] = "shop"
    manifest["spec"] = {**copy.deepcopy(manifest["spec"]), **spec}
    return parse_pipeline(manifest)


def children(model: DataPipeline, status: dict[str, Any] | None = None) -> builders.Children:
    return builders.build_children(
        OWNER, model, status or {}, default_image="sluice-worker:1.0", progress_deadline_seconds=90
    )


def deployment(model: DataPipeline) -> dict[str, Any]:
    return children(model).deployment


def container(made: dict[str, Any]) -> dict[str, Any]:
    (only,) = made["spec"]["template"]["spec"]["containers"]
    return dict(only)


def test_the_configmap_holds_a_pipeline_the_worker_loads(tmp_path: Path) -> None:
    model = pipeline(replicas=4, paused=True, image="custom:2", resources={"limits": {"memory": "1Gi"}})
    made = children(model).configmap
    assert made["metadata"]["name"] == "gophers-r-us-pipeline" and made["metadata"]["namespace"] == "shop"
    path = tmp_path / "pipeline.yaml"
    path.write_text(made["data"][builders.CONFIG_FILE])
    loaded = load_pipeline(path)
    assert loaded.metadata == model.metadata and loaded.group_id == "shop.gophers-r-us"
    # The Deployment's fields are left out: the worker does not need them, and scaling must not roll pods.
    assert loaded.spec == model.spec.model_copy(
        update={"replicas": 1, "paused": False, "image": None, "resources": loaded.spec.resources}
    )
    assert "replicas" not in yaml.safe_load(made["data"][builders.CONFIG_FILE])["spec"]


def test_the_config_hash_changes_with_the_config_only() -> None:
    def hash_of(model: DataPipeline) -> str:
        made = children(model)
        assert made.deployment["spec"]["template"]["metadata"]["annotations"][builders.CONFIG_HASH] == made.config_hash
        return made.config_hash

    base = hash_of(pipeline())
    assert hash_of(pipeline()) == base
    for deployment_only in (
        {"replicas": 5},
        {"paused": True},
        {"image": "x:1"},
        {"resources": {"requests": {"cpu": "1"}}},
        {"autoscaling": {"enabled": True, "maxReplicas": 6}},
        {"template": {"nodeSelector": {"disktype": "ssd"}}},
        {"disruptionBudget": {"maxUnavailable": 1}},
    ):
        assert hash_of(pipeline(**deployment_only)) == base, deployment_only
    assert hash_of(pipeline(terminationGracePeriodSeconds=60)) != base
    changed = pipeline()
    transform = changed.spec.transform.model_copy(update={"required": ["id"]})
    assert (
        hash_of(changed.model_copy(update={"spec": changed.spec.model_copy(update={"transform": transform})})) != base
    )


def test_the_workers_are_the_autoscalers_while_it_decides() -> None:
    autoscaled = pipeline(replicas=2, autoscaling={"enabled": True})
    decided = {"desiredReplicas": 5}
    assert builders.workers(autoscaled, decided) == 5  # a hand edit of spec.replicas never reaches the pods
    assert builders.workers(autoscaled, {}) == 2  # before its first decision
    assert builders.workers(pipeline(replicas=2), decided) == 2  # a leftover of autoscaling switched off
    assert builders.workers(pipeline(replicas=2, paused=True, autoscaling={"enabled": True}), decided) == 0
    made = children(autoscaled, {"desiredReplicas": 4})
    assert made.workers == made.deployment["spec"]["replicas"] == 4


def test_the_deployment_runs_the_worker_as_specified() -> None:
    made = deployment(pipeline(replicas=3, terminationGracePeriodSeconds=45, resources={"requests": {"cpu": "250m"}}))
    spec, meta = made["spec"], made["metadata"]
    assert (meta["name"], meta["namespace"], spec["replicas"], spec["progressDeadlineSeconds"]) == (
        "gophers-r-us",
        "shop",
        3,
        90,
    )
    assert meta["ownerReferences"] == [
        {"apiVersion": "sluice.dev/v1alpha1", "kind": "DataPipeline", "name": "gophers-r-us", "uid": "1234-5678",
         "controller": True}
    ]  # fmt: skip
    assert spec["selector"]["matchLabels"].items() <= spec["template"]["metadata"]["labels"].items()
    pod = spec["template"]["spec"]
    assert pod["terminationGracePeriodSeconds"] == 45
    assert pod["volumes"] == [
        {"name": "pipeline", "configMap": {"name": "gophers-r-us-pipeline"}},
        {"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}},
    ]
    worker = container(made)
    assert worker["image"] == "sluice-worker:1.0"
    assert worker["args"] == ["--pipeline", "/etc/sluice/pipeline.yaml"]
    assert "command" not in worker  # the image's entrypoint, tini, stays PID 1 and forwards SIGTERM
    assert worker["resources"] == {"requests": {"cpu": "250m"}}
    assert worker["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert worker["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert worker["ports"] == [{"name": "http", "containerPort": 8080, "protocol": "TCP"}]
    assert {"name": "SLUICE_POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}} in worker["env"]
    assert worker["envFrom"] == [{"secretRef": {"name": "gophers-r-us-credentials", "optional": True}}]
    assert spec["template"]["metadata"]["annotations"]["prometheus.io/port"] == "8080"


def test_the_workers_meet_the_restricted_pod_security_standard() -> None:
    """What `pod-security.kubernetes.io/enforce: restricted` demands, as the image's user, on a read-only root."""
    made = deployment(pipeline())
    pod, worker = made["spec"]["template"]["spec"], container(made)
    assert pod["securityContext"] == {
        "runAsNonRoot": True, "runAsUser": 10001, "runAsGroup": 10001, "fsGroup": 10001,
        "seccompProfile": {"type": "RuntimeDefault"},
    }  # fmt: skip
    assert worker["securityContext"] == {
        "allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}, "readOnlyRootFilesystem": True,
    }  # fmt: skip
    assert {"name": "tmp", "mountPath": "/tmp"} in worker["volumeMounts"]


def test_the_image_of_the_spec_wins_and_paused_means_zero_replicas() -> None:
    made = deployment(pipeline(image="registry.example/sluice-worker:2", paused=True, replicas=4))
    assert container(made)["image"] == "registry.example/sluice-worker:2"
    assert made["spec"]["replicas"] == 0
    assert "resources" not in container(deployment(pipeline()))


def test_one_call_makes_every_child() -> None:
    made = children(pipeline(replicas=3))
    assert made.by_kind() == {"ConfigMap": made.configmap, "Deployment": made.deployment}
    assert made.workers == 3
    config = made.configmap["data"][builders.CONFIG_FILE]
    assert made.config_hash == builders.config_hash(config) == builders.config_hash(builders.worker_config(pipeline()))


def worker_manifest(model: DataPipeline) -> dict[str, Any]:
    manifest = model.model_dump(mode="json", by_alias=True, exclude_none=True,
                                exclude={"spec": set(builders.DEPLOYMENT_FIELDS)})  # fmt: skip
    manifest["metadata"] = {"name": model.metadata.name, "namespace": model.metadata.namespace}
    return manifest


def with_department_table(table: dict[str, str]) -> DataPipeline:
    transform = yaml.safe_load(EXAMPLE.read_text())["spec"]["transform"]
    transform["lookups"]["department"]["table"] = table
    return pipeline(replicas=3, transform=transform)


def test_the_worker_config_is_the_text_earlier_operators_wrote() -> None:
    """The config is written with libyaml's emitter; an operator upgrade must not change its text (its hash would
    roll every pipeline's workers), so it must be what PyYAML's own emitter writes, strings of every kind included."""
    odd = {"Équipe ☃": "日本", "long": "x" * 200 + " y" * 50, "multi": "a\nb", "key: colon": "it's", "tab": "\t t",
           "true": "null", "~": " lead", "#x": "0o17", "2026-01-01": "1", "k" * 130: ""}  # fmt: skip
    for model in (pipeline(), with_department_table(odd)):
        pure = yaml.dump(worker_manifest(model), Dumper=yaml.SafeDumper, sort_keys=False)
        assert builders.worker_config(model) == pure


def test_keys_the_two_emitters_write_differently_load_the_same() -> None:
    """An empty key, or a long one that must be escaped, is written as `'': x` instead of `? ''`: such a pipeline's
    workers roll once when the operator is upgraded, and load the same config."""
    model = with_department_table({"": "misc", "é" * 70: "gophers"})
    assert yaml.safe_load(builders.worker_config(model)) == worker_manifest(model)


def test_the_pods_are_selected_by_a_stable_selector() -> None:
    assert builders.selector("p") == "app.kubernetes.io/name=sluice-worker,sluice.dev/pipeline=p"
    assert builders.labels("p")[api.MANAGED_BY] == api.FIELD_MANAGER


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (lambda d: d["spec"].update(replicas=7), ["spec.replicas 7 -> 1"]),
        (lambda d: d["spec"]["template"]["spec"]["containers"][0].update(image="evil:1"),
         ["image 'evil:1' -> 'sluice-worker:1.0'"]),
        (lambda d: d["spec"]["template"]["spec"].update(terminationGracePeriodSeconds=1),
         ["terminationGracePeriodSeconds 1 -> 30"]),
        (lambda d: d["status"].update(replicas=9), []),  # the status is not ours
    ],
    ids=["replicas", "image", "grace", "status"],
)  # fmt: skip
def test_drift_names_what_was_changed_by_hand(edit: Any, expected: list[str]) -> None:
    desired = deployment(pipeline())
    live = {**copy.deepcopy(desired), "status": {}}
    edit(live)
    assert builders.drift(desired, live) == expected


def test_drift_of_a_deleted_or_edited_configmap() -> None:
    desired = children(pipeline()).configmap
    assert builders.drift(desired, None) == ["deleted"]
    edited = copy.deepcopy(desired)
    edited["data"][builders.CONFIG_FILE] = "edited: true\n"
    (change,) = builders.drift(desired, edited)
    assert change.startswith("pipeline.yaml 'edited: true\\n' -> \"apiVersion: sluice.dev/v1alpha1")
    assert len(change) < 120


def test_the_template_places_the_workers_and_labels_them_beside_the_operators_own() -> None:
    spread = {"maxSkew": 1, "topologyKey": "topology.kubernetes.io/zone", "whenUnsatisfiable": "ScheduleAnyway"}
    template = {
        "labels": {"team": "gophers"},
        "annotations": {"prometheus.io/scrape": "false", "example.com/owner": "data"},
        "nodeSelector": {"disktype": "ssd"},
        "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": []}}},
        "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "sluice", "effect": "NoSchedule"}],
        "topologySpreadConstraints": [spread],
        "priorityClassName": "pipelines",
        "serviceAccountName": "gophers",
        "imagePullSecrets": ["regcred"],
    }
    made = deployment(pipeline(template=template))
    meta, pod = made["spec"]["template"]["metadata"], made["spec"]["template"]["spec"]
    assert meta["labels"] == {"team": "gophers", **builders.labels("gophers-r-us")}
    assert meta["annotations"]["prometheus.io/scrape"] == "false"  # a user may opt out of scraping
    assert meta["annotations"]["example.com/owner"] == "data" and builders.CONFIG_HASH in meta["annotations"]
    assert pod["nodeSelector"] == {"disktype": "ssd"}
    assert pod["affinity"] == template["affinity"] and pod["tolerations"] == template["tolerations"]
    assert pod["topologySpreadConstraints"] == [spread]
    assert (pod["priorityClassName"], pod["serviceAccountName"]) == ("pipelines", "gophers")
    assert pod["imagePullSecrets"] == [{"name": "regcred"}]
    assert pod["automountServiceAccountToken"] is False  # a named account still gets no token
    assert made["spec"]["selector"]["matchLabels"] == builders.selector_labels("gophers-r-us")
    plain = deployment(pipeline())["spec"]["template"]["spec"]
    assert not {"nodeSelector", "affinity", "tolerations", "serviceAccountName", "imagePullSecrets"} & set(plain)


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ({"labels": {"sluice.dev/pipeline": "other"}}, "spec.template.labels: sluice.dev/pipeline: the operator sets"),
        ({"labels": {"app.kubernetes.io/name": "x"}}, "spec.template.labels: app.kubernetes.io/name: the operator"),
        ({"nodeSelector": {"bad key!": "x"}}, "spec.template.nodeSelector: 'bad key!' is not a label key"),
        ({"serviceAccountName": "Not_A_Name"}, "spec.template.serviceAccountName: String should match pattern"),
        ({"imagePullSecrets": [""]}, "spec.template.imagePullSecrets[0]: String should match pattern"),
        ({"nodeSelect": {}}, "spec.template.nodeSelect: Extra inputs are not permitted"),
    ],
)
def test_a_template_the_model_refuses_names_the_field(template: dict[str, Any], expected: str) -> None:
    with pytest.raises(PipelineError) as raised:
        pipeline(template=template)
    assert str(raised.value).startswith(expected), str(raised.value)


def test_a_disruption_budget_guards_the_workers_only_when_asked() -> None:
    assert children(pipeline()).disruption_budget is None
    assert list(children(pipeline()).by_kind()) == ["ConfigMap", "Deployment"]
    made = children(pipeline(disruptionBudget={"maxUnavailable": "25%"}))
    budget = made.disruption_budget
    assert budget is not None and list(made.by_kind()) == ["ConfigMap", "Deployment", "PodDisruptionBudget"]
    assert (budget["apiVersion"], budget["metadata"]["name"]) == ("policy/v1", "gophers-r-us")
    assert budget["metadata"]["ownerReferences"] == made.deployment["metadata"]["ownerReferences"]
    assert budget["spec"] == {
        "selector": {"matchLabels": builders.selector_labels("gophers-r-us")},
        "maxUnavailable": "25%",
    }
    assert children(pipeline(disruptionBudget={"minAvailable": 2})).disruption_budget["spec"]["minAvailable"] == 2  # type: ignore[index]


@pytest.mark.parametrize(
    ("budget", "expected"),
    [
        ({}, "spec.disruptionBudget: set exactly one of maxUnavailable and minAvailable"),
        ({"maxUnavailable": 1, "minAvailable": 1}, "set exactly one of maxUnavailable and minAvailable"),
        ({"maxUnavailable": -1}, "spec.disruptionBudget: maxUnavailable must not be negative"),
        ({"minAvailable": "half"}, "spec.disruptionBudget.minAvailable"),
    ],
)
def test_a_disruption_budget_the_model_refuses_names_the_field(budget: dict[str, Any], expected: str) -> None:
    with pytest.raises(PipelineError) as raised:
        pipeline(disruptionBudget=budget)
    assert expected in str(raised.value), str(raised.value)


def test_secrets_are_mounted_as_files_and_their_version_rolls_the_pods() -> None:
    source = {**pipeline().spec.source.model_dump(by_alias=True, exclude_none=True),
              "tls": {"ca": {"secret": "kafka-ca"}}, "auth": {"secret": "kafka-login"}}  # fmt: skip
    model = pipeline(source=source)
    made = builders.build_children(
        OWNER, model, {}, default_image="w:1", progress_deadline_seconds=90, credentials_version="v1"
    ).deployment
    template = made["spec"]["template"]
    assert template["metadata"]["annotations"][builders.CREDENTIALS_VERSION] == "v1"
    (volume,) = [v for v in template["spec"]["volumes"] if v["name"] == "credentials"]
    assert volume["projected"]["sources"] == [
        {"secret": {"name": "kafka-ca", "items": [{"key": "ca.crt", "path": "source/ca.crt"}]}},
        {"secret": {"name": "kafka-login", "items": [{"key": "username", "path": "source/username"},
                                                     {"key": "password", "path": "source/password"}]}},
    ]  # fmt: skip
    assert {"name": "credentials", "mountPath": "/etc/sluice/credentials", "readOnly": True} in (
        container(made)["volumeMounts"]
    )
    config = children(model).configmap["data"][builders.CONFIG_FILE]
    assert "kafka-login" in config and "password:" not in config  # references only
    # Without Secrets: no volume, no annotation.
    plain = deployment(pipeline())["spec"]["template"]
    assert builders.CREDENTIALS_VERSION not in plain["metadata"]["annotations"]
    assert all(v["name"] != "credentials" for v in plain["spec"]["volumes"])
