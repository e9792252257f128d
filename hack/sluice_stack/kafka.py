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
NODE_ID = 1

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


def _server_properties(data: Path, broker_port: int, controller_port: int) -> str:
    settings = {
        "process.roles": "broker,controller",
        "node.id": NODE_ID,
        # A static voter set: the controller's address is not written into the metadata log, so the
        # same data directory can be started again on other ports.
        "controller.quorum.voters": f"{NODE_ID}@127.0.0.1:{controller_port}",
        "listeners": f"PLAINTEXT://127.0.0.1:{broker_port},CONTROLLER://127.0.0.1:{controller_port}",
        "advertised.listeners": f"PLAINTEXT://127.0.0.1:{broker_port}",
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "PLAINTEXT",
        "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
        "log.dirs": data / "logs",
        "num.partitions": 1,
        "auto.create.topics.enable": "true",
        "default.replication.factor": 1,
        "min.insync.replicas": 1,
        # One replica and one partition for the internal topics, so that they are created at once.
        "offsets.topic.replication.factor": 1,
        "offsets.topic.num.partitions": 1,
        "transaction.state.log.replication.factor": 1,
        "transaction.state.log.min.isr": 1,
        "transaction.state.log.num.partitions": 1,
        "share.coordinator.state.topic.replication.factor": 1,
        "share.coordinator.state.topic.min.isr": 1,
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
    """Kafka configured and formatted under `root/data/kafka` (not started); its data survives restarts."""
    data = root / "data" / "kafka"
    data.mkdir(parents=True, exist_ok=True)
    broker_port, controller_port = free_port(), free_port()
    config = data / "server.properties"
    config.write_text(_server_properties(data, broker_port, controller_port))

    if not (data / "logs" / "meta.properties").exists():  # a second make_service keeps the data it finds
        format_argv = _java_argv(
            [], "kafka.tools.StorageTool", "format", "--config", str(config), "--cluster-id", _cluster_id()
        )
        result = subprocess.run(format_argv, cwd=data, capture_output=True, text=True)
        if result.returncode != 0:
            raise RuntimeError(f"formatting Kafka's storage failed:\n{result.stdout}{result.stderr}")

    return Service(
        name="kafka",
        argv=_java_argv(JVM_FLAGS, "kafka.Kafka", str(config)),
        log_path=str(root / "logs" / "kafka.log"),
        cwd=str(data),
        endpoints={"bootstrap": f"127.0.0.1:{broker_port}"},
    )


def is_ready(service: Service) -> bool:
    """True once the broker answers a metadata request and lists itself."""
    admin = AdminClient({"bootstrap.servers": service.endpoints["bootstrap"], "log_level": 0})
    return len(admin.list_topics(timeout=2).brokers) > 0
