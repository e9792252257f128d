"""The operator process: killed mid-reconcile, two replicas behind one Lease, its liveness endpoint."""

from __future__ import annotations

import asyncio
import signal
import uuid
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import pytest
from operator_harness import (
    OPERATOR_NAMESPACE,
    Kubectl,
    Operator,
    condition,
    events,
    pipeline,
    sample,
    wait_for,
)
from sluice_operator import cli
from sluice_operator.api import CONFIGMAPS, DEPLOYMENTS, LEASES, PIPELINES
from sluice_operator.handlers import Handlers
from sluice_operator.kube import Kube
from sluice_operator.leader import LeaderElector
from sluice_operator.reconcile import Observed, Reconciler
from sluice_operator.settings import OperatorSettings

pytestmark = pytest.mark.kube

NAME = "gophers-r-us"


def ready(admin: Kube, namespace: str) -> bool:
    obj = pipeline(admin, namespace)
    current = obj.get("status", {}).get("observedGeneration") == obj["metadata"]["generation"]
    return bool(current and condition(obj, "Ready").get("status") == "True")


def lease_holder(admin: Kube) -> str | None:
    lease = admin.get(LEASES, OPERATOR_NAMESPACE, "sluice-operator")
    return None if lease is None else lease["spec"].get("holderIdentity")


@pytest.fixture
def restored(operator: Operator) -> Iterator[Operator]:
    """The session's operator, running again (and leading) after a test that stops it."""
    yield operator
    if operator.process is None:
        operator.start()
    wait_for(operator.leading, 60, "the session operator to lead again")


def test_killed_mid_reconcile_the_operator_converges_after_a_restart(
    restored: Operator, kubectl: Kubectl, admin: Kube, namespace: str
) -> None:
    operator = restored
    for round_ in range(2):  # kill once as the ConfigMap appears, once as the Deployment does
        operator.stop(signal.SIGKILL)
        kubectl.apply(sample(namespace, replicas=2 + round_))
        operator.start()
        child, child_name = (CONFIGMAPS, f"{NAME}-pipeline") if round_ == 0 else (DEPLOYMENTS, NAME)
        wait_for(partial(admin.get, child, namespace, child_name), what=f"the {child.plural} to appear")
        operator.stop(signal.SIGKILL)
        operator.start()
        wait_for(lambda: ready(admin, namespace), 60, "Ready=True after the restart")

    deployments = admin.list(DEPLOYMENTS, namespace)
    assert [d["metadata"]["name"] for d in deployments] == [NAME]
    assert deployments[0]["spec"]["replicas"] == 3
    assert len(admin.list(CONFIGMAPS, namespace)) == 2  # the pipeline's and kube-root-ca.crt


def handled_replicas(admin: Kube, namespace: str) -> int | None:
    """spec.replicas as the operator last recorded it handled (status.lastHandledSpec, written with the status of
    the reconcile that handled it)."""
    handled = pipeline(admin, namespace).get("status", {}).get("lastHandledSpec")
    return None if handled is None else handled.get("replicas")


def test_a_scale_made_while_the_operator_was_down_is_told_once(
    restored: Operator, kubectl: Kubectl, admin: Kube, namespace: str
) -> None:
    kubectl.apply(sample(namespace, replicas=1))
    wait_for(lambda: ready(admin, namespace), 60, "Ready=True")
    restored.stop()
    kubectl.run("scale", "-n", namespace, f"datapipeline/{NAME}", "--replicas=3")
    restored.start()
    wait_for(lambda: handled_replicas(admin, namespace) == 3, 60, "the scale to be recorded as handled")
    # The events of a reconcile are posted after its status is written.
    scaled = wait_for(lambda: events(admin, namespace, "Scaled"), 30, "the Scaled event")
    assert [e["message"] for e in scaled] == ["Scaled from 1 to 3 workers"]
    assert admin.get(DEPLOYMENTS, namespace, NAME)["spec"]["replicas"] == 3  # type: ignore[index]


