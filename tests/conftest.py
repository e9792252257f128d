"""Session fixtures: the real local servers (started once, or the ones `make stack-up` left running)."""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient
from sluice_stack import Stack
from sluice_stack.config import REPO_DIR

from tests.worker.harness import WorkerProcess


class Server:
    """A handle on one real server with the faults the reliability tests inject."""

    def __init__(self, stack: Stack, name: str) -> None:
        self.stack, self.name = stack, name
        self.resumed_at = 0.0

    @property
    def service(self):  # type: ignore[no-untyped-def]
        return self.stack.services[self.name]

    @property
    def pid(self) -> int:
        return int(self.service.pid)

    def pause(self) -> None:
        """SIGSTOP: sockets stay open, nothing answers (`docker pause`)."""
        self.service.pause()

    def resume(self) -> None:
        """SIGCONT; `resumed_at` is when (time.monotonic)."""
        self.resumed_at = time.monotonic()
        self.service.resume()

    @contextlib.contextmanager
    def paused(self, seconds: float = 0) -> Iterator[None]:
        """Paused for the body of the `with` and at least `seconds`, resumed even if the body fails."""
        start = time.monotonic()
        self.pause()
        try:
            yield
            time.sleep(max(0.0, seconds - (time.monotonic() - start)))
        finally:
            self.resume()

    def kill(self) -> None:
        """SIGKILL; the data stays for `start()`."""
        self.service.kill()

    def start(self) -> float:
        """Starts a killed server on the same ports and data; returns seconds until it answers."""
        seconds = self.stack.start(self.name)
        self.stack.save()
        return seconds

    def restart(self) -> float:
        return self.stack.restart(self.name)


class KafkaServer(Server):
    @property
    def bootstrap_servers(self) -> str:
        return self.service.endpoints["bootstrap"]

    def resume(self, timeout: float = 30, steady: float = 1.0) -> None:
        """SIGCONT, then waits until the broker has led every partition for `steady` seconds. Paused longer than
        its session timeout, the broker is fenced by its own controller for a moment after it resumes, its
        partitions leaderless; a producer created in that moment can stay stuck on them for good (librdkafka
        #5430, open), which would fail a test for the test's producer, not for the worker under test. Each look
        is a new client's, so that what one client saw in the fenced moment cannot outlive it."""
        super().resume()
        deadline, leading_since, lacking = time.monotonic() + timeout, None, ""
        while leading_since is None or time.monotonic() - leading_since < steady:
            assert time.monotonic() < deadline, f"{timeout:g} s after resuming, the broker still lacked {lacking}"
            lacking = _what_the_broker_does_not_lead(self.bootstrap_servers)
            if lacking:
                leading_since = None
            elif leading_since is None:
                leading_since = time.monotonic()
            time.sleep(0.1)


def _what_the_broker_does_not_lead(bootstrap_servers: str) -> str:
    """What a new client finds missing: an answer, a broker or topic in it, or a partition's leader ('' if none)."""
    try:
        metadata = AdminClient({"bootstrap.servers": bootstrap_servers}).list_topics(timeout=5)
    except KafkaException as e:
        return f"an answer ({e})"
    if not metadata.brokers or not metadata.topics:
        return "a broker or a topic in its answer"
    lacking = [
        f"{topic.topic}[{p.id}] leader {p.leader} {p.error or ''}".strip()
        for topic in metadata.topics.values()
        for p in topic.partitions.values()
        if p.leader < 0 or p.error
    ]
    return f"the lead of {len(lacking)} partitions, e.g. {', '.join(lacking[:3])}" if lacking else ""


class CassandraServer(Server):
    @property
    def contact_point(self) -> str:
        return self.service.endpoints["contact_point"]

    @property
    def host(self) -> str:
        return self.contact_point.rsplit(":", 1)[0]

    @property
    def port(self) -> int:
        return int(self.contact_point.rsplit(":", 1)[1])


class SchemaRegistryServer(Server):
    @property
    def url(self) -> str:
        """The Confluent-compatible API root a client is given."""
        return str(self.service.endpoints["url"])


class ControlPlane:
    """The local kube-apiserver and its admin kubeconfig."""

    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self.apiserver = Server(stack, "kube-apiserver")
        self.controller_manager = Server(stack, "kube-controller-manager")

    @property
    def kubeconfig(self) -> str:
        return self.stack.kubeconfig

    @property
    def env(self) -> dict[str, str]:
        """Environment for `kubectl`/`helm` subprocesses: KUBECONFIG and PATH with the built tools first."""
        return {**os.environ, **{k: v for k, v in self.stack.env().items() if k in ("KUBECONFIG", "PATH")}}


def running_stack(nodes: int) -> Stack | None:
    """The servers `make stack-up` left running (SLUICE_STACK_DIR, default .stack), if of `nodes` nodes."""
    running = Stack.attach(Path(os.environ.get("SLUICE_STACK_DIR", REPO_DIR / ".stack")))
    return running if running is not None and running.nodes == nodes else None


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """The single-node servers of `make stack-up` if it is running, else a fresh stack torn down after the
    session. (tests/cluster has a three-node one of its own.)"""
    running = running_stack(nodes=1)
    if running is not None:
        yield running
        return
    own = Stack(tmp_path_factory.mktemp("stack"), nodes=1)
    try:
        yield own
    finally:
        own.down()


@pytest.fixture(scope="session")
def kafka(stack: Stack) -> KafkaServer:
    stack.up(["kafka"])
    return KafkaServer(stack, "kafka")


@pytest.fixture(scope="session")
def cassandra(stack: Stack) -> CassandraServer:
    stack.up(["cassandra"])
    return CassandraServer(stack, "cassandra")


@pytest.fixture(scope="session")
def secure_cassandra(stack: Stack) -> CassandraServer:
    """A Cassandra node of its own serving TLS only, with password authentication (sluice_stack.cassandra)."""
    stack.up(["cassandra-secure"])
    return CassandraServer(stack, "cassandra-secure")


@pytest.fixture(scope="session")
def schema_registry(stack: Stack) -> SchemaRegistryServer:
    """Apicurio Registry through its Confluent-compatible API (sluice_stack.registry), in memory."""
    stack.up(["registry"])
    return SchemaRegistryServer(stack, "registry")


@pytest.fixture(scope="session")
def kube(stack: Stack) -> ControlPlane:
    stack.up(["kube"])
    return ControlPlane(stack)


@pytest.fixture
def make_worker(tmp_path: Path) -> Iterator[Callable[..., WorkerProcess]]:
    """Worker processes, killed after the test; pytest shows their logs when the test fails."""
    workers: list[WorkerProcess] = []

    def make(manifest: Path, **env: str) -> WorkerProcess:
        worker = WorkerProcess(manifest, tmp_path / f"worker-{len(workers)}.log", env)
        workers.append(worker)
        return worker

    yield make
    for worker in workers:
        worker.cleanup()
        print(f"\n--- {worker.log_path}\n{worker.log(80)}")  # captured: printed only if the test failed


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """A failing test shows the tail of every server's log next to its traceback."""
    outcome = yield
    report = outcome.get_result()
    if not report.failed:
        return
    stacks = [getattr(item, "funcargs", {}).get(name) for name in ("stack", "three_nodes")]
    for stack in (getattr(s, "stack", s) for s in stacks if s is not None):  # ThreeNodes holds its Stack
        for name, service in stack.services.items():
            report.sections.append((f"server log: {name} ({service.log_path})", service.tail(40)))
