"""A kind cluster running Sluice for real: the images built here, the chart, Kafka and Cassandra, a toolbox pod."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import yaml
from pytest_kind import KindCluster

from .config import REPO_DIR, VERSIONS, component_dir
from .kube import tool_dirs

MANIFESTS = REPO_DIR / "tests" / "e2e" / "manifests"
TOOLBOX_SCRIPT = Path(__file__).resolve().parent / "toolbox.py"
IMAGES_FILE = REPO_DIR / "build" / "e2e-images.json"
# The node image `make kind-image` builds from Debian packages and the Go module proxy (no registry needed).
NODE_IMAGE = os.environ.get("SLUICE_KIND_NODE_IMAGE", VERSIONS["KIND_NODE_IMAGE"])
DATA = "sluice-e2e"  # the namespace of Kafka, Cassandra and the toolbox
KAFKA = f"kafka-0.kafka.{DATA}.svc.cluster.local:9092"
CASSANDRA = f"cassandra-0.cassandra.{DATA}.svc.cluster.local:9042"
OPERATOR_NAMESPACE, RELEASE = "sluice-system", "sluice"


class CommandFailed(AssertionError):
    """A kind, kubectl, helm or build command exited non-zero; the message holds its output."""


def run(argv: list[str], *, env: dict[str, str] | None = None, stdin: str | None = None, timeout: float = 300) -> str:
    done = subprocess.run(argv, env=env, input=stdin, capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        output = f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
        raise CommandFailed(f"{' '.join(argv)} failed ({done.returncode}):\n{output}")
    return done.stdout


def build_images() -> dict[str, str]:
    """Every image a cluster here runs, built when missing (`make kind-image`): role -> image reference."""
    print(run(["bash", str(REPO_DIR / "hack" / "build-e2e-images.sh")], timeout=3600), end="")
    images = json.loads(IMAGES_FILE.read_text())
    return {str(role): str(image) for role, image in images.items()}


def tool(name: str) -> str:
    """The pinned kind, kubectl or helm from ~/.cache/sluice (`make provision`, `make kind-image`)."""
    for folder in (component_dir("kind") / "bin", *tool_dirs()):
        if (folder / name).exists():
            return str(folder / name)
    raise FileNotFoundError(f"no pinned {name} in ~/.cache/sluice: run `make provision kind-image` first")


class Cluster(KindCluster):  # type: ignore[misc]
    """pytest-kind's cluster with the pinned kind, node image and kubectl, plus helm, JSON getters and a toolbox
    pod through which Kafka and Cassandra are reached inside the cluster (nothing is sent to a pod address)."""

    def __init__(self, name: str, workdir: Path) -> None:
        super().__init__(name, workdir / "kubeconfig", image=NODE_IMAGE, kind_path=Path(tool("kind")),
                         kubectl_path=Path(tool("kubectl")))  # fmt: skip
        self.helm_path = tool("helm")
        self.env = {**os.environ, "KUBECONFIG": str(self.kubeconfig_path)}

    def create(self, config_file: str | Path | None = MANIFESTS / "kind-cluster.yaml") -> None:
        """A fresh cluster: one of the same name left by an earlier run is deleted first."""
        if self.name in run([str(self.kind_path), "get", "clusters"]).split():
            self.delete()
        super().create(config_file)
        self.kubectl("wait", "node", "--all", "--for=condition=Ready", "--timeout=180s", timeout=200)

    def delete(self) -> None:
        run([str(self.kind_path), "delete", "cluster", "--name", self.name], timeout=300)

    def load(self, *images: str) -> None:
        """Loads images into the nodes in one archive: the layers they share (a JRE, a Python) go once."""
        run([str(self.kind_path), "load", "docker-image", "--name", self.name, *images], timeout=600)

    def kubectl(self, *args: str, stdin: str | None = None, timeout: float = 300) -> str:
        return run([str(self.kubectl_path), *args], env=self.env, stdin=stdin, timeout=timeout)

    def helm(self, *args: str, timeout: float = 600) -> str:
        return run([self.helm_path, *args], env=self.env, timeout=timeout)

    def apply(self, *documents: dict[str, Any]) -> str:
        return self.kubectl("apply", "-f", "-", stdin=yaml.safe_dump_all(documents))

    def get(self, kind: str, name: str, namespace: str) -> dict[str, Any]:
        return dict(json.loads(self.kubectl("get", kind, name, "-n", namespace, "-o", "json")))

    def exists(self, kind: str, name: str, namespace: str | None = None) -> bool:
        where = ["-n", namespace] if namespace else []
        return bool(self.kubectl("get", kind, name, *where, "--ignore-not-found", "-o", "name").strip())

    def pods(self, namespace: str, selector: str) -> list[dict[str, Any]]:
        out = self.kubectl("get", "pods", "-n", namespace, "-l", selector, "-o", "json")
        return list(json.loads(out)["items"])

    def rollout(self, kind: str, name: str, namespace: str, timeout: int = 600) -> None:
        self.kubectl("rollout", "status", f"{kind}/{name}", "-n", namespace, f"--timeout={timeout}s",
                     timeout=timeout + 20)  # fmt: skip

    def toolbox(self, *args: str, timeout: float = 300) -> dict[str, Any]:
        """Runs a toolbox.py command in the toolbox pod; returns the JSON it printed."""
        out = self.kubectl("exec", "-i", "-n", DATA, "toolbox", "--", "python", "-", *args,
                           stdin=TOOLBOX_SCRIPT.read_text(), timeout=timeout)  # fmt: skip
        return dict(json.loads(out.strip().splitlines()[-1]))

    def install(self, images: dict[str, str], *helm_args: str) -> None:
        """Loads the images, installs the chart (operator and CRD), starts Kafka, Cassandra and the toolbox."""
        self.load(*(images[role] for role in ("worker", "operator", "kafka", "cassandra")))
        # Kafka and Cassandra first: they start while helm waits for the operator.
        self.apply(*data_services(images))
        self.apply(toolbox_pod(images["worker"]))
        repository, tag = images["operator"].rsplit(":", 1)
        self.helm("install", RELEASE, str(REPO_DIR / "charts" / "sluice"), "--namespace", OPERATOR_NAMESPACE,
                  "--create-namespace", "--wait", "--timeout=5m", f"--set=image.repository={repository}",
                  f"--set=image.tag={tag}", f"--set=defaultWorkerImage={images['worker']}", *helm_args)  # fmt: skip
        for name in ("kafka", "cassandra"):
            self.rollout("statefulset", name, DATA)
        self.kubectl("wait", "pod/toolbox", "-n", DATA, "--for=condition=Ready", "--timeout=300s", timeout=320)


def data_services(images: dict[str, str]) -> list[dict[str, Any]]:
    """tests/e2e/manifests/data-services.yaml with the Kafka and Cassandra images of this run."""
    documents = [d for d in yaml.safe_load_all((MANIFESTS / "data-services.yaml").read_text()) if d]
    for document in documents:
        if document["kind"] == "StatefulSet":
            for container in document["spec"]["template"]["spec"]["containers"]:
                container["image"] = images[container["name"]]
    return documents


def toolbox_pod(image: str) -> dict[str, Any]:
    """An idle pod of the worker image (Python with confluent-kafka and cassandra-driver) to run toolbox.py in."""
    container = {"name": "toolbox", "image": image, "imagePullPolicy": "IfNotPresent", "command": ["sleep", "infinity"]}
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "toolbox", "namespace": DATA},
            "spec": {"containers": [container], "terminationGracePeriodSeconds": 0}}  # fmt: skip


def sample_pipeline(**spec: Any) -> dict[str, Any]:
    """examples/gophers-r-us.yaml as a user applies it here: pointed at the in-cluster Kafka and Cassandra."""
    manifest = yaml.safe_load((REPO_DIR / "examples" / "gophers-r-us.yaml").read_text())
    manifest["spec"]["source"]["bootstrapServers"] = KAFKA
    manifest["spec"]["sink"]["contactPoints"] = [CASSANDRA]
    manifest["spec"].update(json.loads(json.dumps(spec)))  # a deep copy
    return dict(manifest)
