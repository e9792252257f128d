"""The chart lints, renders as its values ask with several values files, refuses values its schema does not know,
and holds the operator's own CRD and RBAC rules. These need helm but no cluster."""

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
    containers: list[Manifest] = one(manifests, "Deployment")["spec"]["template"]["spec"]["containers"]
    (container,) = containers
    return container


def refusal(*args: str) -> str:
    """What `helm template` prints when it refuses the chart with `args`; fails if it renders."""
    argv = ["helm", "template", "sluice", str(CHART), *args]
    done = subprocess.run(argv, env=tools_env(), capture_output=True, text=True)
    assert done.returncode != 0, f"helm template accepted {' '.join(args)}:\n{done.stdout}"
    return done.stderr


def allowed_ports(rules: list[Manifest]) -> set[tuple[str, int | str]]:
    """The (protocol, port) pairs of NetworkPolicy rules."""
    return {(port["protocol"], port["port"]) for rule in rules for port in rule["ports"]}


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
            if "secrets" in rule["resources"]:  # by name only, never enumerated
                assert (rule["resources"], rule["verbs"]) == (["secrets"], ["get"])
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
    assert one(manifests, "ClusterRoleBinding", "sluice")["roleRef"]["name"] == "sluice"
    assert not find(manifests, "Role", "sluice")  # nothing per namespace
    # upgradeCRD: the operator may read and apply its own CRD, no other.
    assert env["SLUICE_UPGRADE_CRD"] == "true"
    assert one(manifests, "ClusterRoleBinding", "sluice-crd")["roleRef"]["name"] == "sluice-crd"
    assert one(manifests, "ClusterRole", "sluice-crd")["rules"] == [{
        "apiGroups": ["apiextensions.k8s.io"], "resources": ["customresourcedefinitions"],
        "resourceNames": ["datapipelines.sluice.dev"], "verbs": ["get", "patch"],
    }]  # fmt: skip
    assert one(manifests, "ServiceAccount")["metadata"]["name"] == "sluice"
    assert not find(manifests, "PodMonitor")


def test_watched_namespaces_get_roles_and_no_cluster_access() -> None:
    manifests = rendered("namespaced.yaml")
    # Nothing cluster-wide but the one CRD the operator upgrades (upgradeCRD, by resourceNames).
    assert [b["metadata"]["name"] for b in find(manifests, "ClusterRoleBinding")] == ["sluice-crd"]
    assert [c["metadata"]["name"] for c in find(manifests, "ClusterRole")] == [
        "sluice-crd", "sluice-datapipelines-edit", "sluice-datapipelines-view",
    ]  # fmt: skip  # the last two for people, bound by the built-in roles
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
    for binding in find(manifests, "ClusterRoleBinding"):  # its own and the CRD's
        assert binding["subjects"][0]["name"] == "platform-operators"
    assert [c["metadata"]["name"] for c in find(manifests, "ClusterRole")] == ["sluice-operator", "sluice-operator-crd"]
    monitor = one(manifests, "PodMonitor")
    assert monitor["metadata"]["labels"]["release"] == "prometheus"
    assert monitor["spec"]["selector"]["matchLabels"]["app.kubernetes.io/name"] == "sluice-worker"
    assert monitor["spec"]["podMetricsEndpoints"] == [{"port": "http", "path": "/metrics", "interval": "15s"}]


def test_several_replicas_without_leader_election_are_refused() -> None:
    error = refusal("--set", "replicaCount=2", "--set", "leaderElection.enabled=false")
    assert "replicaCount > 1 needs leaderElection.enabled" in error


@pytest.mark.parametrize(
    ("args", "named"),
    [
        pytest.param(["--set", "replicaCont=2"], "replicaCont", id="unknown-top-level-key"),
        pytest.param(["--set", "replicaCount=abc"], "replicaCount", id="string-for-integer"),
        pytest.param(["--set", "replicaCount=0"], "replicaCount", id="below-minimum"),
        pytest.param(["--set", "logLevel=LOUD"], "logLevel", id="not-in-enum"),
        pytest.param(["--set", "logFormat=xml"], "logFormat", id="not-in-enum-format"),
        pytest.param(["--set", "image.pullPolicy=Sometimes"], "pullPolicy", id="not-in-enum-pull-policy"),
        pytest.param(["--set", "healthPort=70000"], "healthPort", id="port-out-of-range"),
        pytest.param(["--set", "lagIntervalSeconds=-1"], "lagIntervalSeconds", id="negative-interval"),
        pytest.param(["--set", "lagStatusRefreshSeconds=0"], "lagStatusRefreshSeconds", id="zero-refresh"),
        pytest.param(["--set", "metrics.podMonitor.enabeld=true"], "enabeld", id="unknown-nested-key"),
        pytest.param(["--set-json", 'networkPolicy.kafkaEgress=[{"too": [{"ipBlock": {"cidr": "10.0.0.0/8"}}]}]'],
                     "too", id="unknown-key-in-egress-rule"),
    ],
)  # fmt: skip
def test_values_the_schema_does_not_allow_are_refused_by_name(args: list[str], named: str) -> None:
    """A typo or a wrong type stops `helm template` (and so install and upgrade) with a message naming the key."""
    error = refusal(*args)
    assert "schema" in error and named in error, error


