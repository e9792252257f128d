"""The operator's metrics: what a lag check and a reconcile leave in them, and docs/metrics.md lists them all."""

from __future__ import annotations

from pathlib import Path

from prometheus_client import generate_latest
from sluice_operator.metrics import OperatorMetrics
from sluice_worker.metrics import WorkerMetrics

METRICS_DOC = Path(__file__).resolve().parents[3] / "docs" / "metrics.md"


def documented_names(registry_owner: WorkerMetrics | OperatorMetrics) -> set[str]:
    """Series names as the docs write them: counters with `_total`, the others as named."""
    return {f.name + ("_total" if f.type == "counter" else "") for f in registry_owner.registry.collect()}


def test_the_docs_list_every_metric_of_the_worker_and_the_operator() -> None:
    section = METRICS_DOC.read_text()
    missing = {
        name
        for owner in (WorkerMetrics(), OperatorMetrics())
        for name in documented_names(owner)
        if name not in section
    }
    assert not missing, f"docs/metrics.md does not list {sorted(missing)}"


def test_a_deleted_pipeline_leaves_no_series() -> None:
    metrics = OperatorMetrics()
    for namespace, name in (("shop", "orders"), ("shop", "refunds")):
        metrics.lag.labels(namespace, name).set(12)
        metrics.scale_decisions.labels(namespace, name, "up").inc()
    metrics.forget("shop", "orders")
    metrics.forget("shop", "never-seen")  # nothing to drop: no error
    text = generate_latest(metrics.registry).decode()
    assert 'pipeline="orders"' not in text
    assert 'sluice_operator_pipeline_lag{namespace="shop",pipeline="refunds"} 12.0' in text
