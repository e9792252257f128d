"""A single-node Apache Kafka (KRaft, broker and controller in one JVM) from Maven Central jars."""

from __future__ import annotations

import base64
import logging
import subprocess
import uuid
from pathlib import Path

from confluent_kafka.admin import (  # type: ignore[attr-defined]  # not in __all__
    AdminClient,
    ScramCredentialInfo,
    ScramMechanism,
    UserScramCredentialUpsertion,
)

from . import oidc
from .config import HACK_DIR, VERSIONS, component_dir
from .jvm import fetch_jars, java
from .process import Service, free_port
from .tls import make_certificates

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


# The secured listeners of a single-node stack, beside the plain one the other tests use: SASL_SSL with a
# SCRAM-SHA-512 login (SCRAM_USER, made at stack-up), SSL with a client certificate required (mutual TLS), and
# OAUTH (SASL_PLAINTEXT, OAUTHBEARER): tokens of the stack's token endpoint (oidc.py), checked with its JWKS.
SCRAM_USER = ("sluice", "sluice-scram-secret")
OAUTH_VALIDATOR = "org.apache.kafka.common.security.oauthbearer.OAuthBearerValidatorCallbackHandler"


def _secured_settings(tls: Path, sasl_port: int, mtls_port: int, oauth_port: int, jwks: str) -> dict[str, object]:
    listeners = f"SASL_SSL://127.0.0.1:{sasl_port},SSL://127.0.0.1:{mtls_port},OAUTH://127.0.0.1:{oauth_port}"
    return {
        "listeners": listeners,
        "advertised.listeners": listeners,
        "listener.security.protocol.map": "SASL_SSL:SASL_SSL,SSL:SSL,OAUTH:SASL_PLAINTEXT",
        "sasl.enabled.mechanisms": "SCRAM-SHA-512",
        "listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config":
            "org.apache.kafka.common.security.scram.ScramLoginModule required;",
        "listener.name.oauth.sasl.enabled.mechanisms": "OAUTHBEARER",
        "listener.name.oauth.oauthbearer.sasl.jaas.config":
            "org.apache.kafka.common.security.oauthbearer.OAuthBearerLoginModule required;",
        "listener.name.oauth.oauthbearer.sasl.server.callback.handler.class": OAUTH_VALIDATOR,
        "listener.name.oauth.oauthbearer.sasl.oauthbearer.jwks.endpoint.url": jwks,
        "sasl.oauthbearer.expected.audience": oidc.AUDIENCE,
        "listener.name.ssl.ssl.client.auth": "required",
        "ssl.keystore.type": "PEM",
        "ssl.keystore.location": tls / "server.pem",
        "ssl.truststore.type": "PEM",
        "ssl.truststore.location": tls / "ca.crt",
    }  # fmt: skip


def _server_properties(
    data: Path, node: int, ports: list[tuple[int, int]], secured: dict[str, object] | None = None
) -> str:
    """One node of `len(ports)` (broker and controller in one JVM each); `ports[i]`: node i+1's (broker,
    controller). Replicated three ways as production would be when there are three nodes. `secured`: the
    secured listeners' settings, added to the plain ones."""
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
    for key, value in (secured or {}).items():
        joined = key in ("listeners", "advertised.listeners", "listener.security.protocol.map")
        settings[key] = f"{settings[key]},{value}" if joined else value
    return "".join(f"{key}={value}\n" for key, value in settings.items())


def log_clients_to(path: Path) -> None:
    """Writes what librdkafka says through CLIENT_LOG to `path` (appended), and nowhere else."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    CLIENT_LOG.handlers[:] = [handler]
    CLIENT_LOG.setLevel(logging.INFO)
    CLIENT_LOG.propagate = False


def make_services(root: Path, nodes: int) -> list[Service]:
    """`nodes` Kafka nodes forming one cluster (`kafka`, or `kafka-1`...), configured and formatted under
    `root/data/<name>` (not started: they elect a controller once a majority runs). Their data survives restarts.
    A single node comes with its secured listeners and, first, the token endpoint of their OAUTHBEARER one."""
    names = ["kafka"] if nodes == 1 else [f"kafka-{n}" for n in range(1, nodes + 1)]
    ports = [(free_port(), free_port()) for _ in names]
    secured_ports = (free_port(), free_port(), free_port())
    token_service = oidc.make_service(root, free_port()) if nodes == 1 else None
    secured = None
    if token_service is not None:
        jwks = token_service.endpoints["jwks"]
        secured = _secured_settings(make_certificates(root / "tls"), *secured_ports, jwks)
    cluster_id = _cluster_id()
    services = []
    for node, name in enumerate(names, 1):
        data = root / "data" / name
        data.mkdir(parents=True, exist_ok=True)
        config = data / "server.properties"
        config.write_text(_server_properties(data, node, ports, secured))
        if not (data / "logs" / "meta.properties").exists():  # a second make_services keeps the data it finds
            format_argv = _java_argv(
                [], "kafka.tools.StorageTool", "format", "--config", str(config), "--cluster-id", cluster_id
            )
            result = subprocess.run(format_argv, cwd=data, capture_output=True, text=True)
            if result.returncode != 0:
                raise RuntimeError(f"formatting Kafka's storage failed:\n{result.stdout}{result.stderr}")
        flags = JVM_FLAGS if nodes == 1 else CLUSTER_JVM_FLAGS
        if token_service is not None:  # Kafka 4 fetches JWKS only from URLs it is told to allow
            flags = [*flags, f"-Dorg.apache.kafka.sasl.oauthbearer.allowed.urls={token_service.endpoints['jwks']}"]
        services.append(Service(
            name=name,
            argv=_java_argv(flags, "kafka.Kafka", str(config)),
            log_path=str(root / "logs" / f"{name}.log"),
            cwd=str(data),
            endpoints={
                "bootstrap": f"127.0.0.1:{ports[node - 1][0]}",
                **({"sasl_ssl": f"127.0.0.1:{secured_ports[0]}", "mtls": f"127.0.0.1:{secured_ports[1]}",
                    "oauth": f"127.0.0.1:{secured_ports[2]}", "tls_dir": str(root / "tls")} if secured else {}),
            },
        ))  # fmt: skip
    # The token endpoint first: the broker fetches its JWKS as it starts.
    return [token_service, *services] if token_service is not None else services


def is_ready(service: Service) -> bool:
    """True once the broker answers a metadata request and lists itself, and the SCRAM login of its secured
    listener exists (made here, through the plain listener: the broker keeps it in its metadata log)."""
    admin = AdminClient({"bootstrap.servers": service.endpoints["bootstrap"], "log_level": 0})
    if not admin.list_topics(timeout=2).brokers:
        return False
    if "sasl_ssl" in service.endpoints:
        user, password = SCRAM_USER
        info = ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, 8192)
        upsert = UserScramCredentialUpsertion(user, info, password.encode())
        for future in admin.alter_user_scram_credentials([upsert], request_timeout=10).values():
            future.result(timeout=15)
    return True
