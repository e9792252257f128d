"""Why a pipeline's workers are not ready, in their own words: a failing container's last message, or /readyz."""

from __future__ import annotations

import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from typing import Any

from .api import PIPELINE_LABEL, PODS
from .builders import HTTP_PORT, WORKER_CONTAINER
from .kube import Kube
from .status import Diagnosis

MESSAGE_CHARS = 600  # of a container's termination message: its last lines, where a traceback ends
# Why a container that does not run waits, when the reason is a failure rather than a start in progress.
FAILED_WAITING = frozenset({
    "CrashLoopBackOff", "CreateContainerConfigError", "CreateContainerError", "ErrImagePull", "ImagePullBackOff",
    "InvalidImageName", "RunContainerError",
})  # fmt: skip


def _ready(pod: Mapping[str, Any]) -> bool:
    conditions = pod.get("status", {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


def _last_words(message: str) -> str:
    text = " | ".join(line.strip() for line in message.strip().splitlines() if line.strip())
    return text if len(text) <= MESSAGE_CHARS else "..." + text[-MESSAGE_CHARS:]


def failure(pod: Mapping[str, Any]) -> str | None:
    """What is wrong with a pod whose worker container failed and is not running: it waits to be restarted
    (CrashLoopBackOff) or cannot be started (a bad image, a missing Secret), or it has just exited with an
    error. None while it runs (ready or not) or never failed."""
    statuses = pod.get("status", {}).get("containerStatuses") or []
    status = next((s for s in statuses if s.get("name") == WORKER_CONTAINER), None)
    state = (status or {}).get("state") or {}
    waiting, terminated = state.get("waiting") or {}, state.get("terminated") or {}
    if not (waiting.get("reason") in FAILED_WAITING or terminated.get("exitCode")):
        return None
    assert status is not None
    ended = terminated or (status.get("lastState") or {}).get("terminated") or {}
    parts = [waiting["reason"]] if waiting.get("reason") else []
    if ended.get("exitCode"):
        parts.append(f"exit code {ended['exitCode']}" + (f" ({ended['reason']})" if ended.get("reason") else ""))
    if status.get("restartCount"):
        parts.append(f"{status['restartCount']} restarts")
    said = ended.get("message") or waiting.get("message") or ""
    return ", ".join(parts) + (f": {_last_words(said)}" if said else "")


def ask(url: str, timeout: float) -> str | None:
    """What a worker's /readyz says when it is not ready (its body), or None if it is ready or does not answer."""
    try:
        with urllib.request.urlopen(url, timeout=timeout):
            return None
    except urllib.error.HTTPError as answer:
        return answer.read(500).decode(errors="replace").strip() or f"HTTP {answer.code}"
    except OSError:
        return None


def diagnose(pods: Sequence[Mapping[str, Any]], ask_readyz: bool, most: int = 3, timeout: float = 1.0) -> Diagnosis:
    """Up to `most` failing pods, and (if `ask_readyz`, and none fails) up to `most` running unready ones."""
    diagnosis = Diagnosis()
    for pod in pods:
        name = pod["metadata"]["name"]
        if _ready(pod) or pod["metadata"].get("deletionTimestamp"):
            continue
        if (wrong := failure(pod)) is not None and len(diagnosis.failing) < most:
            diagnosis.failing.append(f"{name}: {wrong}")
    if diagnosis.failing or not ask_readyz:
        return diagnosis
    for pod in pods:
        address = pod.get("status", {}).get("podIP")
        if _ready(pod) or not address or pod["metadata"].get("deletionTimestamp"):
            continue
        if (reason := ask(f"http://{address}:{HTTP_PORT}/readyz", timeout)) is not None:
            diagnosis.unready.append(f"{pod['metadata']['name']}: {reason}")
        if len(diagnosis.unready) == most:
            break
    return diagnosis


def pods_of(kube: Kube, namespace: str, pipeline: str) -> list[dict[str, Any]]:
    """The worker pods of a pipeline, by its label."""
    return kube.list(PODS, namespace, selector=f"{PIPELINE_LABEL}={pipeline}")
