"""Pure builders: a typed DataPipeline in, its children out (ConfigMap, worker Deployment, hash, worker count)."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

import yaml
from sluice_worker.credentials import CREDENTIALS_DIR, secret_items
from sluice_worker.model import DataPipeline

from .api import (
    FIELD_MANAGER,
    MANAGED_BY,
    PIPELINE_LABEL,
    Owner,
    configmap_name,
    deployment_name,
    disruption_budget_name,
    secret_name,
)

CONFIG_DIR: Final = "/etc/sluice"
CONFIG_FILE: Final = "pipeline.yaml"
HTTP_PORT: Final = 8080
WORKER_CONTAINER: Final = "worker"
WORKER_UID: Final = 10001  # the uid and gid of the `sluice` user in Dockerfile.worker
CONFIG_HASH: Final = "sluice.dev/config-hash"
CREDENTIALS_VERSION: Final = "sluice.dev/credentials-version"  # changes with the Secrets: a rotation rolls pods
WORKER: Final = "sluice-worker"
# libyaml's emitter writes the same YAML as PyYAML's own, five times faster (the worker config is built on every
# reconcile); PyYAML's own where the wheel has no libyaml.
SAFE_DUMPER: Final = getattr(yaml, "CSafeDumper", yaml.SafeDumper)

# Spec fields that shape the Deployment rather than the worker's config: changing them must not change the
# config hash (scaling would otherwise restart every pod).
DEPLOYMENT_FIELDS: Final = frozenset(
    {"replicas", "paused", "image", "resources", "autoscaling", "template", "disruption_budget"}
)

Manifest = dict[str, Any]


@dataclass(frozen=True)
class Children:
    """What one DataPipeline runs as: its ConfigMap and Deployment, the hash of the config, the worker count."""

    configmap: Manifest
    deployment: Manifest
    config_hash: str
    workers: int
    disruption_budget: Manifest | None = None  # None: the pipeline has none (and must not keep an old one)

    def by_kind(self) -> dict[str, Manifest]:
        """What to apply, in order: the ConfigMap first (the pods mount it)."""
        made = {"ConfigMap": self.configmap, "Deployment": self.deployment}
        return made | ({"PodDisruptionBudget": self.disruption_budget} if self.disruption_budget else {})


def build_children(
    owner: Owner,
    pipeline: DataPipeline,
    status: Mapping[str, Any],
    *,
    default_image: str,
    progress_deadline_seconds: int,
    credentials_version: str | None = None,
) -> Children:
    """The children of a pipeline whose last status is `status` (where the autoscaler keeps its decision);
    `credentials_version` versions the Secrets it mounts (see credentials.resolve)."""
    config = worker_config(pipeline)
    digest = config_hash(config)
    count = workers(pipeline, status)
    deployment = _deployment(owner, pipeline, default_image, digest, progress_deadline_seconds, count)
    if credentials_version is not None:
        deployment["spec"]["template"]["metadata"]["annotations"][CREDENTIALS_VERSION] = credentials_version
    return Children(
        configmap=_configmap(owner, config),
        deployment=deployment,
        config_hash=digest,
        workers=count,
        disruption_budget=_disruption_budget(owner, pipeline),
    )


def selector_labels(pipeline: str) -> dict[str, str]:
    """The labels that select a pipeline's worker pods."""
    return {"app.kubernetes.io/name": WORKER, PIPELINE_LABEL: pipeline}


def labels(pipeline: str) -> dict[str, str]:
    """The labels of every object the operator makes for a pipeline."""
    return {
        **selector_labels(pipeline),
        "app.kubernetes.io/instance": pipeline,
        "app.kubernetes.io/component": "worker",
        MANAGED_BY: FIELD_MANAGER,
    }


def selector(pipeline: str) -> str:
    """The pods' label selector as a string, for `status.selector` and the scale subresource."""
    return ",".join(f"{key}={value}" for key, value in sorted(selector_labels(pipeline).items()))


def worker_config(pipeline: DataPipeline) -> str:
    """The pipeline.yaml the worker loads: the validated manifest with defaults, minus the Deployment's fields."""
    manifest = pipeline.model_dump(
        mode="json", by_alias=True, exclude_none=True, exclude={"spec": set(DEPLOYMENT_FIELDS)}
    )
    manifest["metadata"] = {"name": pipeline.metadata.name, "namespace": pipeline.metadata.namespace}
    return yaml.dump(manifest, Dumper=SAFE_DUMPER, sort_keys=False)


