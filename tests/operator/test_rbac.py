"""The operator's service account (deploy/rbac.yaml) may do what the operator needs and nothing else."""

from __future__ import annotations

import pytest
from operator_harness import OPERATOR_NAMESPACE, SERVICE_ACCOUNT, Kubectl

pytestmark = pytest.mark.kube

AS_OPERATOR = f"--as=system:serviceaccount:{OPERATOR_NAMESPACE}:{SERVICE_ACCOUNT}"

ALLOWED = [
    ("watch", "datapipelines.sluice.dev", "--all-namespaces"),
    ("patch", "datapipelines.sluice.dev/status", "-n", "any"),
    ("patch", "deployments.apps", "-n", "any"),
    ("create", "deployments.apps", "-n", "any"),
    ("patch", "configmaps", "-n", "any"),
    ("create", "events", "-n", "any"),
    ("list", "pods", "-n", "any"),  # to see workers fail, or ask those not ready why (their /readyz)
    ("watch", "pods", "-n", "any"),
    ("patch", "poddisruptionbudgets.policy", "-n", "any"),  # spec.disruptionBudget
    ("delete", "poddisruptionbudgets.policy", "-n", "any"),  # ... once unset
    ("update", "leases.coordination.k8s.io/sluice-operator", "-n", OPERATOR_NAMESPACE),
    ("get", "secrets", "-n", "any"),  # those spec.source/sink tls and auth name, by name
]
REFUSED = [
    ("list", "secrets", "--all-namespaces"),  # never enumerated: only those a pipeline names
    ("watch", "secrets", "-n", "any"),
    ("patch", "secrets", "-n", "any"),
    ("create", "pods/exec", "-n", "any"),
    ("create", "pods", "-n", "any"),
    ("get", "pods", "-n", "any"),
    ("delete", "pods", "-n", "any"),
    ("delete", "deployments.apps", "-n", "any"),
    ("list", "poddisruptionbudgets.policy", "--all-namespaces"),
    ("delete", "datapipelines.sluice.dev", "-n", "any"),
    ("update", "datapipelines.sluice.dev", "-n", "any"),
    ("create", "clusterrolebindings.rbac.authorization.k8s.io"),
    ("create", "rolebindings.rbac.authorization.k8s.io", "-n", OPERATOR_NAMESPACE),
    ("escalate", "clusterroles.rbac.authorization.k8s.io"),
    ("update", "customresourcedefinitions.apiextensions.k8s.io"),
    ("list", "namespaces"),
    ("update", "leases.coordination.k8s.io/someone-else", "-n", OPERATOR_NAMESPACE),
    ("create", "leases.coordination.k8s.io", "-n", "any"),
]


def can_i(kubectl: Kubectl, *args: str) -> str:
    return str(kubectl.run("auth", "can-i", *args, AS_OPERATOR, check=False).stdout).strip()


@pytest.mark.parametrize("request_", ALLOWED, ids=lambda r: " ".join(r[:2]))
def test_the_operator_may_do_what_it_needs(
    operator_kubeconfig: object, kubectl: Kubectl, request_: tuple[str, ...]
) -> None:
    assert can_i(kubectl, *request_) == "yes"


@pytest.mark.parametrize("request_", REFUSED, ids=lambda r: " ".join(r[:2]))
def test_the_operator_may_not_do_anything_else(
    operator_kubeconfig: object, kubectl: Kubectl, request_: tuple[str, ...]
) -> None:
    assert can_i(kubectl, *request_) == "no"


def test_the_operator_deployment_manifest_is_accepted(operator_kubeconfig: object, kubectl: Kubectl) -> None:
    done = kubectl.run("apply", "--dry-run=server", "-f", "deploy/operator.yaml", check=False)
    assert done.returncode == 0, done.stderr
