"""The chart's monitoring, off by default: PodMonitors of the workers and the operator, the alerts and the Grafana
dashboard, which query only metrics that the worker and the operator export."""

from __future__ import annotations

import json
import re

from sluice_operator.metrics import OperatorMetrics
from sluice_worker.metrics import WorkerMetrics

from .helm import VALUES, Manifest, env_of, find, one, render

NAMESPACE = "sluice-system"
SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_count", "_sum"), "gauge": ("",)}


def rendered(values_file: str) -> list[Manifest]:
    return render("sluice", NAMESPACE, "-f", str(VALUES / values_file))


def exported() -> set[str]:
    """The series names the worker and the operator export."""
    names = set()
    for registry in (WorkerMetrics().registry, OperatorMetrics().registry):
        for family in registry.collect():
            names |= {family.name + suffix for suffix in SUFFIXES[family.type]}
    return names


def queried(text: str) -> set[str]:
    return set(re.findall(r"\bsluice_[a-z_]+\b", text)) - {"sluice_dev_pipeline"}  # a label, not a metric


def test_monitoring_is_off_by_default() -> None:
    manifests = rendered("default.yaml")
    assert not find(manifests, "PodMonitor") and not find(manifests, "PrometheusRule")
    assert not find(manifests, "ConfigMap")
    (container,) = one(manifests, "Deployment")["spec"]["template"]["spec"]["containers"]
    assert env_of(container)["SLUICE_LAG_INTERVAL_SECONDS"] == "30"
    assert env_of(container)["SLUICE_LAG_STATUS_REFRESH_SECONDS"] == "300"


def test_pod_monitors_scrape_the_workers_by_pipeline_and_the_operator_with_its_labels() -> None:
    manifests = rendered("observability.yaml")
    workers = one(manifests, "PodMonitor", "sluice-workers")["spec"]
    assert workers["podTargetLabels"] == ["sluice.dev/pipeline"]
    operator = one(manifests, "PodMonitor", "sluice-operator")
    assert operator["metadata"]["labels"]["release"] == "prometheus"
    deployment = one(manifests, "Deployment")
    assert (
        operator["spec"]["selector"]["matchLabels"].items()
        <= deployment["spec"]["template"]["metadata"]["labels"].items()
    )
    assert operator["spec"]["podMetricsEndpoints"] == [
        {"port": "health", "path": "/metrics", "interval": "15s", "honorLabels": True}
    ]
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert {"name": "health", "containerPort": 8081, "protocol": "TCP"} in container["ports"]
    assert env_of(container)["SLUICE_LAG_INTERVAL_SECONDS"] == "15"


def test_the_alerts_cover_lag_dead_letters_and_the_sink() -> None:
    rule = one(rendered("observability.yaml"), "PrometheusRule")
    assert rule["metadata"]["labels"]["release"] == "prometheus"
    (group,) = rule["spec"]["groups"]
    alerts = {r["alert"]: r for r in group["rules"]}
    assert set(alerts) == {"SluiceLagGrowing", "SluiceDeadLetters", "SluiceSinkDown"}
    assert "sluice_operator_pipeline_lag > 5000" in alerts["SluiceLagGrowing"]["expr"]
    assert "sluice_messages_dead_lettered_total" in alerts["SluiceDeadLetters"]["expr"]
    assert alerts["SluiceSinkDown"]["expr"].strip() == "sluice_sink_up == 0"
    assert alerts["SluiceSinkDown"]["labels"]["severity"] == "critical"
    for alert in alerts.values():
        assert "{{ $labels." in alert["annotations"]["summary"]  # Prometheus templates, left to Prometheus
        assert queried(alert["expr"]) <= exported(), alert["alert"]


def test_the_dashboard_is_grafana_json_querying_exported_metrics() -> None:
    config = one(rendered("observability.yaml"), "ConfigMap", "sluice-dashboard")
    assert config["metadata"]["namespace"] == "monitoring"
    assert config["metadata"]["labels"]["grafana_dashboard"] == "1"
    dashboard = json.loads(config["data"]["sluice.json"])
    assert dashboard["title"] == "Sluice" and dashboard["uid"] == "sluice-pipelines"
    expressions = [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]
    assert {"Lag", "Workers", "Throughput", "Scale decisions", "Dead letters", "Sink up"} <= {
        panel["title"] for panel in dashboard["panels"]
    }
    used = set().union(*map(queried, expressions))
    assert used <= exported(), sorted(used - exported())
    assert {"sluice_operator_pipeline_lag", "sluice_messages_dead_lettered_total", "sluice_sink_up"} <= used