def config_hash(config: str) -> str:
    """A short digest of the worker config; in the pod template, so that a new config rolls the pods."""
    return hashlib.sha256(config.encode()).hexdigest()[:16]


def workers(pipeline: DataPipeline, status: Mapping[str, Any]) -> int:
    """The worker pods to run, the one answer to it: none while paused; while autoscaling, the autoscaler's
    last decision (status.desiredReplicas; spec.replicas only mirrors it for kubectl); else spec.replicas."""
    spec = pipeline.spec
    autoscaled = status.get("desiredReplicas")
    if spec.paused:
        return 0
    if spec.autoscaling.enabled and autoscaled is not None:
        return int(autoscaled)
    return spec.replicas


def _metadata(owner: Owner, name: str) -> dict[str, Any]:
    return {
        "name": name,
        "namespace": owner.namespace,
        "labels": labels(owner.name),
        "ownerReferences": [owner.reference()],
    }


def _configmap(owner: Owner, config: str) -> Manifest:
    """The ConfigMap holding the worker's pipeline.yaml."""
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": _metadata(owner, configmap_name(owner.name)),
        "data": {CONFIG_FILE: config},
    }


def _probe(path: str, period: int, failures: int, delay: int = 0) -> dict[str, Any]:
    probe: dict[str, Any] = {"httpGet": {"path": path, "port": "http"}, "periodSeconds": period}
    probe.update(failureThreshold=failures, timeoutSeconds=2)
    if delay:
        probe["initialDelaySeconds"] = delay
    return probe


def _container(owner: Owner, pipeline: DataPipeline, default_image: str) -> dict[str, Any]:
    spec = pipeline.spec
    container: dict[str, Any] = {
        "name": WORKER_CONTAINER,
        "image": spec.image or default_image,
        # Only args: the image's entrypoint (tini -- sluice-worker) stays PID 1 and forwards SIGTERM.
        "args": ["--pipeline", f"{CONFIG_DIR}/{CONFIG_FILE}"],
        "ports": [{"name": "http", "containerPort": HTTP_PORT, "protocol": "TCP"}],
        "env": [
            {"name": "SLUICE_POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            {"name": "SLUICE_HTTP_PORT", "value": str(HTTP_PORT)},
        ],
        "envFrom": [{"secretRef": {"name": secret_name(owner.name), "optional": True}}],
        "readinessProbe": _probe("/readyz", period=5, failures=3),
        "livenessProbe": _probe("/healthz", period=10, failures=6, delay=10),
        "volumeMounts": [
            {"name": "pipeline", "mountPath": CONFIG_DIR, "readOnly": True},
            {"name": "tmp", "mountPath": "/tmp"},  # the image writes nothing else: HOME and WORKDIR are /tmp
            *(
                [{"name": "credentials", "mountPath": str(CREDENTIALS_DIR), "readOnly": True}]
                if secret_items(spec)
                else []
            ),
        ],
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]},
            "readOnlyRootFilesystem": True,
        },
        # What a failed worker said last (its own message, else its last log lines) lands in the pod's status,
        # where the operator reads it for the DataPipeline's conditions.
        "terminationMessagePolicy": "FallbackToLogsOnError",
    }
    resources = {kind: dict(values) for kind, values in spec.resources.model_dump().items() if values}
    if resources:
        container["resources"] = resources
    return container


