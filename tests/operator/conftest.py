"""Fixtures of the operator tests: the CRD, the RBAC, the operator as a real process under its own account."""

from __future__ import annotations

import os
import uuid
from collections.abc import Generator, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import config
from operator_harness import (
    CRD_FILE,
    OPERATOR_NAMESPACE,
    PROGRESS_DEADLINE_SECONDS,
    RBAC_FILE,
    SERVICE_ACCOUNT,
    Kubectl,
    Operator,
    wait_for,
)
from sluice_operator.kube import Kube
from sluice_stack.kube import install_crd


@pytest.fixture(scope="session")
def kubectl(kube: Any) -> Kubectl:
    return Kubectl(kube.env)


@pytest.fixture(scope="session")
def admin(kube: Any) -> Kube:
    """An API client with the admin's credentials (the tests' own view, not the operator's)."""
    return Kube(config.new_client_from_config(config_file=kube.kubeconfig))  # type: ignore[no-untyped-call]


@pytest.fixture(scope="session")
def crd(kubectl: Kubectl) -> None:
    install_crd(kubectl.env, CRD_FILE)


@pytest.fixture(scope="session")
def operator_kubeconfig(kube: Any, crd: None, kubectl: Kubectl, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A kubeconfig with a token of the operator's service account, made from deploy/rbac.yaml (with the CRD
    installed: what the service account may do with DataPipelines is only known once they exist)."""
    kubectl.run("apply", "-f", str(RBAC_FILE))
    # The API server's RBAC authorizer learns new bindings from a watch: wait until it has this one.
    account = f"--as=system:serviceaccount:{OPERATOR_NAMESPACE}:{SERVICE_ACCOUNT}"
    wait_for(
        lambda: (
            kubectl.run("auth", "can-i", "watch", "datapipelines.sluice.dev", "-A", account, check=False).stdout.strip()
            == "yes"
        ),
        30,
        "the API server to authorize the operator's new ClusterRoleBinding",
    )
    token = kubectl.run("create", "token", SERVICE_ACCOUNT, "-n", OPERATOR_NAMESPACE, "--duration=2h").stdout
    admin_config = yaml.safe_load(Path(kube.kubeconfig).read_text())
    cluster = admin_config["clusters"][0]["cluster"]
    path = tmp_path_factory.mktemp("operator") / "kubeconfig"
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "local", "cluster": cluster}],
        "users": [{"name": SERVICE_ACCOUNT, "user": {"token": token.strip()}}],
        "contexts": [{"name": "operator", "context": {"cluster": "local", "user": SERVICE_ACCOUNT}}],
        "current-context": "operator",
    }))  # fmt: skip
    return path


@pytest.fixture(scope="session")
def operator_env(operator_kubeconfig: Path) -> dict[str, str]:
    """The environment of every operator process: the service account's kubeconfig, short deadlines."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLUICE_") and k != "KUBERNETES_SERVICE_HOST"}
    return {
        **env,
        "KUBECONFIG": str(operator_kubeconfig),
        "SLUICE_LEASE_NAMESPACE": OPERATOR_NAMESPACE,
        "SLUICE_LEASE_DURATION_SECONDS": "15",
        "SLUICE_PROGRESS_DEADLINE_SECONDS": str(PROGRESS_DEADLINE_SECONDS),
        "SLUICE_RETRY_DELAY_SECONDS": "1",
        "SLUICE_DEFAULT_WORKER_IMAGE": "sluice-worker:test",
    }


@pytest.fixture(scope="module")
def module_env() -> dict[str, str]:
    """Settings a test module gives its operator on top of `operator_env` (a module overrides this fixture)."""
    return {}


@pytest.fixture(scope="module")
def operator(
    crd: None, operator_env: dict[str, str], module_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Operator]:
    """The operator as its service account, for one test module (tests may restart it).

    Module-scoped: it stops before other suites run, so it never acts on their objects.
    """
    log = tmp_path_factory.mktemp("operator") / "operator.log"
    running = Operator({**operator_env, **module_env}, log, identity="operator-a").start()
    wait_for(running.leading, 30, "the operator to take the Lease")
    yield running
    if running.process is not None:
        running.stop()


@pytest.fixture
def namespace(kubectl: Kubectl) -> Iterator[str]:
    """A fresh namespace per test, deleted (without waiting) afterwards."""
    name = f"op-{uuid.uuid4().hex[:8]}"
    kubectl.run("create", "namespace", name)
    yield name
    kubectl.run("delete", "namespace", name, "--wait=false", check=False)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, Any, None]:
    """A failing test shows the tail of the operator's log."""
    outcome = yield
    report = outcome.get_result()
    running = getattr(item, "funcargs", {}).get("operator")
    if report.failed and isinstance(running, Operator):
        report.sections.append((f"operator log ({running.log_path})", running.tail(80)))