def test_kubernetes_shaped_values_stay_open() -> None:
    """Fields the chart passes through to Kubernetes are not second-guessed by the schema."""
    manifests = render(
        "sluice", NAMESPACE, "--set", "resources.limits.ephemeral-storage=1Gi",
        "--set", "securityContext.procMount=Default", "--set", "podLabels.team=data",
        "--set-json", 'affinity={"nodeAffinity": {}}', "--set-json", 'extraEnv=[{"name": "A", "value": "b"}]',
    )  # fmt: skip
    container = operator_container(manifests)
    assert container["resources"]["limits"]["ephemeral-storage"] == "1Gi"
    assert container["securityContext"]["procMount"] == "Default"


def test_default_operator_resources_hold_a_thousand_pipelines() -> None:
    """The operator peaked near 300 MiB with 1,000 pipelines on a quiet machine, at 400-750 MiB on a busy one."""
    container = operator_container(rendered("default.yaml"))
    assert container["resources"] == {"requests": {"cpu": "50m", "memory": "320Mi"}, "limits": {"memory": "1Gi"}}


def test_no_network_policy_by_default() -> None:
    assert not find(rendered("default.yaml"), "NetworkPolicy")


def test_network_policy_lets_in_the_health_port_and_out_dns_the_api_kafka_and_the_workers() -> None:
    manifests = render("sluice", NAMESPACE, "--set", "networkPolicy.enabled=true")
    policy = one(manifests, "NetworkPolicy", "sluice")["spec"]
    deployment = one(manifests, "Deployment")
    assert policy["podSelector"] == {"matchLabels": deployment["spec"]["selector"]["matchLabels"]}
    assert sorted(policy["policyTypes"]) == ["Egress", "Ingress"]
    # From anywhere (Prometheus; the kubelet's probes where the CNI filters them), but on the health port only.
    assert policy["ingress"] == [{"ports": [{"protocol": "TCP", "port": 8081}]}]
    egress = policy["egress"]
    assert all(rule["ports"] for rule in egress), "no egress rule may open every port"
    assert allowed_ports(egress) == {
        ("UDP", 53), ("TCP", 53), ("TCP", 443), ("TCP", 6443), ("TCP", 9092), ("TCP", 9093), ("TCP", 8080),
    }  # fmt: skip
    (workers,) = [rule for rule in egress if allowed_ports([rule]) == {("TCP", 8080)}]
    assert workers["to"] == [
        {"podSelector": {"matchLabels": {"app.kubernetes.io/name": "sluice-worker"}}, "namespaceSelector": {}}
    ]


def test_network_policy_narrowed_by_its_values() -> None:
    manifests = rendered("networkpolicy.yaml")
    policy = one(manifests, "NetworkPolicy", "sluice")["spec"]
    assert {"name": "health", "containerPort": 9090, "protocol": "TCP"} in operator_container(manifests)["ports"]
    prometheus = {
        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}},
        "podSelector": {"matchLabels": {"app.kubernetes.io/name": "prometheus"}},
    }
    assert policy["ingress"] == [{"ports": [{"protocol": "TCP", "port": 9090}], "from": [prometheus]}]
    egress = policy["egress"]
    assert {"to": [{"ipBlock": {"cidr": "172.18.0.2/32"}}], "ports": [{"protocol": "TCP", "port": 6443}]} in egress
    assert {"to": [{"ipBlock": {"cidr": "10.20.0.0/16"}}], "ports": [{"protocol": "TCP", "port": 9094}]} in egress
    assert allowed_ports(egress) == {("UDP", 53), ("TCP", 53), ("TCP", 6443), ("TCP", 9094), ("TCP", 8080)}
    (workers,) = [rule for rule in egress if allowed_ports([rule]) == {("TCP", 8080)}]
    (peer,) = workers["to"]
    assert peer["namespaceSelector"]["matchExpressions"] == [
        {"key": "kubernetes.io/metadata.name", "operator": "In", "values": ["team-a", "team-b"]}
    ]


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
