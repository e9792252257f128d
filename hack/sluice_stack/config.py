"""Pinned versions (from hack/versions.env) and the build cache outside the repository."""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

HACK_DIR = Path(__file__).resolve().parent.parent
REPO_DIR = HACK_DIR.parent
CACHE = Path(os.environ.get("SLUICE_CACHE", Path.home() / ".cache" / "sluice"))


def _read_versions() -> dict[str, str]:
    versions = {}
    for line in (HACK_DIR / "versions.env").read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            versions[key] = value
    return versions


VERSIONS = _read_versions()


def component_dir(name: str) -> Path:
    """`~/.cache/sluice/<name>-<version>`, e.g. component_dir("kafka")."""
    return CACHE / f"{name}-{VERSIONS[name.upper() + '_VERSION']}"


@contextlib.contextmanager
def cache_lock(name: str) -> Iterator[None]:
    """Holds `~/.cache/sluice/<name>.lock` so that two runs never provision the same thing at once."""
    CACHE.mkdir(parents=True, exist_ok=True)
    with open(CACHE / f"{name}.lock", "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)