def test_a_creation_the_operator_died_before_recording_is_still_told(
    restored: Operator, kubectl: Kubectl, admin: Kube, namespace: str
) -> None:
    restored.stop()
    kubectl.apply(sample(namespace, replicas=2))
    # What an operator killed right after applying the children does: ConfigMap and Deployment exist, while
    # neither the status that records the reconcile nor the Created event does.
    Reconciler(admin, OperatorSettings()).reconcile(namespace, NAME)
    admin.merge_patch(PIPELINES, namespace, NAME, {"status": None}, "status")
    assert admin.get(DEPLOYMENTS, namespace, NAME) is not None and not events(admin, namespace, "Created")
    assert "status" not in pipeline(admin, namespace)
    restored.start()
    wait_for(lambda: handled_replicas(admin, namespace) == 2, 60, "the creation to be recorded as handled")
    created = wait_for(lambda: events(admin, namespace, "Created"), 30, "the Created event")  # posted after the status
    assert [e["message"] for e in created] == [
        f"Created Deployment {NAME} with 2 workers and ConfigMap {NAME}-pipeline"
    ]


def test_the_copy_of_the_spec_an_operator_before_the_key_queue_kept_is_removed_after_an_upgrade(
    restored: Operator, kubectl: Kubectl, admin: Kube, namespace: str
) -> None:
    restored.stop()
    manifest = sample(namespace, replicas=1)
    manifest["metadata"]["annotations"] = {
        "sluice.dev/last-handled-configuration": '{"spec": {"replicas": 1}}',  # what kopf's diff-base storage wrote
        "team": "gophers",
    }
    kubectl.apply(manifest)
    restored.start()
    wait_for(lambda: ready(admin, namespace), 60, "Ready=True")
    wait_for(
        lambda: "sluice.dev/last-handled-configuration" not in pipeline(admin, namespace)["metadata"]["annotations"],
        30,
        "kopf's copy of the spec to be removed",
    )
    assert pipeline(admin, namespace)["metadata"]["annotations"].get("team") == "gophers"  # the others stay


def test_a_pipeline_deleted_while_its_watch_looked_away_gets_no_children_again(
    restored: Operator, kubectl: Kubectl, admin: Kube, namespace: str
) -> None:
    """A reconciler keeps each pipeline as its watch last showed it; one whose deletion the watch missed must not
    make its children again when the garbage collector deletes them (and again, and again)."""
    restored.stop()
    kubectl.apply(sample(namespace))
    reconciler = Reconciler(admin, OperatorSettings())
    shown = pipeline(admin, namespace)
    reconciler.pipelines.put(shown)  # what its watch showed
    reconciler.reconcile(namespace, NAME, shown=shown)
    assert admin.get(DEPLOYMENTS, namespace, NAME) is not None
    kubectl.run("delete", "-n", namespace, f"datapipeline/{NAME}")  # the reconciler is not told
    wait_for(lambda: admin.get(DEPLOYMENTS, namespace, NAME) is None, 60, "the garbage collector")
    outcome = reconciler.reconcile(namespace, NAME, Observed("Deployment", None))  # the child's DELETED event
    assert outcome.body is None and reconciler.pipelines.get((namespace, NAME)) is None
    assert admin.get(DEPLOYMENTS, namespace, NAME) is None


def test_the_resync_lists_a_page_at_a_time_and_reconciles_what_the_watches_missed(
    restored: Operator, kubectl: Kubectl, admin: Kube, namespace: str
) -> None:
    restored.stop()
    names = ["a", "b", "c"]
    for name in names:
        kubectl.apply(sample(namespace, name=name))  # no watch sees them
    reconciler = Reconciler(admin, OperatorSettings())
    handlers = Handlers(reconciler, retry_delay=1.0)
    gone = {"metadata": {"name": "gone", "namespace": namespace, "uid": "u", "resourceVersion": "1", "generation": 1}}
    reconciler.pipelines.put({**gone, "spec": {}})  # remembered, and deleted while the watch looked away

    def made() -> bool:
        return all(admin.get(DEPLOYMENTS, namespace, name) for name in names)

    def forgotten() -> bool:
        return reconciler.pipelines.get((namespace, "gone")) is None

    async def scenario() -> None:
        tasks = [asyncio.create_task(handlers.run()), asyncio.create_task(cli.resync(handlers, [namespace], 0.2, 1))]
        try:
            await asyncio.to_thread(wait_for, made, 60, "a Deployment for every pipeline listed")
            await asyncio.to_thread(wait_for, forgotten, 30, "the pipeline not listed to be read and forgotten")
        finally:
            for task in tasks:
                task.cancel()

    asyncio.run(scenario())  # one page a pipeline: the listing followed its continue tokens
    assert sorted(reconciler.pipelines.keys()) == [(namespace, name) for name in names]


