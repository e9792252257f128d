"""The kind cluster of the end-to-end suite: whether it can run here, and kubectl/helm against it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pytest_kind import KindCluster
from sluice_stack.config import VERSIONS, component_dir
from sluice_stack.kube import tool_dirs

from ..images.docker import REPO

# kind's own default node image for the pinned kind (sigs.k8s.io/kind pkg/apis/config/defaults).
NODE_IMAGE = "kindest/node:v1.34.0@sha256:7416a61b42b1662ca6ca89f02028ac133a309a2a30ba309614e8ec94d976dc5a"
MANIFESTS = Path(__file__).resolve().parent / "manifests"


def _docker(*args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout)


def kind_unavailable() -> str | None:
    """Why kind cannot run on this machine, or None. Pulls the node image if it is missing (one try)."""
    engine = subprocess.run(["bash", str(REPO / "hack" / "ensure-docker.sh")], capture_output=True, text=True,
                            timeout=600)  # fmt: skip
    if engine.returncode != 0:
        return f"kind cannot run here: no Docker engine ({engine.stderr.strip()[-300:]})"
    tag = NODE_IMAGE.split("@", 1)[0]
    if any(_docker("image", "inspect", ref).returncode == 0 for ref in (NODE_IMAGE, tag)):
        return None
    pulled = _docker("pull", NODE_IMAGE)
    if pulled.returncode == 0:
        return None
    error = (pulled.stderr.strip().splitlines() or ["no output"])[-1]
    return (
        f"kind cannot run here: its node image {tag} is not in the local Docker engine and cannot be pulled "
        f"({error}). Run the suite where a container registry is reachable (.github/workflows/kind-e2e.yml), "
        f"or `docker load` the image first."
    )


def tool(name: str) -> str:
    """The pinned kind/kubectl/helm from ~/.cache/sluice (built from the Go module proxy on first use), else
    one on PATH."""
    dirs = [component_dir("kind") / "bin", *tool_dirs()]
    for folder in dirs:
        if (folder / name).exists():
            return str(folder / name)
    if found := shutil.which(name):
        return found
    target = {"kind": "kind", "helm": "helm", "kubectl": "kubernetes"}[name]
    subprocess.run(["bash", str(REPO / "hack" / "build-kubernetes.sh"), target], check=True)
    return tool(name)


class Cluster(KindCluster):
    """pytest-kind's cluster with the pinned kind, node image and kubectl, plus helm and JSON getters."""

    def __init__(self, name: str, workdir: Path) -> None:
        super().__init__(name, workdir / "kubeconfig", image=NODE_IMAGE, kind_path=Path(tool("kind")),
                         kubectl_path=Path(tool("kubectl")))  # fmt: skip
        self.helm_path = tool("helm")

    def create(self, config_file: str | Path | None = MANIFESTS / "kind-cluster.yaml") -> None:
        super().create(config_file)
        self.kubectl("wait", "node", "--all", "--for=condition=Ready", "--timeout=180s", timeout=200)

    def kubectl(self, *args: str, stdin: str | None = None, timeout: float = 300) -> str:  # type: ignore[override]
        return self._run(str(self.kubectl_path), *args, stdin=stdin, timeout=timeout)

    def helm(self, *args: str, timeout: float = 600) -> str:
        return self._run(self.helm_path, *args, timeout=timeout)

    def get(self, kind: str, name: str, namespace: str) -> dict[str, Any]:
        return dict(json.loads(self.kubectl("get", kind, name, "-n", namespace, "-o", "json")))

    def pods(self, namespace: str, selector: str) -> list[dict[str, Any]]:
        out = self.kubectl("get", "pods", "-n", namespace, "-l", selector, "-o", "json")
        return list(json.loads(out)["items"])

    def _run(self, *argv: str, stdin: str | None = None, timeout: float = 300) -> str:
        env = {**os.environ, "KUBECONFIG": str(self.kubeconfig_path)}
        done = subprocess.run(argv, env=env, input=stdin, capture_output=True, text=True, timeout=timeout)
        if done.returncode != 0:
            raise AssertionError(f"{' '.join(argv)} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
        return done.stdout


def wait_for(what: str, check: Callable[[], Any], timeout: float = 180, interval: float = 2) -> Any:
    """Polls `check` until it returns something truthy; its last exception or value explains a timeout."""
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        try:
            last = check()
            if last:
                return last
        except AssertionError as exc:
            last = exc
        time.sleep(interval)
    raise AssertionError(f"{what}: not after {timeout:.0f}s (last: {last})")


def pinned_versions() -> dict[str, str]:
    return {"kafka": VERSIONS["KAFKA_VERSION"], "cassandra": VERSIONS["CASSANDRA_VERSION"]}
