"""The API's names and shared helpers: resource paths, owners and their children, Kubernetes times."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from sluice_operator import api
from sluice_worker.model import PipelineError


def test_resource_paths() -> None:
    assert (
        api.PIPELINES.path("shop", "p", "status") == "/apis/sluice.dev/v1alpha1/namespaces/shop/datapipelines/p/status"
    )
    assert api.CONFIGMAPS.path("shop") == "/api/v1/namespaces/shop/configmaps"
    assert api.DEPLOYMENTS.path() == "/apis/apps/v1/deployments"


def test_the_owner_is_read_from_the_object_and_references_it_as_controller() -> None:
    body = {"metadata": {"name": "a", "namespace": "b", "uid": "c", "generation": 3}}
    owner = api.Owner.of(body)
    assert owner == api.Owner("a", "b", "c")
    child = {"metadata": {"ownerReferences": [{"kind": "ReplicaSet", "name": "x"}, owner.reference()]}}
    assert api.controller_of(child) == owner.reference()
    assert api.owning_pipeline(child) == "a"
    assert api.owning_pipeline({"metadata": {}}) is None


def test_validated_names_the_field_of_a_bad_spec() -> None:
    body = {"metadata": {"name": "p", "namespace": "shop"}, "spec": {"source": {}}}
    with pytest.raises(PipelineError, match=r"spec\.source\.bootstrapServers"):
        api.validated(body)


def test_times_are_written_as_kubernetes_writes_them() -> None:
    moment = datetime(2026, 1, 2, 4, 4, 5, 123456, tzinfo=timezone(timedelta(hours=1)))
    assert api.rfc3339(moment) == "2026-01-02T03:04:05Z"
    assert api.rfc3339(moment, microseconds=True) == "2026-01-02T03:04:05.123456Z"
    assert api.rfc3339(moment.astimezone(UTC)) == "2026-01-02T03:04:05Z"
