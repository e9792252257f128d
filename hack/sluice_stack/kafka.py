"""A single-node Apache Kafka (KRaft, broker and controller in one JVM) from Maven Central jars."""

from __future__ import annotations

import base64
import logging
import subprocess
import uuid
from pathlib import Path

from confluent_kafka.admin import AdminClient

from .config import HACK_DIR, VERSIONS, component_dir
from .jvm import fetch_jars, java
from .process import Service, free_port

# librdkafka's own lines (e.g. `%4|...|GETPID|... Coordinator load in progress`) of a tool's clients: pass
# `"logger": CLIENT_LOG` in their settings, and `log_clients_to` keeps them out of the tool's progress output.
CLIENT_LOG = logging.getLogger("sluice.kafka-clients")
POM = HACK_DIR / "kafka" / "pom.xml"
LOG4J_CONFIG = HACK_DIR / "kafka" / "log4j2.properties"

# Kafka's own defaults (bin/kafka-server-start.sh), sized down for a developer machine.
JVM_FLAGS = [
    "-Xms512m",
    "-Xmx1g",
    "-XX:+UseG1GC",
    "-XX:MaxGCPauseMillis=20",
    "-XX:InitiatingHeapOccupancyPercent=35",
    "-XX:+ExplicitGCInvokesConcurrent",
    "-XX:+ExitOnOutOfMemoryError",
    "-Djava.awt.headless=true",
]
# Three of them share the machine with three Cassandra nodes: a smaller heap each.
CLUSTER_JVM_FLAGS = ["-Xms256m", "-Xmx512m", *JVM_FLAGS[2:]]


def provision() -> Path:
    """Fetches the jars into `~/.cache/sluice/kafka-<version>/lib` once; returns that `kafka-<version>`."""
    lib = component_dir("kafka") / "lib"
    return fetch_jars("kafka", POM, f"-Dkafka.version={VERSIONS['KAFKA_VERSION']}", f"-DoutputDirectory={lib}")


def _java_argv(jvm_flags: list[str], main_class: str, *args: str) -> list[str]:
    classpath = str(component_dir("kafka") / "lib" / "*")  # the JVM expands the `*` itself
    return [java(), *jvm_flags, f"-Dlog4j2.configurationFile={LOG4J_CONFIG}", "-cp", classpath, main_class, *args]


def _cluster_id() -> str:
    """What `kafka-storage.sh random-uuid` prints: a random UUID in URL-safe base64, not starting with '-'."""
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        if not cluster_id.startswith("-"):
            return cluster_id


def _server_properties(data: Path, node: int, ports: list[tuple[int, int]]) -> str:
    """One node of `len(ports)` (broker and controller in one JVM each); `ports[i]`: node i+1's (broker,
    controller). Replicated three ways as production would be when there are three nodes."""
    broker_port, controller_port = ports[node - 1]
    replicas = min(len(ports), 3)
    in_sync = 2 if replicas == 3 else 1
    settings = {
        "process.roles": "broker,controller",
        "node.id": node,
        # A static voter set: the controllers' addresses are not written into the metadata log, so the
        # same data directories can be started again on other ports.
        "controller.quorum.voters": ",".join(f"{n}@127.0.0.1:{c}" for n, (_, c) in enumerate(ports, 1)),
        "listeners": f"PLAINTEXT://127.0.0.1:{broker_port},CONTROLLER://127.0.0.1:{controller_port}",
        "advertised.listeners": f"PLAINTEXT://127.0.0.1:{broker_port}",
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "PLAINTEXT",
        "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
        "log.dirs": data / "logs",
        "num.partitions": 1,
        "auto.create.topics.enable": "true",
        "default.replication.factor": replicas,
        "min.insync.replicas": in_sync,
        # The internal topics: one partition each, so that they are created at once.
        "offsets.topic.replication.factor": replicas,
        "offsets.topic.num.partitions": 1,
        "transaction.state.log.replication.factor": replicas,
        "transaction.state.log.min.isr": in_sync,
        "transaction.state.log.num.partitions": 1,
        "share.coordinator.state.topic.replication.factor": replicas,
        "share.coordinator.state.topic.min.isr": in_sync,
        "share.coordinator.state.topic.num.partitions": 1,
        "group.initial.rebalance.delay.ms": 0,
        # After a SIGKILL the restarted controller waits out the old broker's session before it lets the
        # broker register again: 3 s rather than the default 9 s.
        "broker.session.timeout.ms": 3000,
        "broker.heartbeat.interval.ms": 500,
        "num.network.threads": 2,
        "num.io.threads": 4,
    }
    return "".join(f"{key}={value}\n" for key, value in settings.items())


def log_clients_to(path: Path) -> None:
    """Writes what librdkafka says through CLIENT_LOG to `path` (appended), and nowhere else."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    CLIENT_LOG.handlers[:] = [handler]
    CLIENT_LOG.setLevel(logging.INFO)
    CLIENT_LOG.propagate = False


def make_service(root: Path) -> Service:
    """A single Kafka configured and formatted under `root/data/kafka` (not started); its data survives restarts."""
    (service,) = make_services(root, 1)
    return service


def make_services(root: Path, nodes: int) -> list[Service]:
    """`nodes` Kafka nodes forming one cluster (`kafka`, or `kafka-1`...), configured and formatted under
    `root/data/<name>` (not started: they elect a controller once a majority runs). Their data survives restarts."""
    names = ["kafka"] if nodes == 1 else [f"kafka-{n}" for n in range(1, nodes + 1)]
    ports = [(free_port(), free_port()) for _ in names]
    cluster_id = _cluster_id()
    services = []
    for node, name in enumerate(names, 1):
        data = root / "data" / name
        data.mkdir(parents=True, exist_ok=True)
        config = data / "server.properties"
        config.write_text(_server_properties(data, node, ports))
        if not (data / "logs" / "meta.properties").exists():  # a second make_services keeps the data it finds
            format_argv = _java_argv(
                [], "kafka.tools.StorageTool", "format", "--config", str(config), "--cluster-id", cluster_id
            )
            result = subprocess.run(format_argv, cwd=data, capture_output=True, text=True)
            if result.returncode != 0:
                raise RuntimeError(f"formatting Kafka's storage failed:\n{result.stdout}{result.stderr}")
        services.append(Service(
            name=name,
            argv=_java_argv(JVM_FLAGS if nodes == 1 else CLUSTER_JVM_FLAGS, "kafka.Kafka", str(config)),
            log_path=str(root / "logs" / f"{name}.log"),
            cwd=str(data),
            endpoints={"bootstrap": f"127.0.0.1:{ports[node - 1][0]}"},
        ))  # fmt: skip
    return services


def is_ready(service: Service) -> bool:
    """True once the broker answers a metadata request and lists itself."""
    admin = AdminClient({"bootstrap.servers": service.endpoints["bootstrap"], "log_level": 0})
    return len(admin.list_topics(timeout=2).brokers) > 0
