"""The kind suite's own manifests are valid wherever it runs: pinned to the stack's versions, persistent where the
scenarios delete pods, and accepted by a real API server (server-side dry run on the local control plane)."""

from __future__ import annotations

import subprocess
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml
from sluice_stack.config import VERSIONS

from .cluster import MANIFESTS, NODE_IMAGE, pinned_versions

pytestmark = pytest.mark.kube


def documents(path: Path) -> list[dict]:  # type: ignore[type-arg]
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def statefulsets() -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in documents(MANIFESTS / "data-services.yaml") if d["kind"] == "StatefulSet"}


def container(statefulset: dict[str, Any]) -> dict[str, Any]:
    (only,) = statefulset["spec"]["template"]["spec"]["containers"]
    return dict(only)


def test_data_services_use_the_stacks_versions() -> None:
    """The images hack/build-data-images.sh builds from the jars the local stack runs, at its pinned versions; the
    suite swaps in others (upstream ones) by container name, so the names must stay those of the images."""
    versions = pinned_versions()
    images = {name: container(s)["image"] for name, s in statefulsets().items()}
    assert images == {name: f"sluice.local/{name}:{versions[name]}" for name in ("kafka", "cassandra")}
    assert {container(s)["name"] for s in statefulsets().values()} == {"kafka", "cassandra"}
    # Loaded into kind with `kind load docker-image`: pulling them would fail.
    assert {container(s)["imagePullPolicy"] for s in statefulsets().values()} == {"IfNotPresent"}


def test_data_services_keep_their_data_across_a_pod_deletion() -> None:
    """The scenarios delete the Kafka and Cassandra pods and expect topics, offsets and rows back: each data dir is
    on a claim from kind's local-path storage class, not on the pod's own filesystem."""
    # Mounted exactly there: upstream images declare these paths VOLUMEs, which would shadow a claim mounted higher.
    data_dirs = {"kafka": "/var/lib/kafka/data", "cassandra": "/var/lib/cassandra"}
    for name, statefulset in statefulsets().items():
        assert statefulset["spec"]["replicas"] == 1
        (claim,) = statefulset["spec"]["volumeClaimTemplates"]
        assert claim["spec"]["storageClassName"] == "standard", name
        mounts = {m["mountPath"]: m["name"] for m in container(statefulset)["volumeMounts"]}
        assert mounts.get(data_dirs[name]) == claim["metadata"]["name"], name
        assert not statefulset["spec"]["template"]["spec"].get("volumes"), f"{name}: data on an ephemeral volume"
    kafka_env = {e["name"]: e.get("value") for e in container(statefulsets()["kafka"])["env"]}
    assert kafka_env["KAFKA_LOG_DIRS"] == data_dirs["kafka"]


def test_kafka_advertises_its_stable_pod_name() -> None:
    """Clients reach the broker by the name the StatefulSet and its headless Service give pod 0."""
    kafka = statefulsets()["kafka"]
    namespace, service = kafka["metadata"]["namespace"], kafka["spec"]["serviceName"]
    env = {e["name"]: e.get("value") for e in container(kafka)["env"]}
    host = f"kafka-0.{service}.{namespace}.svc.cluster.local"
    assert env["KAFKA_ADVERTISED_LISTENERS"].split(",") == [f"PLAINTEXT://{host}:9092", f"SASL_PLAINTEXT://{host}:9094"]
    services = {d["metadata"]["name"]: d for d in documents(MANIFESTS / "data-services.yaml") if d["kind"] == "Service"}
    assert services[service]["spec"]["clusterIP"] == "None"


def test_kind_cluster_config_and_node_image_are_pinned() -> None:
    (config,) = documents(MANIFESTS / "kind-cluster.yaml")
    assert config["kind"] == "Cluster" and config["apiVersion"] == "kind.x-k8s.io/v1alpha4"
    # A digest, or the locally built node image of the stack's Kubernetes version (hack/versions.env).
    assert "@sha256:" in NODE_IMAGE or NODE_IMAGE.endswith(f":v{VERSIONS['KUBERNETES_VERSION']}"), NODE_IMAGE


def test_data_services_are_accepted_by_the_api_server(kube) -> None:  # type: ignore[no-untyped-def]
    namespace = f"e2e-{uuid.uuid4().hex[:8]}"
    docs = [d for d in documents(MANIFESTS / "data-services.yaml") if d["kind"] != "Namespace"]
    for doc in docs:
        doc["metadata"]["namespace"] = namespace

    def kubectl(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["kubectl", *args], env=kube.env, input=stdin, capture_output=True, text=True)

    assert kubectl("create", "namespace", namespace).returncode == 0
    try:
        done = kubectl("apply", "--server-side", "--dry-run=server", "-f", "-", stdin=yaml.safe_dump_all(docs))
        assert done.returncode == 0, done.stderr
        assert done.stdout.count("serverside-applied (server dry run)") == len(docs), done.stdout
    finally:
        kubectl("delete", "namespace", namespace, "--wait=false")
