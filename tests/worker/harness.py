"""What the worker tests drive: a pipeline on its own topic and table, worker processes, and a commit auditor."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from cassandra import ConsistencyLevel, InvalidRequest  # type: ignore[attr-defined]
from cassandra.cluster import Cluster, NoHostAvailable, Session
from cassandra.policies import ConstantReconnectionPolicy
from cassandra.query import SimpleStatement
from confluent_kafka import Consumer, Message, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic
from sluice_stack.config import component_dir
from sluice_stack.jvm import java
from sluice_stack.process import free_port

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "gophers-r-us.yaml"
WORKER = Path(sys.executable).with_name("sluice-worker")

# The talk's department rules, written out independently of the example's lookup table.
DEPARTMENTS = {
    "blue-gopher": "gophers", "pink-gopher": "gophers", "purple-gopher": "gophers",
    "gophercon-us-sticker": "stickers", "gosf-sticker": "stickers", "gophercon-uk-sticker": "stickers",
    "gophercon-us-shirt": "clothing", "gophercon-uk-shirt": "clothing",
    "gopher-mug": "misc", "gopher-plush": "misc",
}  # fmt: skip
ITEMS = list(DEPARTMENTS)

# Poison messages of several kinds, and the rejection each must get.
POISON = {
    "invalid_json": lambda i: b"{not json " + str(i).encode(),
    "missing_field": lambda i: json.dumps({"item": {"name": "blue-gopher", "price": 1.0}, "n": i}).encode(),
    "wrong_type": lambda i: json.dumps({"id": f"bad-{i}", "item": {"name": "pink-gopher", "price": "cheap"}}).encode(),
}


@dataclass
class Event:
    """One produced message and where it landed."""

    id: str
    item: str | None
    price: float | None
    poison: str | None = None  # the rejection kind a poison message must get
    partition: int = -1
    offset: int = -1
    timestamp_ms: int = 0


class ClientLog:
    """What a test's Kafka client logged (librdkafka's warnings and errors, or everything of the contexts named in
    SLUICE_TEST_KAFKA_DEBUG, e.g. `broker,topic,eos`), kept to explain a failure. The client calls `log` as it
    would a logging.Logger's."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def log(self, _level: int, message: str, *args: object) -> None:
        self.lines.append(f"{time.strftime('%H:%M:%S')} {message % args}")

    def config(self, config: dict[str, object]) -> dict[str, object]:
        """`config` with this log as the client's logger."""
        debug = os.environ.get("SLUICE_TEST_KAFKA_DEBUG")
        return {**config, "logger": self} | ({"debug": debug} if debug else {})

    def __str__(self) -> str:
        return "".join(f"\n  {line}" for line in self.lines[-200:]) if self.lines else " (the client logged nothing)"