def test_a_second_replica_stands_by_until_the_leader_goes(
    restored: Operator, kubectl: Kubectl, admin: Kube, namespace: str, tmp_path: Path
) -> None:
    leader = restored
    standby = Operator(leader.env, tmp_path / "standby.log", identity="operator-b").start()
    try:
        wait_for(lambda: "held by operator-a" in standby.since_start(), what="the standby to see the leader")
        kubectl.apply(sample(namespace))
        wait_for(lambda: ready(admin, namespace), what="Ready=True")
        assert lease_holder(admin) == "operator-a"
        assert "is the leader" not in standby.since_start() and NAME not in standby.since_start()

        assert leader.stop(signal.SIGTERM) == 0  # a clean stop releases the Lease at once
        wait_for(standby.leading, 30, "the standby to take over")
        assert lease_holder(admin) == "operator-b"
        kubectl.run("scale", "-n", namespace, f"dp/{NAME}", "--replicas=2")
        wait_for(
            lambda: (admin.get(DEPLOYMENTS, namespace, NAME) or {}).get("spec", {}).get("replicas") == 2,
            what="the new leader to scale the workers",
        )
    finally:
        if standby.process is not None:
            standby.stop()


def test_a_lease_is_taken_over_only_after_it_expires(admin: Kube, kubectl: Kubectl, namespace: str) -> None:
    now = [0.0]
    name = f"lease-{uuid.uuid4().hex[:6]}"

    def elector(identity: str) -> LeaderElector:
        settings = OperatorSettings(
            lease_namespace=namespace, lease_name=name, identity=identity, lease_duration_seconds=10
        )
        return LeaderElector(admin, settings, clock=lambda: now[0])

    first, second = elector("first"), elector("second")
    assert first.try_acquire() and not second.try_acquire()
    now[0] += 9  # a record unchanged for less than the duration (by the standby's clock) is still held
    assert not second.try_acquire()
    assert first.try_acquire()  # renewed
    assert not second.try_acquire()  # the standby sees the new record: its wait starts over
    now[0] += 9
    assert not second.try_acquire()
    now[0] += 2  # no renewal seen for more than the duration: the Lease is free
    assert second.try_acquire() and second.holder == "second"
    assert not first.try_acquire() and first.holder == "second"

    second.leading = True
    second.release()
    assert first.try_acquire()  # released: taken at once
    lease = admin.get(LEASES, namespace, name)
    assert lease is not None and lease["spec"]["leaseTransitions"] == 2


def test_the_liveness_endpoint_answers(operator: Operator) -> None:
    assert operator.healthy()


def test_an_operator_watches_only_its_namespaces(
    restored: Operator, kubectl: Kubectl, admin: Kube, tmp_path: Path
) -> None:
    watched, other = (f"op-{uuid.uuid4().hex[:8]}" for _ in range(2))
    for name in (watched, other):
        kubectl.run("create", "namespace", name)
    restored.stop()
    scoped = Operator({**restored.env, "SLUICE_WATCH_NAMESPACES": watched}, tmp_path / "scoped.log", "operator-a")
    try:
        scoped.start()
        kubectl.apply(sample(other))
        kubectl.apply(sample(watched))
        wait_for(lambda: ready(admin, watched), what="Ready=True in the watched namespace")
        assert admin.get(DEPLOYMENTS, other, NAME) is None
        assert "status" not in pipeline(admin, other)
    finally:
        if scoped.process is not None:
            scoped.stop()
        for name in (watched, other):
            kubectl.run("delete", "namespace", name, "--wait=false", check=False)


def test_an_operator_that_loses_its_lease_stops(restored: Operator, admin: Kube) -> None:
    lease = admin.get(LEASES, OPERATOR_NAMESPACE, "sluice-operator")
    assert lease is not None and lease["spec"]["holderIdentity"] == restored.identity
    lease["spec"]["holderIdentity"] = "an-intruder"  # as if another replica had taken over
    admin.replace(LEASES, OPERATOR_NAMESPACE, "sluice-operator", lease)
    process = restored.process
    assert process is not None
    assert process.wait(30) == 1  # stops acting at once, exits non-zero: the Deployment restarts it as a standby
    assert "lost the Lease (held by an-intruder)" in restored.since_start()
    restored.process = None
    lease = admin.get(LEASES, OPERATOR_NAMESPACE, "sluice-operator")
    assert lease is not None
    admin.replace(
        LEASES, OPERATOR_NAMESPACE, "sluice-operator", {**lease, "spec": {**lease["spec"], "holderIdentity": None}}
    )
