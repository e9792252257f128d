"""The CRD on a real API server: invalid pipelines refused with readable messages, explain, scale, columns."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from operator_harness import Kubectl, sample

pytestmark = pytest.mark.kube

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def refused(kubectl: Kubectl, manifest: dict[str, Any]) -> str:
    """The API server's message for a manifest it must refuse."""
    done = kubectl.apply(manifest, check=False)
    assert done.returncode != 0, f"the API server accepted:\n{json.dumps(manifest['spec'], indent=1)}"
    return str(done.stderr)


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def change(spec: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node = spec
        for key in parents:
            node = node.setdefault(key, {})
        node[last] = value

    return change


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (_set("source.topics", []), "spec.source.topics in body should have at least 1 items"),
        (_set("replicas", -1), "spec.replicas in body should be greater than or equal to 0"),
        (_set("sink.consistency", "SOMETIMES"), 'spec.sink.consistency: Unsupported value: "SOMETIMES"'),
        (_set("delivery.maxInFlight", 0), "spec.delivery.maxInFlight in body should be greater than or equal to 1"),
        (_set("source.topics", ["a", "a"]), 'spec.source.topics[1]: Duplicate value: "a"'),
        (_set("sink.keyspace", "Not-CQL"), "spec.sink.keyspace in body should match"),
        (_set("source.securityProtocol", "SASL_SSL"), "securityProtocol SASL_PLAINTEXT and SASL_SSL need"),
        (_set("transform.fields.id.source", "key"), "path is required with source 'value'"),
        (_set("terminationGracePeriodSeconds", 5), "shutdownMarginSeconds must be less than"),
        (_set("delivery.retryBackoff", {"initialMs": 500, "maxMs": 100}), "initialMs must not exceed maxMs"),
        (_set("sink.createTable.replication.strategy", "NetworkTopologyStrategy"), "datacenters are required"),
        (_set("surprise", True), 'unknown field "spec.surprise"'),
        (_set("resources.requests", {"cpu": "lots"}), "spec.resources.requests.cpu in body should match"),
        (_set("template.labels", {"sluice.dev/pipeline": "x"}), "spec.template.labels: Invalid value: \"object\": "
         "labels may not be app.kubernetes.io/* or sluice.dev/*"),
        (_set("template.serviceAccountName", "Bad_Name"), "spec.template.serviceAccountName in body should match"),
        (_set("template.tolerations", [{}, "x"]), "spec.template.tolerations[1]: Invalid value: \"string\""),
        (_set("autoscaling", {"enabled": True, "minReplicas": 4, "maxReplicas": 2}),
         "spec.autoscaling.minReplicas: Invalid value: \"object\": minReplicas must not exceed maxReplicas"),
        (_set("autoscaling.targetLagPerReplica", 0), "spec.autoscaling.targetLagPerReplica in body should be greater"),
        (_set("transform.tombstones", "delete"), "transform.tombstones is delete: every primary key column must be "
         "read from the key, a header or the record"),
        (_set("transform.tombstones", "erase"), 'spec.transform.tombstones: Unsupported value: "erase"'),
        (_set("sink.ttlFrom", {"column": "ttl"}), "sink.ttlFrom.column must be a column of the transform's fields"),
        (_set("sink.writeTimestampFrom", {"column": "event_time", "unit": "weeks"}),
         'spec.sink.writeTimestampFrom.unit: Unsupported value: "weeks"'),
        (lambda spec: spec["sink"].update(writeTimestampFrom={"column": "event_time"}, useRecordTimestamp=False),
         "writeTimestampFrom sets the write time: useRecordTimestamp false would contradict it"),
        (_set("tables", [{"table": "more", "transform": {"fields": {"id": {"path": "$.id"}}}}]),
         "set transform and sink.table (one table), or tables (several), not both"),
        (lambda spec: spec.update(tables=[{"table": spec["sink"].pop("table"), "transform": spec.pop("transform")}]),
         "sink.ttlFrom, writeTimestampFrom and createTable name columns of one table: with tables, set them in each"),
        (_set("source.auth", {"secret": "s", "mechanism": "OAUTHBEARER"}), "tokenEndpoint is required with"),
        (_set("source.format", "avro"), "formats avro and protobuf need schemaRegistry, and only they use one"),
        (_set("source.schemaRegistry", {"url": "registry:8081"}), "spec.source.schemaRegistry.url in body should"),
        (lambda spec: spec.update(tables=[{"table": spec["sink"].pop("table"), "transform": spec.pop("transform"),
                                           "ttlFrom": {"column": "nope"}}]),
         "spec.tables[0]: Invalid value: \"object\": ttlFrom.column must be a column of the transform's fields"),
    ],
    ids=[
        "no-topics", "negative-replicas", "unknown-consistency", "no-in-flight", "duplicate-topics",
        "bad-keyspace", "sasl-without-credentials", "path-with-key", "grace-below-margin", "backoff",
        "replication", "unknown-field", "bad-quantity", "operator-labels", "bad-account", "toleration-not-object",
        "autoscaling-bounds", "autoscaling-target", "delete-without-key", "tombstone-action", "ttl-column",
        "timestamp-unit", "timestamp-and-record-time", "tables-and-transform", "tables-with-create-table",
        "oauth-without-endpoint", "avro-without-registry", "registry-url", "tables-ttl-column",
    ],
)  # fmt: skip
def test_invalid_pipelines_are_refused(
    crd: None, kubectl: Kubectl, namespace: str, change: Callable[[dict[str, Any]], None], message: str
) -> None:
    manifest = sample(namespace)
    change(manifest["spec"])
    assert message in refused(kubectl, manifest)