@dataclass
class PipelineUnderTest:
    """A copy of the Gophers R Us example on a topic, group and table of its own.

    `bootstrap` and `contact_points` are comma-separated lists; with `replicas` > 1 the topics and the keyspace
    are replicated that many times and the checks read at QUORUM, so they see every row written at LOCAL_QUORUM.
    """

    bootstrap: str
    contact_points: str
    workdir: Path
    partitions: int = 1
    replicas: int = 1
    name: str = field(default_factory=lambda: f"gophers-{uuid.uuid4().hex[:8]}")
    events: list[Event] = field(default_factory=list)
    cassandra_options: dict[str, object] = field(default_factory=dict)  # e.g. ssl_context, auth_provider

    def __post_init__(self) -> None:
        self.topic = f"{self.name}.events"
        self.keyspace = self.name.replace("-", "_")
        self.table = "store_events"
        self.group_id = f"default.{self.name}"
        self.dlq_topic = f"{self.topic}.dlq"
        self.manifest = self.write_manifest()
        admin = AdminClient({"bootstrap.servers": self.bootstrap})
        for future in admin.create_topics(
            [NewTopic(self.topic, self.partitions, self.replicas), NewTopic(self.dlq_topic, 1, self.replicas)]
        ).values():
            future.result(30)
        self._session: Session | None = None

    def write_manifest(self, path: Path | None = None, **spec_changes: object) -> Path:
        """The example, renamed for this test, with `spec_changes` merged into its spec."""
        manifest = yaml.safe_load(EXAMPLE.read_text())
        manifest["metadata"]["name"] = self.name
        spec = manifest["spec"]
        spec["source"]["topics"] = [self.topic]
        spec["source"]["bootstrapServers"] = self.bootstrap
        spec["sink"]["contactPoints"] = self.contact_points.split(",")
        spec["sink"]["keyspace"] = self.keyspace
        spec["sink"]["createTable"]["replication"] = {"strategy": "SimpleStrategy", "replicationFactor": self.replicas}
        spec["delivery"]["commitIntervalMs"] = 200
        spec["delivery"]["retryBackoff"] = {"initialMs": 100, "maxMs": 2000}
        _merge(spec, spec_changes)
        path = path or self.workdir / f"{self.name}.yaml"
        path.write_text(yaml.safe_dump(manifest))
        return path

    def example_manifest(self, example: Path, **source: object) -> Path:
        """An example of examples/ on this test's topic, keyspace and group (its name), with `source` fields
        set (e.g. a schema registry's url) and quick commits and retries."""
        manifest = yaml.safe_load(example.read_text())
        manifest["metadata"]["name"] = self.name
        spec = manifest["spec"]
        spec["source"].update(bootstrapServers=self.bootstrap, topics=[self.topic], **source)
        spec["sink"].update(contactPoints=self.contact_points.split(","), keyspace=self.keyspace)
        spec["delivery"].update(commitIntervalMs=200, retryBackoff={"initialMs": 200, "maxMs": 2000})
        path = self.workdir / example.name
        path.write_text(yaml.safe_dump(manifest))
        return path

    # -- Kafka ------------------------------------------------------------------------------------------

    def produce(
        self,
        count: int,
        poison_every: int = 0,
        pace_seconds: float = 0.0,
        encode: Callable[[dict[str, object]], bytes] | None = None,
    ) -> list[Event]:
        """Sends `count` store events (every `poison_every`-th a poison message), spread over `pace_seconds`;
        `encode` makes a value of an event's document (default: JSON)."""
        encode = encode or (lambda document: json.dumps(document).encode())
        client_log = ClientLog()
        config = {"bootstrap.servers": self.bootstrap, "enable.idempotence": True, "linger.ms": 5}
        producer = Producer(client_log.config(config))
        start = len(self.events)
        batch: list[Event] = []
        kinds = list(POISON)
        for i in range(start, start + count):
            if poison_every and i % poison_every == poison_every - 1:
                kind = kinds[(i // poison_every) % len(kinds)]
                event, value = Event(f"bad-{i}", None, None, poison=kind), POISON[kind](i)
            else:
                event = Event(f"evt-{self.name}-{i}", ITEMS[i % len(ITEMS)], round(1 + i % 50 * 0.5, 2))
                value = encode({"id": event.id, "item": {"name": event.item, "price": event.price}})
            batch.append(event)

            def delivered(error: object, message: Message, event: Event = event) -> None:
                assert error is None, error
                event.partition, event.offset = message.partition(), message.offset()
                event.timestamp_ms = message.timestamp()[1]

            producer.produce(self.topic, value=value, key=event.id.encode(), on_delivery=delivered)
            producer.poll(0)
            if pace_seconds:
                time.sleep(pace_seconds / count)
        unacknowledged = producer.flush(60)
        assert unacknowledged == 0, f"{unacknowledged} of {count} events not acknowledged by Kafka in 60 s{client_log}"
        self.events.extend(batch)
        return batch

    def throttle_produce(self, client_id: str, bytes_per_second: int) -> None:
        """A Kafka quota for one client: past it, the broker answers its produce requests seconds late."""
        command = [
            java(), "-cp", str(component_dir("kafka") / "lib" / "*"), "kafka.admin.ConfigCommand",
            "--bootstrap-server", self.bootstrap, "--alter", "--add-config", f"producer_byte_rate={bytes_per_second}",
            "--entity-type", "clients", "--entity-name", client_id,
        ]  # fmt: skip
        subprocess.run(command, check=True, capture_output=True, timeout=120)

    def committed(self, timeout: float = 5) -> dict[int, int]:
        """The group's committed offset per partition (only those that have one)."""
        consumer = Consumer({"bootstrap.servers": self.bootstrap, "group.id": self.group_id})
        try:
            tps = consumer.committed([TopicPartition(self.topic, p) for p in range(self.partitions)], timeout)
        finally:
            consumer.close()
        return {tp.partition: tp.offset for tp in tps if tp.offset >= 0}

    def dead_letters(self, expected: int, timeout: float = 30) -> list[Message]:
        consumer = Consumer(
            {
                "bootstrap.servers": self.bootstrap,
                "group.id": f"dlq-reader-{uuid.uuid4().hex}",
                "auto.offset.reset": "earliest",
                "enable.auto.commit": False,
            }
        )
        consumer.subscribe([self.dlq_topic])
        letters: list[Message] = []
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline and len(letters) < expected:
                letters.extend(m for m in consumer.consume(100, timeout=0.5) if not m.error())
            letters.extend(m for m in consumer.consume(100, timeout=1) if not m.error())  # and no more
        finally:
            consumer.close()
        return letters

    # -- Cassandra --------------------------------------------------------------------------------------

    @property
    def session(self) -> Session:
        if self._session is None:
            points = [point.rsplit(":", 1) for point in self.contact_points.split(",")]
            # Reconnect within a second of a Cassandra restart (the driver's default backs off to minutes).
            hosts, port = [host for host, _ in points], int(points[0][1])
            cluster = Cluster(
                hosts, port=port, reconnection_policy=ConstantReconnectionPolicy(1.0), **self.cassandra_options
            )
            self._session = cluster.connect()
        return self._session

    def rows(self, timeout: float = 10, consistency: str | None = None) -> dict[str, tuple[object, ...]]:
        """The table, read at `consistency` (default: ONE, or QUORUM when replicated)."""
        level = consistency or ("QUORUM" if self.replicas > 1 else "ONE")
        query = SimpleStatement(
            f"SELECT id, item_name, price, department FROM {self.keyspace}.{self.table}",
            consistency_level=ConsistencyLevel.name_to_value[level],
        )
        return {r.id: (r.item_name, r.price, r.department) for r in self.session.execute(query, timeout=timeout)}

    def row_ids(self) -> set[str]:
        return set(self.rows())

    def written(self) -> int:
        """Rows in the table so far; 0 while the worker is still creating it."""
        try:
            return len(self.rows())
        except (InvalidRequest, NoHostAvailable):
            return 0

    def wait_for_rows(self, count: int, timeout: float = 120) -> dict[str, tuple[object, ...]]:
        deadline = time.monotonic() + timeout
        rows: dict[str, tuple[object, ...]] = {}
        error: Exception | None = None
        while time.monotonic() < deadline:
            try:
                rows, error = self.rows(), None
                if len(rows) >= count:
                    return rows
            except Exception as exc:  # the table may not exist yet, or Cassandra be restarting
                error = exc
            time.sleep(0.3)
        raise AssertionError(f"{len(rows)} rows after {timeout:.0f}s, expected {count} (last error: {error!r})")

    def expected_rows(self) -> dict[str, tuple[object, ...]]:
        """What the table must hold: one row per good event, with the talk's department."""
        return {e.id: (e.item, e.price, DEPARTMENTS[e.item]) for e in self.events if e.poison is None and e.item}

    def close(self) -> None:
        if self._session is not None:
            self._session.cluster.shutdown()


def _merge(target: dict[str, object], changes: dict[str, object]) -> None:
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(target.get(key), dict):
            _merge(target[key], value)  # type: ignore[arg-type]
        else:
            target[key] = value


class WorkerProcess:
    """`sluice-worker --pipeline FILE` as a real process, with its HTTP endpoints on a free loopback port."""

    def __init__(self, manifest: Path, log_path: Path, env: dict[str, str] | None = None) -> None:
        self.manifest, self.log_path = manifest, log_path
        self.port = free_port()
        self.env = {
            **os.environ,
            "SLUICE_HTTP_HOST": "127.0.0.1",
            "SLUICE_HTTP_PORT": str(self.port),
            "SLUICE_WRITE_TIMEOUT_SECONDS": "3",
            **(env or {}),
        }
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> WorkerProcess:
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [str(WORKER), "--pipeline", str(self.manifest)], env=self.env, stdout=log, stderr=subprocess.STDOUT
            )
        return self

    def _get(self, path: str) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=5) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()

    def ready(self) -> bool:
        try:
            return self._get("/readyz")[0] == 200
        except OSError:
            return False

    def readyz(self) -> tuple[int, str]:
        """/readyz's status and body (why not, when not ready); (0, "") while the worker is not listening yet."""
        try:
            return self._get("/readyz")
        except OSError:
            return 0, ""

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while not self.ready():
            assert self.proc is not None and self.proc.poll() is None, f"worker exited:\n{self.log()}"
            assert time.monotonic() < deadline, f"worker not ready after {timeout}s:\n{self.log()}"
            time.sleep(0.2)

    def metric(self, name: str) -> float:
        """Sum of a metric's samples (all labels) from /metrics."""
        _, text = self._get("/metrics")
        return sum(
            float(line.rsplit(" ", 1)[1])
            for line in text.splitlines()
            if line.startswith(name) and not line.startswith("#")
        )

    def rows_written(self) -> float:
        """sluice_rows_written_total; 0 while the worker is starting (not listening yet)."""
        assert self.proc is not None and self.proc.poll() is None, f"worker exited:\n{self.log()}"
        try:
            return self.metric("sluice_rows_written_total")
        except OSError:
            return 0.0

    def signal(self, sig: signal.Signals) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def stop(self, timeout: float = 30) -> tuple[int, float]:
        """SIGTERM; returns the exit code and the seconds it took to exit."""
        assert self.proc is not None
        started = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout)
        return code, time.monotonic() - started

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(10)

    def log(self, lines: int = 60) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def cleanup(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


class CommitAuditor:
    """Samples the group's committed offsets in the background and checks each against the table.

    A committed offset O on a partition promises every message below O is durable. Each sample reads the
    commits first and the table second, so a row found may be newer than the commit (a violation could be
    missed, never invented); sampling often makes a missed one unlikely.
    """

    def __init__(
        self, pipeline: PipelineUnderTest, interval: float = 0.5, expected: Callable[[Event], bool] | None = None
    ) -> None:
        """`expected`: which events must become rows (default: all but poison; a filter leaves out more)."""
        self.pipeline, self.interval = pipeline, interval
        self.expected = expected or (lambda event: event.poison is None)
        self.violations: list[str] = []
        self.samples = 0
        self.history: list[tuple[float, dict[int, int]]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> CommitAuditor:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(30)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                committed = self.pipeline.committed(timeout=2)
                self.history.append((time.monotonic(), committed))
                present = self.pipeline.row_ids()
            except Exception:  # a server is paused or restarting: no sample this time
                continue
            self.samples += 1
            for event in list(self.pipeline.events):
                if not self.expected(event) or event.partition not in committed:
                    continue
                if event.offset < committed[event.partition] and event.id not in present:
                    self.violations.append(
                        f"offset {event.offset} of partition {event.partition} committed "
                        f"(at {committed[event.partition]}) before {event.id} was written"
                    )


def in_background(target, *args, **kwargs) -> threading.Thread:  # type: ignore[no-untyped-def]
    """Runs `target(*args, **kwargs)` in a daemon thread (e.g. a paced producer while a fault is injected)."""
    thread = threading.Thread(target=target, args=args, kwargs=kwargs, daemon=True)
    thread.start()
    return thread


@contextlib.contextmanager
def running(worker: WorkerProcess) -> Iterator[WorkerProcess]:
    worker.start()
    try:
        yield worker
    finally:
        worker.cleanup()
