"""The kind suite's own manifests are valid wherever it runs: pinned to the stack's versions and accepted by a
real API server (server-side dry run on the local control plane)."""

from __future__ import annotations

import subprocess
import uuid
from pathlib import Path

import pytest
import yaml

from .cluster import MANIFESTS, NODE_IMAGE, pinned_versions

pytestmark = pytest.mark.kube


def documents(path: Path) -> list[dict]:  # type: ignore[type-arg]
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def test_data_services_use_the_stacks_versions() -> None:
    versions = pinned_versions()
    images = {
        c["name"]: c["image"]
        for d in documents(MANIFESTS / "data-services.yaml")
        if d["kind"] == "StatefulSet"
        for c in d["spec"]["template"]["spec"]["containers"]
    }
    assert images == {"kafka": f"apache/kafka:{versions['kafka']}", "cassandra": f"cassandra:{versions['cassandra']}"}


def test_kind_cluster_config_and_node_image_are_pinned() -> None:
    (config,) = documents(MANIFESTS / "kind-cluster.yaml")
    assert config["kind"] == "Cluster" and config["apiVersion"] == "kind.x-k8s.io/v1alpha4"
    assert "@sha256:" in NODE_IMAGE


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
