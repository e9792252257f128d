"""Helpers of the operator tests: polling, kubectl, the sample manifest, the operator as a subprocess."""

from __future__ import annotations

import copy
import json
import signal
import socket
import subprocess
import sys
import urllib.request
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import yaml
from sluice_operator.api import PIPELINES, Resource
from sluice_operator.kube import Kube

from tests import waiting

REPO = Path(__file__).resolve().parents[2]
CRD_FILE = REPO / "crds" / "datapipelines.sluice.dev.yaml"
RBAC_FILE = REPO / "deploy" / "rbac.yaml"
EXAMPLE = REPO / "examples" / "gophers-r-us.yaml"
OPERATOR_NAMESPACE, SERVICE_ACCOUNT = "sluice-system", "sluice-operator"
PROGRESS_DEADLINE_SECONDS = 12  # short, so the Degraded test is quick; rollouts here take a second or two

T = TypeVar("T")


def wait_for(probe: Callable[[], T | None], timeout: float = 45.0, what: str = "the condition") -> T:
    """`tests.waiting.wait_for` in the argument order these tests use."""
    return waiting.wait_for(what, probe, timeout)  # type: ignore[return-value]


class Kubectl:
    """The built kubectl, as the admin."""

    def __init__(self, env: dict[str, str]) -> None:
        self.env = env

    def run(self, *args: str, input: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(["kubectl", *args], env=self.env, input=input, capture_output=True, text=True)
        if check and done.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed:\n{done.stderr}")
        return done

    def apply(self, manifest: dict[str, Any], check: bool = True) -> subprocess.CompletedProcess[str]:
        return self.run("apply", "-f", "-", input=yaml.safe_dump(manifest), check=check)


def sample(namespace: str, name: str = "gophers-r-us", **spec: Any) -> dict[str, Any]:
    """examples/gophers-r-us.yaml in `namespace`, with top-level spec fields replaced."""
    manifest: dict[str, Any] = yaml.safe_load(EXAMPLE.read_text())
    manifest["metadata"] = {"name": name, "namespace": namespace}
    manifest["spec"] = {**copy.deepcopy(manifest["spec"]), **spec}
    return manifest


class Operator:
    """`sluice-operator` as a subprocess; its output goes to a log file."""

    def __init__(self, env: dict[str, str], log_path: Path, identity: str) -> None:
        self.env = {**env, "SLUICE_IDENTITY": identity}
        self.log_path, self.identity = log_path, identity
        self.process: subprocess.Popen[bytes] | None = None
        self.port = 0

    def start(self) -> Operator:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        env = {**self.env, "SLUICE_LIVENESS_PORT": str(self.port), "SLUICE_LIVENESS_HOST": "127.0.0.1"}
        with open(self.log_path, "ab") as log:
            log.write(f"---- {datetime.now(UTC):%H:%M:%S} starting {self.identity}\n".encode())
            log.flush()
            self.process = subprocess.Popen(
                [sys.executable, "-m", "sluice_operator.cli"], env=env, stdout=log, stderr=subprocess.STDOUT
            )
        wait_for(self.healthy, 30, f"/healthz of operator {self.identity}")
        return self

    def healthy(self) -> bool:
        assert self.process is not None and self.process.poll() is None, f"operator exited:\n{self.tail()}"
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/healthz", timeout=2) as response:
                return bool(response.status == 200)
        except OSError:
            return False

    def leading(self) -> bool:
        """Whether the process started last took the Lease."""
        return f"{self.identity} is the leader" in self.since_start()

    def since_start(self) -> str:
        """The log of the process started last."""
        return self.log_path.read_text(errors="replace").rsplit("---- ", 1)[-1]

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        """Sends `sig` and waits for the exit; returns the exit code."""
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(sig)
        code = self.process.wait(timeout)
        self.process = None
        return code

    def tail(self, lines: int = 60) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


def pipeline(admin: Kube, namespace: str, name: str = "gophers-r-us") -> dict[str, Any]:
    found = admin.get(PIPELINES, namespace, name)
    assert found is not None, f"DataPipeline {namespace}/{name} is missing"
    return found


def condition(obj: dict[str, Any], kind: str) -> dict[str, Any]:
    return next((c for c in obj.get("status", {}).get("conditions", []) if c["type"] == kind), {})


def events(admin: Kube, namespace: str, reason: str) -> list[dict[str, Any]]:
    """Events on DataPipelines in `namespace` with that reason."""
    found = admin.list(Resource("v1", "events"), namespace)
    return [e for e in found if e["reason"] == reason and e["involvedObject"]["kind"] == "DataPipeline"]


def dump(obj: Any) -> str:
    return json.dumps(obj, indent=1, sort_keys=True)