def _deployment(
    owner: Owner,
    pipeline: DataPipeline,
    default_image: str,
    config_hash: str,
    progress_deadline_seconds: int,
    count: int,
) -> Manifest:
    """The worker Deployment of `count` pods; everything else as the spec says."""
    spec = pipeline.spec
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _metadata(owner, deployment_name(owner.name)),
        "spec": {
            "replicas": count,
            "selector": {"matchLabels": selector_labels(owner.name)},
            "progressDeadlineSeconds": progress_deadline_seconds,
            "revisionHistoryLimit": 3,
            "template": {
                "metadata": {
                    "labels": {**spec.template.labels, **labels(owner.name)},
                    "annotations": {  # the user's may turn off scraping, never the config hash
                        "prometheus.io/scrape": "true",
                        "prometheus.io/port": str(HTTP_PORT),
                        "prometheus.io/path": "/metrics",
                        **spec.template.annotations,
                        CONFIG_HASH: config_hash,
                    },
                },
                "spec": {
                    "terminationGracePeriodSeconds": spec.termination_grace_period_seconds,
                    "automountServiceAccountToken": False,  # the worker never talks to the API server
                    "enableServiceLinks": False,
                    # The Pod Security Standards' `restricted` profile, as the image's own user (uid and gid).
                    "securityContext": {
                        "runAsNonRoot": True,
                        "runAsUser": WORKER_UID,
                        "runAsGroup": WORKER_UID,
                        "fsGroup": WORKER_UID,
                        "seccompProfile": {"type": "RuntimeDefault"},
                    },
                    "containers": [_container(owner, pipeline, default_image)],
                    "volumes": [
                        {"name": "pipeline", "configMap": {"name": configmap_name(owner.name)}},
                        {"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}},
                        *_credentials_volume(pipeline),
                    ],
                    **_placement(pipeline),
                },
            },
        },
    }


def _credentials_volume(pipeline: DataPipeline) -> list[dict[str, Any]]:
    """The Secret keys of spec.source/sink tls and auth as files `<side>/<file>` (see sluice_worker.credentials),
    readable by the worker's group only; none when the spec names no Secret."""
    by_secret: dict[str, list[dict[str, str]]] = {}
    for item in secret_items(pipeline.spec):
        by_secret.setdefault(item.secret, []).append({"key": item.key, "path": item.path})
    if not by_secret:
        return []
    sources = [{"secret": {"name": name, "items": items}} for name, items in by_secret.items()]
    return [{"name": "credentials", "projected": {"sources": sources, "defaultMode": 0o440}}]


def _disruption_budget(owner: Owner, pipeline: DataPipeline) -> Manifest | None:
    """The workers' PodDisruptionBudget, if the spec asks for one."""
    budget = pipeline.spec.disruption_budget
    if budget is None:
        return None
    bound = {"maxUnavailable": budget.max_unavailable} if budget.max_unavailable is not None else {}
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": _metadata(owner, disruption_budget_name(owner.name)),
        "spec": {
            "selector": {"matchLabels": selector_labels(owner.name)},
            **(bound or {"minAvailable": budget.min_available}),
        },
    }


def _placement(pipeline: DataPipeline) -> dict[str, Any]:
    """The pod spec fields of `spec.template` that are set: scheduling, account and pull secrets."""
    template = pipeline.spec.template
    fields: dict[str, Any] = {
        "nodeSelector": template.node_selector,
        "affinity": template.affinity,
        "tolerations": template.tolerations,
        "topologySpreadConstraints": template.topology_spread_constraints,
        "priorityClassName": template.priority_class_name,
        "serviceAccountName": template.service_account_name,
        "imagePullSecrets": [{"name": name} for name in template.image_pull_secrets],
    }
    return {key: value for key, value in fields.items() if value}


# What a hand edit is reported by, per kind: fields a user would notice (the apply restores every field it owns).
DRIFT_FIELDS: Final[dict[str, dict[str, tuple[str | int, ...]]]] = {
    "Deployment": {
        "spec.replicas": ("spec", "replicas"),
        "image": ("spec", "template", "spec", "containers", 0, "image"),
        "terminationGracePeriodSeconds": ("spec", "template", "spec", "terminationGracePeriodSeconds"),
        "config hash": ("spec", "template", "metadata", "annotations", CONFIG_HASH),
    },
    "ConfigMap": {CONFIG_FILE: ("data", CONFIG_FILE)},
}


def _get(obj: Any, path: Sequence[str | int]) -> Any:
    for key in path:
        if isinstance(key, int):
            obj = obj[key] if isinstance(obj, list) and len(obj) > key else None
        else:
            obj = obj.get(key) if isinstance(obj, Mapping) else None
    return obj


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else f"{text[:37]}..."


def drift(desired: Manifest, live: Mapping[str, Any] | None) -> list[str]:
    """How a live child differs from what the operator applies, in words ([] when it does not)."""
    if live is None:
        return ["deleted"]
    changes = []
    for label, path in DRIFT_FIELDS.get(desired["kind"], {}).items():
        want, have = _get(desired, path), _get(live, path)
        if want != have:
            changes.append(f"{label} {_short(have)} -> {_short(want)}")
    return changes
