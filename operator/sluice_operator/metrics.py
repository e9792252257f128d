"""The operator's Prometheus metrics, served at /metrics next to /healthz."""

from __future__ import annotations

import contextlib

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

PIPELINE = ("namespace", "pipeline")


class OperatorMetrics:
    """Every metric the operator exports, on a registry of its own."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.leader = Gauge("sluice_operator_leader", "1 while this operator holds the Lease and acts", registry=r)
        self.reconciles = Counter(
            "sluice_operator_reconciles",
            "Reconciles of DataPipelines by result: ok, invalid (the spec cannot run), error (API failure)",
            ["result"],
            registry=r,
        )
        self.reconcile_seconds = Histogram(
            "sluice_operator_reconcile_duration_seconds", "Duration of one reconcile", registry=r
        )
        self.queue_depth = Gauge(
            "sluice_operator_reconcile_queue_depth",
            "Pipelines waiting for a reconcile worker (each once, however many events it had)",
            registry=r,
        )
        self.lag = Gauge(
            "sluice_operator_pipeline_lag", "Messages the consumer group has not committed", PIPELINE, registry=r
        )
        self.partitions = Gauge(
            "sluice_operator_pipeline_partitions", "Partitions of the source topics", PIPELINE, registry=r
        )
        self.throughput = Gauge(
            "sluice_operator_pipeline_throughput",
            "Messages per second the group committed over the last 30 s (or between the last two lag checks)",
            PIPELINE,
            registry=r,
        )
        self.desired_replicas = Gauge(
            "sluice_operator_pipeline_desired_replicas",
            "Workers the operator runs for the pipeline",
            PIPELINE,
            registry=r,
        )
        self.lag_errors = Counter(
            "sluice_operator_lag_errors", "Lag checks that could not read Kafka", PIPELINE, registry=r
        )
        self.lag_reader_deaths = Counter(
            "sluice_operator_lag_reader_deaths",
            "Times the lag reader's child process died (librdkafka aborted) or was killed stuck; each is restarted",
            registry=r,
        )
        self.scale_decisions = Counter(
            "sluice_operator_scale_decisions",
            "Autoscaler decisions by action: up, down, frozen, deferred, overridden",
            [*PIPELINE, "action"],
            registry=r,
        )

    def forget(self, namespace: str, pipeline: str) -> None:
        """Drops the series of a deleted pipeline."""
        for series in (self.lag, self.partitions, self.throughput, self.desired_replicas, self.lag_errors):
            with contextlib.suppress(KeyError):
                series.remove(namespace, pipeline)
        for action in ("up", "down", "frozen", "deferred", "overridden"):
            with contextlib.suppress(KeyError):
                self.scale_decisions.remove(namespace, pipeline, action)
