"""The chart installed with helm on the real local API server (kwok plays the kubelet), and the operator run
with nothing but the chart's ServiceAccount and RBAC: it reconciles the sample pipeline."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from sluice_operator.crd import build_crd
from sluice_stack.process import free_port

from ..images.docker import http_status
from ..waiting import wait_for
from .helm import CHART, REPO, VALUES, env_of, run

pytestmark = pytest.mark.kube

OPERATOR = Path(sys.executable).with_name("sluice-operator")


@dataclass
class Release:
    """A helm release in a namespace of its own, plus a namespace for pipelines; removed afterwards."""

    env: dict[str, str]
    name: str = field(default_factory=lambda: f"t{uuid.uuid4().hex[:6]}")

    def __post_init__(self) -> None:
        self.namespace = f"{self.name}-system"
        self.watched = f"{self.name}-pipelines"
        self.fullname = f"{self.name}-sluice"
        self.service_account = f"system:serviceaccount:{self.namespace}:{self.fullname}"
        for namespace in (self.namespace, self.watched):
            self.kubectl("create", "namespace", namespace)

    def kubectl(self, *args: str, stdin: str | None = None) -> str:
        return run("kubectl", *args, env=self.env, stdin=stdin)

    def helm(self, *args: str) -> str:
        return run("helm", *args, "--namespace", self.namespace, env=self.env)

    def install(self, *args: str) -> None:
        self.helm("install", self.name, str(CHART), *args)

    def get(self, kind: str, name: str, namespace: str) -> dict[str, Any]:
        return json.loads(self.kubectl("get", kind, name, "-n", namespace, "-o", "json"))

    def operator_can(self, verb: str, resource: str, namespace: str | None = None) -> bool:
        scope = ["-n", namespace] if namespace else ["--all-namespaces"]
        argv = ["kubectl", "auth", "can-i", verb, resource, *scope, f"--as={self.service_account}"]
        done = subprocess.run(argv, env=self.env, capture_output=True, text=True)
        return done.stdout.strip() == "yes"

    def remove(self) -> None:
        subprocess.run(["helm", "uninstall", self.name, "-n", self.namespace, "--wait=false"], env=self.env,
                       capture_output=True)  # fmt: skip
        for namespace in (self.watched, self.namespace):
            subprocess.run(["kubectl", "delete", "namespace", namespace, "--wait=false"], env=self.env,
                           capture_output=True)  # fmt: skip


@pytest.fixture
def release(kube) -> Iterator[Release]:  # type: ignore[no-untyped-def]
    made = Release(kube.env)
    yield made
    made.remove()


@pytest.mark.parametrize("values_file", ["default.yaml", "namespaced.yaml", "ha.yaml"])
def test_chart_installs_on_the_api_server(release: Release, values_file: str) -> None:
    # (This line used to pass `--set --set=logLevel=INFO`, a value named "--set": the schema refuses it now.)
    extra = (
        f"--set=watchNamespaces={{{release.watched}}}" if values_file == "namespaced.yaml" else "--set=logLevel=INFO"
    )
    release.install("-f", str(VALUES / values_file), extra)
    status = json.loads(release.helm("status", release.name, "-o", "json"))
    assert status["info"]["status"] == "deployed"
    deployment = release.get("deployment", release.fullname, release.namespace)
    assert deployment["spec"]["template"]["spec"]["serviceAccountName"] == release.fullname
    if values_file == "default.yaml":  # kwok runs the pod: the Deployment becomes available
        release.kubectl("rollout", "status", f"deployment/{release.fullname}", "-n", release.namespace,
                        "--timeout=90s")  # fmt: skip

    can = release.operator_can
    everywhere = values_file != "namespaced.yaml"
    assert can("watch", "datapipelines.sluice.dev", release.watched)
    assert can("patch", "datapipelines.sluice.dev", release.watched)
    assert can("patch", "datapipelines.sluice.dev/status", release.watched)
    assert can("create", "deployments.apps", release.watched)
    assert can("patch", "configmaps", release.watched)
    assert can("create", "events", release.watched)
    assert can("list", "datapipelines.sluice.dev") == everywhere
    assert can("list", "deployments.apps", "default") == everywhere
    assert can("update", f"leases.coordination.k8s.io/{release.fullname}", release.namespace)
    assert not can("update", "leases.coordination.k8s.io/someone-else", release.namespace)
    assert can("get", "secrets", release.watched)  # by name: those a pipeline's tls and auth name
    crd = "customresourcedefinitions.apiextensions.k8s.io"
    assert can("patch", f"{crd}/datapipelines.sluice.dev") and not can("patch", f"{crd}/other.example.com")
    # To see workers fail, or ask those not ready why; nothing more of pods.
    assert can("list", "pods", release.watched) and can("watch", "pods", release.watched)
    forbidden = [
        ("delete", "deployments.apps"), ("update", "deployments.apps"), ("list", "secrets"), ("get", "pods"),
        ("create", "pods"), ("delete", "pods"), ("create", "pods/exec"),
        ("delete", "datapipelines.sluice.dev"), ("create", "roles.rbac.authorization.k8s.io"),
        ("get", "customresourcedefinitions.apiextensions.k8s.io"),
    ]  # fmt: skip
    for verb, resource in forbidden:
        assert not can(verb, resource, release.watched), f"the operator may {verb} {resource}"


def kubeconfig_with_token(release: Release, path: Path) -> Path:
    """The admin kubeconfig's cluster, with the user replaced by a token of the chart's ServiceAccount."""
    config = yaml.safe_load(release.kubectl("config", "view", "--raw", "--flatten", "--minify"))
    token = release.kubectl("create", "token", release.fullname, "-n", release.namespace, "--duration=1h").strip()
    config["users"] = [{"name": "operator", "user": {"token": token}}]
    config["contexts"][0]["context"]["user"] = "operator"
    path.write_text(yaml.safe_dump(config))
    return path


def test_operator_with_the_charts_rbac_reconciles_the_sample(release: Release, tmp_path: Path) -> None:
    release.install("--set", f"watchNamespaces={{{release.watched}}}")
    # An older CRD, as a release before spec.disruptionBudget left it (helm skips CRDs that exist): the operator
    # upgrades it to its own when it starts (upgradeCRD, on by default).
    older = build_crd()
    schema = older["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]
    del schema["disruptionBudget"]
    release.kubectl("apply", "--server-side", "--force-conflicts", "-f", "-", stdin=yaml.safe_dump(older))

    # The operator configured as the chart's Deployment configures it, run outside the cluster with the
    # chart's ServiceAccount.
    pod = release.get("deployment", release.fullname, release.namespace)["spec"]["template"]["spec"]
    port = free_port()
    env = {
        **release.env,
        **env_of(pod["containers"][0]),
        "SLUICE_IDENTITY": "chart-test",
        "SLUICE_LIVENESS_HOST": "127.0.0.1",
        "SLUICE_LIVENESS_PORT": str(port),
        "KUBECONFIG": str(kubeconfig_with_token(release, tmp_path / "kubeconfig")),
    }
    log_path = tmp_path / "operator.log"
    with open(log_path, "wb") as log:
        operator = subprocess.Popen([str(OPERATOR)], env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_for("the operator's /healthz", lambda: http_status(f"http://127.0.0.1:{port}/healthz") == 200)
        # The leader applies the CRD as it starts, beside its health endpoint: read until the apply shows.
        wanted = build_crd()["spec"]["versions"][0]["schema"]
        wait_for("the operator to upgrade the CRD to its own",
                 lambda: json.loads(release.kubectl("get", "crd", "datapipelines.sluice.dev", "-o", "json"))
                 ["spec"]["versions"][0]["schema"] == wanted, timeout=60)  # fmt: skip

        sample = yaml.safe_load((REPO / "examples" / "gophers-r-us.yaml").read_text())
        sample["metadata"]["namespace"] = release.watched
        release.kubectl("apply", "-f", "-", stdin=yaml.safe_dump(sample))

        deployment = wait_for(
            "the worker Deployment", lambda: release.get("deployment", "gophers-r-us", release.watched)
        )
        worker = deployment["spec"]["template"]["spec"]["containers"][0]
        assert worker["image"] == env["SLUICE_DEFAULT_WORKER_IMAGE"] == "sluice-worker:0.1.0"
        config = release.get("configmap", "gophers-r-us-pipeline", release.watched)
        assert yaml.safe_load(config["data"]["pipeline.yaml"])["spec"]["sink"]["table"] == "store_events"

        def ready() -> bool:
            status = release.get("datapipeline", "gophers-r-us", release.watched).get("status", {})
            conditions = {c["type"]: c["status"] for c in status.get("conditions", [])}
            return status.get("observedGeneration") == 1 and conditions.get("Ready") == "True"

        wait_for("the pipeline's Ready condition", ready, timeout=90)

        release.kubectl("scale", "datapipeline", "gophers-r-us", "--replicas=2", "-n", release.watched)
        wait_for(
            "two workers",
            lambda: release.get("deployment", "gophers-r-us", release.watched)["spec"]["replicas"] == 2,
        )

        operator.send_signal(signal.SIGTERM)
        assert operator.wait(30) == 0
        log = log_path.read_text()
        assert "Forbidden" not in log and " 403" not in log, log
    finally:
        if operator.poll() is None:
            operator.kill()
            operator.wait(10)
        print(log_path.read_text()[-5000:])  # shown when the test fails
