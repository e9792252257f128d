"""The Kubernetes API as the operator names it: resources, DataPipeline names, owners, times; no client here."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

from sluice_worker.model import API_VERSION, KIND, DataPipeline, parse_pipeline

GROUP: Final = "sluice.dev"
VERSION: Final = "v1alpha1"
PLURAL: Final = "datapipelines"
CRD_NAME: Final = f"{PLURAL}.{GROUP}"
FIELD_MANAGER: Final = "sluice-operator"  # server-side apply's field manager, and the children's managed-by label
MANAGED_BY: Final = "app.kubernetes.io/managed-by"
PIPELINE_LABEL: Final = "sluice.dev/pipeline"
# kopf's copy of the spec last handled, written by operators before 4fd1b48 (status.lastHandledSpec since): removed.
KOPF_DIFF_BASE: Final = "sluice.dev/last-handled-configuration"

Obj = dict[str, Any]
"""A Kubernetes object as JSON."""


@dataclass(frozen=True)
class Resource:
    """An API resource by group/version and plural: knows its URL paths."""

    group_version: str
    plural: str

    def path(self, namespace: str | None = None, name: str | None = None, subresource: str | None = None) -> str:
        base = f"/api/{self.group_version}" if "/" not in self.group_version else f"/apis/{self.group_version}"
        parts = [base, *(("namespaces", namespace) if namespace else ()), self.plural]
        parts += [p for p in (name, subresource) if p]
        return "/".join(parts)


PIPELINES: Final = Resource(f"{GROUP}/{VERSION}", PLURAL)
DEPLOYMENTS: Final = Resource("apps/v1", "deployments")
CONFIGMAPS: Final = Resource("v1", "configmaps")
EVENTS: Final = Resource("v1", "events")
LEASES: Final = Resource("coordination.k8s.io/v1", "leases")
PODS: Final = Resource("v1", "pods")
DISRUPTION_BUDGETS: Final = Resource("policy/v1", "poddisruptionbudgets")
CRDS: Final = Resource("apiextensions.k8s.io/v1", "customresourcedefinitions")
BY_KIND: Final = {
    "Deployment": DEPLOYMENTS, "ConfigMap": CONFIGMAPS, "PodDisruptionBudget": DISRUPTION_BUDGETS,
    "CustomResourceDefinition": CRDS,
}  # fmt: skip


def deployment_name(pipeline: str) -> str:
    """The worker Deployment of a pipeline."""
    return pipeline


def configmap_name(pipeline: str) -> str:
    """The ConfigMap holding a pipeline's pipeline.yaml."""
    return f"{pipeline}-pipeline"


def disruption_budget_name(pipeline: str) -> str:
    """The workers' PodDisruptionBudget, when the pipeline asks for one."""
    return pipeline


def secret_name(pipeline: str) -> str:
    """The optional Secret whose keys become the workers' environment (credentials' variables)."""
    return f"{pipeline}-credentials"


def validated(body: Mapping[str, Any]) -> DataPipeline:
    """The typed pipeline of a DataPipeline object from the API server. Raises PipelineError."""
    meta = body["metadata"]
    return parse_pipeline({
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": {"name": meta["name"], "namespace": meta["namespace"]},
        "spec": body.get("spec"),
    })  # fmt: skip


@dataclass(frozen=True)
class Owner:
    """The DataPipeline object the children belong to."""

    name: str
    namespace: str
    uid: str

    @classmethod
    def of(cls, body: Mapping[str, Any]) -> Owner:
        meta = body["metadata"]
        return cls(name=meta["name"], namespace=meta["namespace"], uid=meta["uid"])

    def reference(self) -> dict[str, Any]:
        """The controller ownerReference: its children are garbage-collected with it."""
        return {"apiVersion": API_VERSION, "kind": KIND, "name": self.name, "uid": self.uid, "controller": True}


def controller_of(obj: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The ownerReference with controller: true, if any."""
    refs = obj.get("metadata", {}).get("ownerReferences") or []
    return next((ref for ref in refs if ref.get("controller")), None)


def owning_pipeline(obj: Mapping[str, Any]) -> str | None:
    """The name of the DataPipeline controlling a child, if a DataPipeline does."""
    ref = controller_of(obj)
    if ref and ref.get("kind") == KIND and ref.get("apiVersion", "").split("/")[0] == GROUP:
        return str(ref["name"])
    return None


def rfc3339(moment: datetime, *, microseconds: bool = False) -> str:
    """A time as Kubernetes writes it: RFC 3339 in UTC with a Z (a Lease's MicroTime with `microseconds`)."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ" if microseconds else "%Y-%m-%dT%H:%M:%SZ")
