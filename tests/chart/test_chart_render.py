"""The chart lints, renders as its values ask with several values files, and holds the operator's own CRD
and RBAC rules. These need helm but no cluster."""

from __future__ import annotations

import itertools
import subprocess

import pytest
import yaml

from .helm import CHART, REPO, VALUES, Manifest, env_of, find, one, render, run, tools_env

VALUES_FILES = sorted(p.name for p in VALUES.glob("*.yaml"))
NAMESPACE = "sluice-system"


def rendered(values_file: str) -> list[Manifest]:
    return render("sluice", NAMESPACE, "-f", str(VALUES / values_file))


def operator_container(manifests: list[Manifest]) -> Manifest:
    deployment = one(manifests, "Deployment")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return container


def rules(manifest: Manifest) -> list[tuple[tuple[str, ...], ...]]:
    """A role's rules in a comparable form."""
    return sorted(
        tuple(tuple(sorted(rule.get(key, []))) for key in ("apiGroups", "resources", "resourceNames", "verbs"))
        for rule in manifest["rules"]
    )


def test_chart_lints_with_every_values_file() -> None:
    run("helm", "lint", "--strict", str(CHART))
    for values_file in VALUES_FILES:
        run("helm", "lint", "--strict", str(CHART), "-f", str(VALUES / values_file))


def test_chart_crds_are_the_top_level_crds() -> None:
    top, chart = REPO / "crds", CHART / "crds"
    assert sorted(p.name for p in chart.iterdir()) == sorted(p.name for p in top.glob("*.yaml"))
    for crd in top.glob("*.yaml"):
        assert (chart / crd.name).read_bytes() == crd.read_bytes(), (
            f"charts/sluice/crds/{crd.name} differs from crds/{crd.name}: cp crds/*.yaml charts/sluice/crds/"
        )


@pytest.mark.parametrize("values_file", VALUES_FILES)
def test_every_rendering_is_hardened_and_least_privileged(values_file: str) -> None:
    manifests = rendered(values_file)
    deployment = one(manifests, "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    container = operator_container(manifests)
    assert container["securityContext"] == {
        "allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True, "capabilities": {"drop": ["ALL"]},
    }  # fmt: skip
    assert {"name": "tmp", "mountPath": "/tmp"} in container["volumeMounts"]
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}
    assert "command" not in container, "the image's entrypoint (tini) must stay PID 1"
    assert (
        deployment["spec"]["selector"]["matchLabels"].items()
        <= deployment["spec"]["template"]["metadata"]["labels"].items()
    )

    service_account = pod["serviceAccountName"]
    for binding in find(manifests, "RoleBinding") + find(manifests, "ClusterRoleBinding"):
        assert binding["subjects"] == [{"kind": "ServiceAccount", "name": service_account, "namespace": NAMESPACE}]
    for role in find(manifests, "Role") + find(manifests, "ClusterRole"):
        for rule in role["rules"]:
            assert "*" not in rule["verbs"] + rule["resources"] + rule["apiGroups"], role["metadata"]["name"]
            assert "secrets" not in rule["resources"]
    for manifest in manifests:
        assert manifest["metadata"]["labels"]["app.kubernetes.io/instance"] == "sluice"


def test_default_values_watch_every_namespace_with_one_operator() -> None:
    manifests = rendered("default.yaml")
    deployment = one(manifests, "Deployment", "sluice")
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}
    container = operator_container(manifests)
    assert container["image"] == "sluice-operator:0.1.0"
    env = env_of(container)
    assert env["SLUICE_WATCH_NAMESPACES"] == ""
    assert env["SLUICE_DEFAULT_WORKER_IMAGE"] == "sluice-worker:0.1.0"
    assert env["SLUICE_LEASE_NAME"] == "sluice" and env["SLUICE_LEASE_NAMESPACE"] == NAMESPACE
    assert one(manifests, "ClusterRoleBinding")["roleRef"]["name"] == "sluice"
    assert not find(manifests, "Role", "sluice")  # nothing per namespace
    assert one(manifests, "ServiceAccount")["metadata"]["name"] == "sluice"
    assert not find(manifests, "PodMonitor")


