"""Secrets named by spec.source/sink tls and auth, against a real API server: a missing Secret or key is a condition
naming it (no workers stuck on a mount), the keys are mounted into the pods, a rotation rolls them, and no secret
value is copied anywhere the operator writes."""

from __future__ import annotations

import json
from typing import Any

import pytest
from operator_harness import Kubectl, Operator, condition, events, pipeline, sample, wait_for
from sluice_operator.api import CONFIGMAPS, DEPLOYMENTS, EVENTS
from sluice_operator.builders import CONFIG_HASH, CREDENTIALS_VERSION
from sluice_operator.kube import Kube

pytestmark = pytest.mark.kube

NAME = "gophers-r-us"
PASSWORD = "Pa55-sluice-known-value"  # grepped for in everything the operator writes


def secured(namespace: str) -> dict[str, Any]:
    manifest = sample(namespace)
    manifest["spec"]["source"]["tls"] = {"ca": {"secret": "kafka-ca"}, "clientCertificate": {"secret": "kafka-client"}}
    manifest["spec"]["source"]["auth"] = {"secret": "kafka-user"}
    manifest["spec"]["sink"]["auth"] = {"secret": "cassandra-user", "passwordKey": "pw"}
    return manifest


def problem(admin: Kube, namespace: str, text: str) -> dict[str, Any] | None:
    ready = condition(pipeline(admin, namespace), "Ready")
    return ready if ready.get("reason") == "CredentialsMissing" and text in ready.get("message", "") else None


def secret(kubectl: Kubectl, namespace: str, name: str, *literals: str) -> None:
    """Creates or replaces a generic Secret, as an admin would."""
    args = [f"--from-literal={literal}" for literal in literals]
    made = kubectl.run("create", "secret", "generic", name, *args, "-n", namespace, "--dry-run=client", "-o", "json")
    kubectl.run("apply", "-f", "-", input=made.stdout)


def test_missing_secrets_are_named_then_mounted_and_never_copied(
    operator: Operator, kubectl: Kubectl, admin: Kube, namespace: str
) -> None:
    kubectl.apply(secured(namespace))
    missing = wait_for(lambda: problem(admin, namespace, "Secret 'kafka-ca'"), what="CredentialsMissing")
    assert missing["message"] == f"Secret 'kafka-ca' (spec.source.tls.ca.secret) not found in namespace {namespace}"
    assert missing["status"] == "False"
    assert admin.get(DEPLOYMENTS, namespace, NAME) is None  # no pods stuck on a mount that cannot succeed

    secret(kubectl, namespace, "kafka-ca", "ca.crt=CA PEM")
    secret(kubectl, namespace, "kafka-client", "tls.crt=CERT", "tls.key=KEY")
    secret(kubectl, namespace, "kafka-user", "username=alice", f"password={PASSWORD}")
    secret(kubectl, namespace, "cassandra-user", "username=bob", f"password={PASSWORD}")  # not the key it names
    wait_for(lambda: problem(admin, namespace, "no key 'pw'"), 90, "the missing key named")
    assert condition(pipeline(admin, namespace), "Ready")["message"] == (
        "Secret 'cassandra-user' has no key 'pw' (spec.sink.auth.passwordKey)"
    )

    secret(kubectl, namespace, "cassandra-user", "username=bob", f"pw={PASSWORD}")
    made = wait_for(lambda: admin.get(DEPLOYMENTS, namespace, NAME), 90, "the Deployment once the Secrets exist")
    told = wait_for(lambda: events(admin, namespace, "Created"), what="the Created event of the first workers")
    assert [e["message"] for e in told] == [f"Created Deployment {NAME} with 1 workers and ConfigMap {NAME}-pipeline"]
    pod = made["spec"]["template"]["spec"]
    (volume,) = [v for v in pod["volumes"] if v["name"] == "credentials"]
    assert volume["projected"]["defaultMode"] == 0o440
    assert volume["projected"]["sources"] == [
        {"secret": {"name": "kafka-ca", "items": [{"key": "ca.crt", "path": "source/ca.crt"}]}},
        {"secret": {"name": "kafka-client", "items": [{"key": "tls.crt", "path": "source/tls.crt"},
                                                      {"key": "tls.key", "path": "source/tls.key"}]}},
        {"secret": {"name": "kafka-user", "items": [{"key": "username", "path": "source/username"},
                                                    {"key": "password", "path": "source/password"}]}},
        {"secret": {"name": "cassandra-user", "items": [{"key": "username", "path": "sink/username"},
                                                        {"key": "pw", "path": "sink/password"}]}},
    ]  # fmt: skip
    (worker,) = pod["containers"]
    assert {"name": "credentials", "mountPath": "/etc/sluice/credentials", "readOnly": True} in worker["volumeMounts"]

    # A rotated password rolls the workers (the next reconcile sees the Secret's new version), the config stays.
    annotations = made["spec"]["template"]["metadata"]["annotations"]
    secret(kubectl, namespace, "kafka-user", "username=alice", f"password={PASSWORD}-rotated")
    scaled = secured(namespace)
    scaled["spec"]["replicas"] = 2  # any change reconciles (resync too): it finds the Secret's new version
    kubectl.apply(scaled)
    rolled = wait_for(
        lambda: (
            (d := admin.get(DEPLOYMENTS, namespace, NAME))
            and d["spec"]["template"]["metadata"]["annotations"][CREDENTIALS_VERSION]
            != annotations[CREDENTIALS_VERSION]
            and d
        ),
        what="a new credentials version",
    )
    assert rolled["spec"]["template"]["metadata"]["annotations"][CONFIG_HASH] == annotations[CONFIG_HASH]

    # Nothing the operator wrote holds a secret value: children, the pipeline and its status, events, its log.
    written = [
        admin.get(CONFIGMAPS, namespace, f"{NAME}-pipeline"), rolled, pipeline(admin, namespace),
        admin.list(EVENTS, namespace),
    ]  # fmt: skip
    for obj in written:
        assert PASSWORD not in json.dumps(obj)
    assert PASSWORD not in operator.log_path.read_text()
