"""A schema registry speaking the Confluent protocol: Apicurio Registry 3 (its ccompat API) from Maven Central,
in memory, on loopback. Only the Avro tests use it (group `registry`)."""

from __future__ import annotations

import urllib.request
from pathlib import Path

from .config import HACK_DIR, VERSIONS, component_dir
from .jvm import fetch_jars, java_at_least
from .process import Service, free_port

POM = HACK_DIR / "registry" / "pom.xml"
NAME = "registry"
# The Confluent-compatible API's root: what a client's `url` is (the bare port answers 404 to it).
CCOMPAT = "/apis/ccompat/v7"
# Apicurio 3's classes are Java 21 bytecode. Storage is its default: SQL on an in-memory H2 database.
JAVA_RELEASE = 21
JVM_FLAGS = ["-Xms64m", "-Xmx256m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1", "-Djava.awt.headless=true"]


def provision() -> Path:
    """Unpacks the registry into `~/.cache/sluice/apicurio-<version>/app` once; returns that folder."""
    app = component_dir("apicurio") / "app"
    fetch_jars("apicurio", POM, f"-Dapicurio.version={VERSIONS['APICURIO_VERSION']}", f"-DoutputDirectory={app}",
               goal="dependency:unpack", into="app")  # fmt: skip
    return app


def make_service(root: Path) -> Service:
    """The registry on two free loopback ports (its API, and Quarkus' management port: health), not started."""
    port, management = free_port(), free_port()
    data = root / "data" / NAME
    data.mkdir(parents=True, exist_ok=True)
    argv = [
        java_at_least(JAVA_RELEASE), *JVM_FLAGS,
        "-Dquarkus.http.host=127.0.0.1", f"-Dquarkus.http.port={port}",
        # Quarkus binds its management interface to 0.0.0.0 unless told otherwise.
        "-Dquarkus.management.host=127.0.0.1", f"-Dquarkus.management.port={management}",
        "-jar", str(component_dir("apicurio") / "app" / "quarkus-run.jar"),
    ]  # fmt: skip
    return Service(
        name=NAME,
        argv=argv,
        log_path=str(root / "logs" / f"{NAME}.log"),
        cwd=str(data),
        endpoints={"url": f"http://127.0.0.1:{port}{CCOMPAT}"},
    )


def is_ready(service: Service) -> bool:
    """True once the ccompat API lists its subjects."""
    with urllib.request.urlopen(f"{service.endpoints['url']}/subjects", timeout=2) as answer:
        return bool(answer.status == 200)