def test_watched_namespaces_get_roles_and_no_cluster_access() -> None:
    manifests = rendered("namespaced.yaml")
    assert not find(manifests, "ClusterRoleBinding")
    assert [c["metadata"]["name"] for c in find(manifests, "ClusterRole")] == [
        "sluice-datapipelines-edit", "sluice-datapipelines-view",
    ]  # fmt: skip  # for people, bound by the built-in roles
    roles = {r["metadata"]["namespace"]: r for r in find(manifests, "Role", "sluice")}
    bindings = {b["metadata"]["namespace"] for b in find(manifests, "RoleBinding", "sluice")}
    assert set(roles) == bindings == {"team-a", "team-b"}
    container = operator_container(manifests)
    assert container["image"] == "registry.example.com/sluice/operator:0.1.0-rc1"
    assert container["imagePullPolicy"] == "Always"
    env = env_of(container)
    assert env["SLUICE_WATCH_NAMESPACES"] == "team-a,team-b"
    assert env["SLUICE_LOG_FORMAT"] == "json" and env["SLUICE_LOG_LEVEL"] == "DEBUG"
    assert env["SLUICE_DEFAULT_WORKER_IMAGE"] == "registry.example.com/sluice/worker:0.1.0"
    pod = one(manifests, "Deployment")["spec"]["template"]["spec"]
    assert pod["imagePullSecrets"] == [{"name": "regcred"}]


def test_several_replicas_roll_behind_leader_election() -> None:
    manifests = rendered("ha.yaml")
    deployment = one(manifests, "Deployment")
    assert deployment["spec"]["replicas"] == 3
    assert deployment["spec"]["strategy"]["type"] == "RollingUpdate"
    assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    pod = deployment["spec"]["template"]
    assert pod["metadata"]["annotations"] == {"example.com/team": "data"}
    assert pod["spec"]["nodeSelector"] == {"kubernetes.io/os": "linux"}
    assert pod["spec"]["tolerations"][0]["key"] == "dedicated"
    container = operator_container(manifests)
    assert container["resources"]["limits"] == {"memory": "512Mi"}
    env = env_of(container)
    assert env["SLUICE_LEADER_ELECTION"] == "true" and env["SLUICE_LEASE_DURATION_SECONDS"] == "30"
    assert env["SLUICE_RESYNC_SECONDS"] == "60" and env["SLUICE_API_TIMEOUT_SECONDS"] == "20"
    identity = next(e for e in container["env"] if e["name"] == "SLUICE_IDENTITY")
    assert identity["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.name"}}


def test_existing_service_account_and_pod_monitor() -> None:
    manifests = rendered("monitoring.yaml")
    assert not find(manifests, "ServiceAccount")
    pod = one(manifests, "Deployment", "sluice-operator")["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "platform-operators"
    assert one(manifests, "ClusterRoleBinding")["subjects"][0]["name"] == "platform-operators"
    assert [c["metadata"]["name"] for c in find(manifests, "ClusterRole")] == ["sluice-operator"]
    monitor = one(manifests, "PodMonitor")
    assert monitor["metadata"]["labels"]["release"] == "prometheus"
    assert monitor["spec"]["selector"]["matchLabels"]["app.kubernetes.io/name"] == "sluice-worker"
    assert monitor["spec"]["podMetricsEndpoints"] == [{"port": "http", "path": "/metrics", "interval": "15s"}]


def test_several_replicas_without_leader_election_are_refused() -> None:
    argv = ["helm", "template", "sluice", str(CHART), "--set", "replicaCount=2",
            "--set", "leaderElection.enabled=false"]  # fmt: skip
    done = subprocess.run(argv, env=tools_env(), capture_output=True, text=True)
    assert done.returncode != 0
    assert "replicaCount > 1 needs leaderElection.enabled" in done.stderr


def test_rules_are_the_operators_own() -> None:
    """The chart grants exactly what deploy/rbac.yaml (written with the operator) grants."""
    reference = [d for d in yaml.safe_load_all((REPO / "deploy" / "rbac.yaml").read_text()) if d]
    ours = rendered("default.yaml")
    assert rules(one(ours, "ClusterRole", "sluice")) == rules(one(reference, "ClusterRole"))
    # The Lease is named after the release here ("sluice"), "sluice-operator" there.
    reference_lease = yaml.safe_dump(one(reference, "Role")["rules"]).replace("sluice-operator", "sluice")
    assert rules(one(ours, "Role", "sluice-leader-election")) == rules({"rules": yaml.safe_load(reference_lease)})


def test_values_file_documents_every_key() -> None:
    """Each top-level key of values.yaml is camelCase and has a comment above it."""
    lines = (CHART / "values.yaml").read_text().splitlines()
    for above, line in itertools.pairwise(lines):
        if line and not line.startswith((" ", "#")):
            key = line.split(":", 1)[0]
            assert key[0].islower() and "_" not in key and "-" not in key, f"{key} is not camelCase"
            assert above.startswith("#"), f"{key} has no comment"


@pytest.mark.parametrize("values_file", VALUES_FILES)
def test_every_setting_the_chart_passes_is_one_the_operator_reads(values_file: str) -> None:
    from sluice_operator.settings import OperatorSettings

    known = {f"SLUICE_{name.upper()}" for name in OperatorSettings.model_fields}
    passed = {e["name"] for e in operator_container(rendered(values_file))["env"]}
    assert passed <= known, f"the operator has no setting for {sorted(passed - known)}"
