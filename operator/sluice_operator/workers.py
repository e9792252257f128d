"""Why a pipeline's workers are not ready, in their own words: the body of each unready pod's /readyz."""

from __future__ import annotations

import urllib.error
import urllib.request
from collections.abc import Mapping
from typing import Any

from .api import PIPELINE_LABEL, PODS
from .builders import HTTP_PORT
from .kube import Kube


def _ready(pod: Mapping[str, Any]) -> bool:
    conditions = pod.get("status", {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


def ask(url: str, timeout: float) -> str | None:
    """What a worker's /readyz says when it is not ready (its body), or None if it is ready or does not answer."""
    try:
        with urllib.request.urlopen(url, timeout=timeout):
            return None
    except urllib.error.HTTPError as answer:
        return answer.read(500).decode(errors="replace").strip() or f"HTTP {answer.code}"
    except OSError:
        return None


def unready_reasons(kube: Kube, namespace: str, pipeline: str, most: int = 3, timeout: float = 1.0) -> list[str]:
    """`pod: reason` for up to `most` running pods of `pipeline` that are not ready, asking each one's /readyz."""
    pods = kube.list(PODS, namespace, selector=f"{PIPELINE_LABEL}={pipeline}")
    reasons: list[str] = []
    for pod in pods:
        address = pod.get("status", {}).get("podIP")
        if _ready(pod) or not address or pod["metadata"].get("deletionTimestamp"):
            continue
        if (reason := ask(f"http://{address}:{HTTP_PORT}/readyz", timeout)) is not None:
            reasons.append(f"{pod['metadata']['name']}: {reason}")
        if len(reasons) == most:
            break
    return reasons
