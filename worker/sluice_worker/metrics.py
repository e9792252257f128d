"""The worker's Prometheus metrics and its HTTP endpoints: /metrics, /healthz (loop alive), /readyz."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from confluent_kafka import KafkaError
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)


class WorkerMetrics:
    """Every metric the worker exports, on a registry of its own (so tests can run several workers)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.consumed = Counter("sluice_messages_consumed", "Messages read from Kafka", ["topic"], registry=r)
        self.written = Counter("sluice_rows_written", "Rows durably written to Cassandra", ["table"], registry=r)
        self.dead_lettered = Counter(
            "sluice_messages_dead_lettered",
            "Messages sent to the dead-letter topic",
            ["topic", "error"],
            registry=r,
        )
        self.skipped = Counter(
            "sluice_messages_skipped", "Messages the transform's filter left out (committed, not written)", ["topic"],
            registry=r,
        )  # fmt: skip
        self.write_errors = Counter("sluice_write_errors", "Failed Cassandra write attempts", ["error"], registry=r)
        self.write_retries = Counter("sluice_write_retries", "Cassandra writes retried after a failure", registry=r)
        self.write_latency = Histogram(
            "sluice_write_latency_seconds",
            "Latency of one Cassandra write request",
            registry=r,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
        )
        self.committed_offset = Gauge(
            "sluice_committed_offset", "Last committed offset", ["topic", "partition"], registry=r
        )
        self.lag = Gauge(
            "sluice_consumer_lag", "High watermark minus committed offset", ["topic", "partition"], registry=r
        )
        self.sink_up = Gauge("sluice_sink_up", "1 when the last Cassandra write succeeded", registry=r)
        self.in_flight = Gauge("sluice_writes_in_flight", "Cassandra write requests awaiting an answer", registry=r)


class Health:
    """What /healthz and /readyz answer; the loop updates it."""

    def __init__(self, stall_seconds: float = 60.0) -> None:
        self.stall_seconds = stall_seconds
        self.last_loop = time.monotonic()
        self.sink_up = False
        self.sink_error = ""  # why the sink is down, once a write failed
        self.in_group = False
        self.kafka_error = ""  # the brokers' last error (TLS, login, unreachable), until the worker joins
        self.registry_error = ""  # why the schema registry did not answer, while it does not

    def sink_down(self, error: str) -> None:
        """Cassandra cannot be reached or refused the login: why, for /readyz."""
        self.sink_up, self.sink_error = False, error

    def kafka_failed(self, error: KafkaError) -> None:
        """librdkafka's error callback: kept for /readyz while the worker is not in its group."""
        self.kafka_error = error.str()

    def registry_unavailable(self, error: str) -> None:
        """The schema registry did not answer (why), or answers again (""): consumption waits for it."""
        self.registry_error = error

    def beat(self) -> None:
        self.last_loop = time.monotonic()

    def alive(self) -> bool:
        return time.monotonic() - self.last_loop < self.stall_seconds

    def ready(self) -> bool:
        return self.alive() and self.sink_up and self.in_group and not self.registry_error

    def not_ready_reason(self) -> str:
        """Why /readyz says no, in words an admin can act on ("" while ready); the operator shows it."""
        if not self.alive():
            return f"the worker loop has not run for {self.stall_seconds:.0f}s"
        if not self.sink_up:
            return f"Cassandra unreachable: {self.sink_error}" if self.sink_error else "not connected to Cassandra yet"
        if not self.in_group:
            return f"not in the Kafka consumer group yet{': ' + self.kafka_error if self.kafka_error else ''}"
        if self.registry_error:
            return f"schema registry unavailable: {self.registry_error}"
        return ""


def serve_http(port: int, metrics: WorkerMetrics, health: Health, host: str = "0.0.0.0") -> ThreadingHTTPServer:
    """Starts the endpoints on a daemon thread; `.shutdown()` on the result stops them."""
    routes: dict[str, Callable[[], tuple[int, bytes, str]]] = {
        "/metrics": lambda: (200, generate_latest(metrics.registry), CONTENT_TYPE_LATEST),
        "/healthz": lambda: _probe(health.alive()),
        "/readyz": lambda: _probe(health.ready(), health.not_ready_reason()),
    }

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            route = routes.get(self.path.split("?", 1)[0])
            status, body, content_type = route() if route else (404, b"not found\n", "text/plain")
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:  # probes every few seconds: stay quiet
            pass

    server = ThreadingHTTPServer((host, port), Handler)
    threading.Thread(target=server.serve_forever, name="sluice-http", daemon=True).start()
    return server


def _probe(ok: bool, why: str = "") -> tuple[int, bytes, str]:
    return (200, b"ok\n", "text/plain") if ok else (503, f"{why or 'not ready'}\n".encode(), "text/plain")
