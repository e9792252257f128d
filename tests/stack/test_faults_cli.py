"""`python -m sluice_stack pause|resume|kill|restart SERVER`: the talk's faults by hand, on a running stack."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from cassandra import OperationTimedOut, ReadTimeout
from cassandra.cluster import Cluster, NoHostAvailable
from cassandra.policies import ConstantReconnectionPolicy

from tests.waiting import wait_for

pytestmark = pytest.mark.cassandra
HACK = os.path.join(os.path.dirname(__file__), "..", "..", "hack")


def stack_cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": HACK}
    return subprocess.run([sys.executable, "-m", "sluice_stack", *args], env=env, capture_output=True, text=True)


def test_pause_then_resume_cassandra_from_the_shell(stack, cassandra) -> None:  # type: ignore[no-untyped-def]
    cluster = Cluster([cassandra.host], port=cassandra.port, reconnection_policy=ConstantReconnectionPolicy(0.5))
    session = cluster.connect()
    query = "SELECT release_version FROM system.local"
    try:
        paused = stack_cli("pause", "cassandra", "--root", str(stack.root))
        try:
            assert paused.returncode == 0, paused.stderr
            assert "cassandra paused (SIGSTOP)" in paused.stdout
            with pytest.raises((OperationTimedOut, ReadTimeout, NoHostAvailable)):
                session.execute(query, timeout=2)
        finally:
            resumed = stack_cli("resume", "cassandra", "--root", str(stack.root))
        assert resumed.returncode == 0 and "cassandra resumed (SIGCONT)" in resumed.stdout, resumed.stderr
        wait_for("Cassandra to answer after resume", lambda: session.execute(query, timeout=2).one(), timeout=30,
                 tolerate=(OperationTimedOut, ReadTimeout, NoHostAvailable))  # fmt: skip
    finally:
        cluster.shutdown()


def test_a_fault_names_what_it_takes(stack) -> None:  # type: ignore[no-untyped-def]
    unknown = stack_cli("kill", "zookeeper", "--root", str(stack.root))
    assert unknown.returncode == 2 and "kill takes one server: kafka or cassandra" in unknown.stderr
    nowhere = stack_cli("pause", "kafka", "--root", "/nonexistent-stack")
    assert nowhere.returncode == 1 and "no kafka in a stack under /nonexistent-stack" in nowhere.stderr
