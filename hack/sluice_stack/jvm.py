"""What the JVM servers share: their jars fetched once from Maven Central, and the JDK that runs them."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from .config import cache_lock, component_dir


def fetch_jars(name: str, pom: Path, *properties: str) -> Path:
    """Runs `mvn dependency:copy-dependencies` on `pom` once, under the cache lock of `name`.

    `properties` (`-Dkey=value`) give the pom its version and output folder, `component_dir(name)/lib`;
    returns `component_dir(name)`.
    """
    home = component_dir(name)
    with cache_lock(name):
        if (home / ".done").exists():
            return home
        lib = home / "lib"
        shutil.rmtree(lib, ignore_errors=True)  # what an interrupted earlier attempt left behind
        lib.mkdir(parents=True)
        mvn = subprocess.run(
            ["mvn", "--batch-mode", "--quiet", "-f", str(pom), *properties, "dependency:copy-dependencies"],
            capture_output=True,  # even quiet, Maven 3.8 prints colour codes: shown only when it fails
            text=True,
        )
        if mvn.returncode != 0:
            raise RuntimeError(f"mvn could not fetch {name}'s jars into {lib}:\n{mvn.stdout}{mvn.stderr}")
        (home / ".done").touch()
    return home


def java() -> str:
    """The JDK 17 `java`: $JAVA_HOME's if set, else the one on PATH."""
    java_home = os.environ.get("JAVA_HOME")
    found = str(Path(java_home) / "bin" / "java") if java_home else shutil.which("java")
    if not found:
        raise FileNotFoundError("no java on PATH and JAVA_HOME is not set; Kafka and Cassandra need JDK 17")
    return found
