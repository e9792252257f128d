"""Why workers are not ready, in their words: a real worker HTTP endpoint on loopback, asked as the operator asks."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sluice_operator.status import Assessment, Verdict, with_worker_reasons
from sluice_operator.workers import ask
from sluice_stack.process import free_port
from sluice_worker.metrics import Health, WorkerMetrics, serve_http


@pytest.fixture
def worker() -> Iterator[tuple[Health, str]]:
    health, port = Health(), free_port()
    server = serve_http(port, WorkerMetrics(), health, "127.0.0.1")
    yield health, f"http://127.0.0.1:{port}/readyz"
    server.shutdown()


def test_a_worker_that_cannot_write_says_so(worker: tuple[Health, str]) -> None:
    health, url = worker
    health.in_group, health.sink_error = True, "NoHostAvailable: no host answered at cassandra-0:9042"
    assert ask(url, timeout=2) == "Cassandra unreachable: NoHostAvailable: no host answered at cassandra-0:9042"


def test_each_reason_a_worker_is_not_ready(worker: tuple[Health, str]) -> None:
    health, url = worker
    assert ask(url, timeout=2) == "not connected to Cassandra yet"
    health.sink_up = True
    assert ask(url, timeout=2) == "not in the Kafka consumer group yet"
    health.in_group = True
    assert ask(url, timeout=2) is None  # ready: nothing to say


def test_a_worker_that_does_not_answer_says_nothing() -> None:
    assert ask(f"http://127.0.0.1:{free_port()}/readyz", timeout=1) is None


def test_the_ready_condition_carries_the_workers_reasons() -> None:
    unavailable = Verdict("False", "ReplicasUnavailable", "1/3 workers available")
    rest = Verdict("True", "WaitingForReplicas", "1/3 workers available"), Verdict("False", "AsExpected", "")
    explained = with_worker_reasons(Assessment(unavailable, *rest), ["w-1: Cassandra unreachable: timeout"])
    assert explained.ready == Verdict(
        "False", "WorkersNotReady", "1/3 workers available; not ready: w-1: Cassandra unreachable: timeout"
    )
    assert with_worker_reasons(Assessment(unavailable, *rest), []) == Assessment(unavailable, *rest)
