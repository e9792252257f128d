"""What the JVM servers share: their jars fetched once from Maven Central, and the JDKs that run them."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from .config import cache_lock, component_dir


def fetch_jars(name: str, pom: Path, *properties: str, goal: str = "dependency:copy-dependencies",
               into: str = "lib") -> Path:  # fmt: skip
    """Runs `mvn <goal>` (copy-dependencies, or unpack) on `pom` once, under the cache lock of `name`.

    `properties` (`-Dkey=value`) give the pom its version and output folder, `component_dir(name)/<into>`;
    returns `component_dir(name)`.
    """
    home = component_dir(name)
    with cache_lock(name):
        if (home / ".done").exists():
            return home
        target = home / into
        shutil.rmtree(target, ignore_errors=True)  # what an interrupted earlier attempt left behind
        target.mkdir(parents=True)
        mvn = subprocess.run(
            ["mvn", "--batch-mode", "--quiet", "-f", str(pom), *properties, goal],
            capture_output=True,  # even quiet, Maven 3.8 prints colour codes: shown only when it fails
            text=True,
        )
        if mvn.returncode != 0:
            raise RuntimeError(f"mvn could not fetch {name} into {target}:\n{mvn.stdout}{mvn.stderr}")
        (home / ".done").touch()
    return home


def java() -> str:
    """The JDK 17 `java`: $JAVA_HOME's if set, else the one on PATH."""
    java_home = os.environ.get("JAVA_HOME")
    found = str(Path(java_home) / "bin" / "java") if java_home else shutil.which("java")
    if not found:
        raise FileNotFoundError("no java on PATH and JAVA_HOME is not set; Kafka and Cassandra need JDK 17")
    return found


def java_at_least(major: int) -> str:
    """A `java` of release `major` or later: $JAVA_HOME's or PATH's if new enough, else the newest JDK under
    /usr/lib/jvm (this machine's base image has Temurin 25 beside OpenJDK 17)."""
    candidates = [Path(java()).resolve().parent.parent] if shutil.which("java") or os.environ.get("JAVA_HOME") else []
    candidates += sorted(Path("/usr/lib/jvm").glob("*/"), reverse=True) if Path("/usr/lib/jvm").is_dir() else []
    found = {home: _release(home) for home in candidates}
    newest = max(found, key=lambda home: found[home], default=None)
    if newest is None or found[newest] < major:
        seen = ", ".join(f"{home} ({release})" for home, release in found.items()) or "none"
        raise FileNotFoundError(f"no JDK {major} or later (found: {seen}); install one, e.g. openjdk-{major}-jdk")
    return str(newest / "bin" / "java")


def _release(home: Path) -> int:
    """The major release of the JDK at `home`, from its `release` file (0 when it has none)."""
    try:
        for line in (home / "release").read_text().splitlines():
            if line.startswith("JAVA_VERSION="):
                return int(line.split("=", 1)[1].strip('"').split(".")[0])
    except (OSError, ValueError):
        pass
    return 0
