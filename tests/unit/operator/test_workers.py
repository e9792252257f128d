"""Why workers are not ready, in their words: a real worker HTTP endpoint on loopback, asked as the operator asks."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from sluice_operator.status import Assessment, Diagnosis, Verdict, with_diagnosis
from sluice_operator.workers import ask, diagnose, failure
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
    explained = with_diagnosis(Assessment(unavailable, *rest), Diagnosis(unready=["w-1: Cassandra unreachable"]))
    assert explained.ready == Verdict(
        "False", "WorkersNotReady", "1/3 workers available; not ready: w-1: Cassandra unreachable"
    )
    assert with_diagnosis(Assessment(unavailable, *rest), Diagnosis()) == Assessment(unavailable, *rest)


def test_failing_workers_make_the_pipeline_not_ready_and_degraded_with_their_last_words() -> None:
    unavailable = Verdict("False", "ReplicasUnavailable", "0/1 workers available")
    rest = Verdict("True", "WaitingForReplicas", "0/1 workers available"), Verdict("False", "AsExpected", "")
    failing = Diagnosis(failing=["w-1: CrashLoopBackOff, exit code 2 (Error), 3 restarts: bad hook"])
    explained = with_diagnosis(Assessment(unavailable, *rest), failing)
    message = "0/1 workers available; failing: w-1: CrashLoopBackOff, exit code 2 (Error), 3 restarts: bad hook"
    assert explained.ready == Verdict("False", "WorkersFailing", message)
    assert explained.degraded == Verdict("True", "WorkersFailing", message)
    ready = Verdict("True", "ReplicasAvailable", "1/1 workers available")
    assert with_diagnosis(Assessment(ready, *rest), failing).ready == ready  # a ready pipeline stays ready


def pod(name: str, state: dict[str, Any], ready: bool = False, **status: Any) -> dict[str, Any]:
    container = {"name": "worker", "ready": ready, "state": state, "restartCount": 0, **status}
    conditions = [{"type": "Ready", "status": str(ready)}]
    return {"metadata": {"name": name}, "status": {"containerStatuses": [container], "conditions": conditions}}


CRASHED = {
    "terminated": {"exitCode": 2, "reason": "Error", "message": "sluice-worker: invalid pipeline\n  spec.x: bad\n"}
}


def test_a_crash_looping_worker_is_failing_with_its_termination_message() -> None:
    looping = pod("w-1", {"waiting": {"reason": "CrashLoopBackOff"}}, lastState=CRASHED, restartCount=3)
    assert (
        failure(looping)
        == "CrashLoopBackOff, exit code 2 (Error), 3 restarts: sluice-worker: invalid pipeline | spec.x: bad"
    )
    assert failure(pod("w-2", CRASHED)) == "exit code 2 (Error): sluice-worker: invalid pipeline | spec.x: bad"
    pulling = pod("w-3", {"waiting": {"reason": "ImagePullBackOff", "message": 'Back-off pulling image "nope"'}})
    assert failure(pulling) == 'ImagePullBackOff: Back-off pulling image "nope"'


def test_a_starting_or_running_worker_is_not_failing() -> None:
    assert failure(pod("w-1", {"waiting": {"reason": "ContainerCreating"}})) is None
    assert failure(pod("w-1", {"running": {}}, lastState=CRASHED, restartCount=1)) is None  # its next try runs
    assert failure(pod("w-1", {"terminated": {"exitCode": 0, "reason": "Completed"}})) is None
    assert failure({"metadata": {"name": "w-1"}, "status": {"phase": "Pending"}}) is None  # not yet scheduled


def test_a_long_message_keeps_its_end_where_a_traceback_names_the_error() -> None:
    trace = (
        "Traceback (most recent call last):\n"
        + "  File x, line 1\n" * 100
        + "ModuleNotFoundError: No module named 'nope'"
    )
    looping = pod(
        "w-1", {"waiting": {"reason": "CrashLoopBackOff"}}, lastState={"terminated": {"exitCode": 1, "message": trace}}
    )
    said = failure(looping)
    assert said is not None and said.endswith("ModuleNotFoundError: No module named 'nope'") and len(said) < 700


def test_diagnose_names_up_to_three_failing_pods_and_skips_ready_ones() -> None:
    pods = [pod(f"w-{i}", {"waiting": {"reason": "CrashLoopBackOff"}}, lastState=CRASHED) for i in range(5)]
    pods.insert(0, pod("w-ok", {"running": {}}, ready=True))
    diagnosis = diagnose(pods, ask_readyz=False)
    assert [line.split(":")[0] for line in diagnosis.failing] == ["w-0", "w-1", "w-2"]
    assert diagnosis.unready == []
