"""The kind suite's view of its cluster (hack/sluice_stack/kind.py) and whether any container can run here."""

from __future__ import annotations

import subprocess

from sluice_stack.config import VERSIONS
from sluice_stack.kind import MANIFESTS, NODE_IMAGE

from ..images.docker import REPO


def containers_unavailable() -> str | None:
    """Why no container can run on this machine (no Docker engine can be had), or None."""
    engine = subprocess.run(["bash", str(REPO / "hack" / "ensure-docker.sh")], capture_output=True, text=True,
                            timeout=600)  # fmt: skip
    if engine.returncode != 0:
        return f"no container can run here: no Docker engine ({engine.stderr.strip()[-300:]})"
    return None


def pinned_versions() -> dict[str, str]:
    return {"kafka": VERSIONS["KAFKA_VERSION"], "cassandra": VERSIONS["CASSANDRA_VERSION"]}


__all__ = ["MANIFESTS", "NODE_IMAGE", "containers_unavailable", "pinned_versions"]
