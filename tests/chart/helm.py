"""Running `helm` and `kubectl` (the pinned builds in ~/.cache/sluice) and reading what they print."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import yaml
from sluice_stack.kube import tool_dirs

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "sluice"
VALUES = Path(__file__).resolve().parent / "values"

Manifest = dict[str, Any]


def tools_env(env: dict[str, str] | None = None) -> dict[str, str]:
    """`env` (default: this process's) with the pinned kubectl and helm first on PATH."""
    env = dict(env or os.environ)
    env["PATH"] = os.pathsep.join([*map(str, tool_dirs()), env.get("PATH", "")])
    return env


def run(*argv: str, env: dict[str, str] | None = None, stdin: str | None = None) -> str:
    done = subprocess.run(argv, env=tools_env(env), input=stdin, capture_output=True, text=True, timeout=300)
    if done.returncode != 0:
        raise AssertionError(f"{' '.join(argv)} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    return done.stdout


def render(release: str, namespace: str, *args: str) -> list[Manifest]:
    """`helm template` of the chart: its manifests, CRDs left out."""
    out = run("helm", "template", release, str(CHART), "--namespace", namespace, *args)
    return [doc for doc in yaml.safe_load_all(out) if doc]


def find(manifests: list[Manifest], kind: str, name: str | None = None) -> list[Manifest]:
    return [m for m in manifests if m["kind"] == kind and (name is None or m["metadata"]["name"] == name)]


def one(manifests: list[Manifest], kind: str, name: str | None = None) -> Manifest:
    found = find(manifests, kind, name)
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


def env_of(container: Manifest) -> dict[str, str]:
    """A container's literal environment variables."""
    return {e["name"]: e["value"] for e in container.get("env", []) if "value" in e}