@pytest.mark.parametrize(
    ("field", "first", "second", "message"),
    [
        ("source.groupId", "shop.orders", "shop.orders-v2", "spec.source.groupId: Invalid value"),
        ("sink.keyspace", "store", "store_v2", "keyspace is immutable"),
        ("sink.table", "store_events", "events", "table is immutable"),
    ],
    ids=["group-id", "keyspace", "table"],
)
def test_identity_fields_are_immutable(
    crd: None, kubectl: Kubectl, namespace: str, field: str, first: str, second: str, message: str
) -> None:
    manifest = sample(namespace)
    _set(field, first)(manifest["spec"])
    kubectl.apply(manifest)
    _set(field, second)(manifest["spec"])
    stderr = refused(kubectl, manifest)
    assert message in stderr
    if field == "source.groupId":
        assert "groupId is immutable once set" in stderr
        del manifest["spec"]["source"]["groupId"]  # unsetting it would change the group too
        assert "groupId is immutable once set" in refused(kubectl, manifest)


def test_a_name_that_is_not_a_dns_label_is_refused(crd: None, kubectl: Kubectl, namespace: str) -> None:
    assert "metadata.name must be a DNS label" in refused(kubectl, sample(namespace, name="a" * 64))


def test_defaults_are_filled_in(crd: None, kubectl: Kubectl, namespace: str) -> None:
    manifest = sample(namespace)
    del manifest["spec"]["delivery"], manifest["spec"]["replicas"]
    kubectl.apply(manifest)
    spec = json.loads(kubectl.run("get", "-n", namespace, "dp/gophers-r-us", "-o", "json").stdout)["spec"]
    assert (spec["replicas"], spec["paused"], spec["terminationGracePeriodSeconds"]) == (1, False, 30)
    assert spec["delivery"]["retryBackoff"] == {"initialMs": 100, "maxMs": 30000}
    assert spec["sink"]["useRecordTimestamp"] is True


@pytest.mark.parametrize("example", sorted(p.name for p in EXAMPLES.glob("*.yaml")))
def test_every_example_is_accepted_as_written(crd: None, kubectl: Kubectl, namespace: str, example: str) -> None:
    manifest = yaml.safe_load((EXAMPLES / example).read_text())
    manifest["metadata"]["namespace"] = namespace
    done = kubectl.run("apply", "--dry-run=server", "-f", "-", input=yaml.safe_dump(manifest), check=False)
    assert done.returncode == 0, done.stderr


def test_kubectl_explain_describes_every_field(crd: None, kubectl: Kubectl) -> None:
    sink = kubectl.run("explain", "dp.spec.sink").stdout
    assert "The Cassandra side." in sink
    assert "consistency\t<string>" in sink and "Consistency level of writes." in sink
    backoff = kubectl.run("explain", "datapipelines.spec.delivery.retryBackoff.initialMs").stdout
    assert "First delay, in milliseconds." in backoff
    tombstones = kubectl.run("explain", "dp.spec.transform.tombstones").stdout
    assert "`delete` the row whose primary key the fields read from the key" in tombstones
    source = kubectl.run("explain", "dp.spec.source.format").stdout
    assert "How message values are encoded: `json`, or `avro`" in source
    ttl = kubectl.run("explain", "dp.spec.sink.ttlFrom").stdout
    assert "Each row's TTL from this column" in ttl and "unit\t<string>" in ttl
    conditions = kubectl.run("explain", "dp.status.conditions.reason").stdout
    assert "Why, as a CamelCase word." in conditions


def test_the_scale_subresource_serves_the_selector(crd: None, kubectl: Kubectl, namespace: str) -> None:
    kubectl.apply(sample(namespace))
    kubectl.run("scale", "-n", namespace, "dp/gophers-r-us", "--replicas=3")
    path = f"/apis/sluice.dev/v1alpha1/namespaces/{namespace}/datapipelines/gophers-r-us/scale"
    scale = json.loads(kubectl.run("get", "--raw", path).stdout)
    assert scale["kind"] == "Scale" and scale["spec"]["replicas"] == 3
    assert kubectl.run("get", "sluice", "-n", namespace, "-o", "name").stdout.strip() == (
        "datapipeline.sluice.dev/gophers-r-us"
    )
