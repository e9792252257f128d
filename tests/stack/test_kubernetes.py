"""Smoke tests: the local control plane is a real Kubernetes that stores, serves and reconciles objects."""

from __future__ import annotations

import json
import subprocess
import uuid

import pytest
from kubernetes import client, config
from sluice_stack.config import VERSIONS

from tests.waiting import wait_for

pytestmark = pytest.mark.kube


@pytest.fixture(scope="module")
def api(kube):  # type: ignore[no-untyped-def]
    return config.new_client_from_config(config_file=kube.kubeconfig)


@pytest.fixture
def namespace(api):  # type: ignore[no-untyped-def]
    name = f"smoke-{uuid.uuid4().hex[:8]}"
    client.CoreV1Api(api).create_namespace({"metadata": {"name": name}})
    yield name
    client.CoreV1Api(api).delete_namespace(name)


def test_kubectl_and_apiserver_report_the_pinned_version(kube) -> None:  # type: ignore[no-untyped-def]
    out = subprocess.run(
        ["kubectl", "version", "-o", "json"], env=kube.env, check=True, capture_output=True, text=True
    ).stdout
    versions = json.loads(out)
    expected = f"v{VERSIONS['KUBERNETES_VERSION']}"
    assert versions["serverVersion"]["gitVersion"] == expected
    assert versions["clientVersion"]["gitVersion"] == expected


def test_rbac_is_enforced(kube) -> None:  # type: ignore[no-untyped-def]
    def can_i(*args: str) -> str:
        return subprocess.run(
            ["kubectl", "auth", "can-i", *args], env=kube.env, capture_output=True, text=True
        ).stdout.strip()

    assert can_i("create", "deployments") == "yes"  # the admin
    assert can_i("create", "deployments", "--as=system:serviceaccount:default:default") == "no"


def test_crd_and_custom_object_round_trip(api, namespace) -> None:  # type: ignore[no-untyped-def]
    group, plural = "smoke.sluice.dev", f"widgets{uuid.uuid4().hex[:6]}"
    crd = {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.{group}"},
        "spec": {
            "group": group,
            "scope": "Namespaced",
            "names": {"plural": plural, "singular": plural[:-1], "kind": "Widget" + plural[-6:].upper()},
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "properties": {"spec": {"type": "object", "properties": {"size": {"type": "integer"}}}},
                        }
                    },
                }
            ],
        },
    }
    ext = client.ApiextensionsV1Api(api)
    ext.create_custom_resource_definition(crd)
    try:
        objects = client.CustomObjectsApi(api)
        body = {
            "apiVersion": f"{group}/v1",
            "kind": crd["spec"]["names"]["kind"],
            "metadata": {"name": "w1"},
            "spec": {"size": 3},
        }

        def created() -> bool:
            try:
                objects.create_namespaced_custom_object(group, "v1", namespace, plural, body)
            except client.ApiException as exc:
                if exc.status != 404:
                    raise
                raise AssertionError(f"not served yet: {exc.status} {exc.reason}") from exc
            return True

        wait_for("the new CRD to be served", created, timeout=30)
        read = objects.get_namespaced_custom_object(group, "v1", namespace, plural, "w1")
        assert read["spec"] == {"size": 3}
        assert read["metadata"]["uid"]
    finally:
        ext.delete_custom_resource_definition(f"{plural}.{group}")


def test_controller_manager_creates_replicasets_and_kwok_runs_pods(api, namespace) -> None:  # type: ignore[no-untyped-def]
    labels = {"app": "smoke"}
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "smoke"},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"containers": [{"name": "c", "image": "example.invalid/none:1"}]},
            },
        },
    }
    apps = client.AppsV1Api(api)
    created = apps.create_namespaced_deployment(namespace, deployment)

    def replicasets() -> list[client.V1ReplicaSet]:
        return apps.list_namespaced_replica_set(namespace, label_selector="app=smoke").items

    (rs,) = wait_for("the Deployment's ReplicaSet", replicasets, timeout=60)
    assert rs.metadata.owner_references[0].uid == created.metadata.uid

    # kwok plays the kubelet: the scheduled pods become available, so the Deployment does too.
    wait_for(
        "2 available replicas",
        lambda: apps.read_namespaced_deployment_status("smoke", namespace).status.available_replicas == 2,
        timeout=60,
    )

    # Owner-reference garbage collection: deleting the Deployment removes its ReplicaSet.
    apps.delete_namespaced_deployment("smoke", namespace, propagation_policy="Background")
    wait_for("the ReplicaSet to be garbage-collected", lambda: not replicasets(), timeout=60)
    assert replicasets() == []
