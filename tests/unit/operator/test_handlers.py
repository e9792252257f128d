"""What the handlers tell: events from a reconcile's outcome and the spec last handled; children traced to owners."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from sluice_operator.api import owning_pipeline
from sluice_operator.handlers import Event, change_events, drift_events
from sluice_operator.reconcile import Outcome, spec_changes
from sluice_worker.model import DataPipeline, parse_pipeline

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "gophers-r-us.yaml"
BODY = {"metadata": {"name": "gophers-r-us", "namespace": "shop", "uid": "u1"}}


def pipeline(**spec: Any) -> DataPipeline:
    manifest = yaml.safe_load(EXAMPLE.read_text())
    manifest["spec"].update(spec)
    return parse_pipeline(manifest)


def outcome(**changes: Any) -> Outcome:
    fields: dict[str, Any] = {"body": BODY, "pipeline": pipeline(), "config_hash": "h1", "workers": 1, **changes}
    return Outcome(**fields)


def test_creation_is_told_once() -> None:
    assert change_events(outcome(first=True, created=True)) == [
        Event("Normal", "Created", "Created Deployment gophers-r-us with 1 workers and ConfigMap gophers-r-us-pipeline")
    ]
    assert change_events(outcome()) == []  # reconciled again (a restart, a resync): nothing to tell
    # The operator died after applying the Deployment and before writing the status: no reconcile is recorded,
    # the Deployment is found, and the creation has still not been told.
    assert [e.reason for e in change_events(outcome(first=True, created=False))] == ["Created"]
    # The Deployment deleted by hand is made again: a repair (told by DriftRepaired), not a creation.
    assert change_events(outcome(created=True)) == []


def test_a_spec_fixed_after_a_problem_tells_the_creation_of_its_first_workers() -> None:
    fixed = outcome(created=True, never_applied=True, changes={"source": ({"topics": []}, {"topics": ["orders"]})})
    assert [e.reason for e in change_events(fixed)] == ["Created", "Updated"]
    # Its Secrets created after the first reconciles said they were missing: the spec is as it was.
    assert [e.reason for e in change_events(outcome(created=True, never_applied=True))] == ["Created"]


def test_scaling_pausing_and_resuming() -> None:
    scaled = change_events(outcome(pipeline=pipeline(replicas=5), changes={"replicas": (1, 5)}))
    assert scaled == [Event("Normal", "Scaled", "Scaled from 1 to 5 workers")]
    paused = change_events(outcome(pipeline=pipeline(paused=True), changes={"paused": (None, True)}))
    assert paused == [Event("Normal", "Paused", "Paused: the workers are scaled to zero; spec.replicas (1) is kept")]
    resumed = change_events(outcome(changes={"paused": (True, False)}))
    assert resumed == [Event("Normal", "Resumed", "Resumed with 1 workers")]
    while_paused = change_events(outcome(pipeline=pipeline(paused=True, replicas=3), changes={"replicas": (1, 3)}))
    assert while_paused[0].message == "Scaled from 1 to 3 workers (paused: the Deployment stays at 0 until resumed)"


def test_other_changes_roll_out_a_config() -> None:
    changes = {
        "transform": ({"fields": {"id": {"path": "$.id"}}}, {"fields": {"id": {"path": "$.order.id"}}}),
        "terminationGracePeriodSeconds": (30, 60),
    }
    assert change_events(outcome(changes=changes)) == [
        Event("Normal", "Updated", "spec.terminationGracePeriodSeconds, spec.transform changed: rolling out config h1")
    ]


def test_the_changes_are_the_top_level_fields_that_differ_from_the_spec_last_handled() -> None:
    handled = {"replicas": 1, "image": "a", "paused": True, "source": {"topics": ["t"]}}
    now = {"replicas": 2, "image": "a", "source": {"topics": ["t", "u"]}, "autoscaling": {"enabled": True}}
    assert spec_changes(handled, now) == {
        "replicas": (1, 2),
        "paused": (True, None),
        "source": ({"topics": ["t"]}, {"topics": ["t", "u"]}),
        "autoscaling": (None, {"enabled": True}),
    }
    assert spec_changes(None, now) == {}  # nothing handled yet (a new pipeline): a creation, not a change
    assert spec_changes(now, dict(now)) == {}


def test_problems_are_warnings_when_new_and_nothing_else() -> None:
    problem = ("InvalidSpec", "spec.source.topics: List should have at least 1 item")
    assert change_events(outcome(pipeline=None, problem=problem, first=True, new_problem=True)) == [
        Event("Warning", "InvalidSpec", "spec.source.topics: List should have at least 1 item")
    ]
    assert change_events(outcome(pipeline=None, problem=problem)) == []  # the status says it already


def test_a_vanished_pipeline_has_no_events() -> None:
    assert change_events(Outcome(body=None, changes={"replicas": (1, 2)})) == []


def test_repairs_are_told_per_child() -> None:
    assert drift_events({"Deployment gophers-r-us": ["spec.replicas 7 -> 1"], "ConfigMap x": ["deleted"]}) == [
        Event("Normal", "DriftRepaired", "Deployment gophers-r-us: spec.replicas 7 -> 1; restored"),
        Event("Normal", "DriftRepaired", "ConfigMap x: deleted; restored"),
    ]


def test_children_are_traced_to_the_controlling_pipeline() -> None:
    def child(*refs: dict[str, Any]) -> dict[str, Any]:
        return {"metadata": {"ownerReferences": list(refs)}}

    ours = {"apiVersion": "sluice.dev/v1alpha1", "kind": "DataPipeline", "name": "p", "uid": "u", "controller": True}
    assert owning_pipeline(child(ours)) == "p"
    assert owning_pipeline(child({**ours, "controller": False})) is None
    assert owning_pipeline(child({**ours, "apiVersion": "other.dev/v1"})) is None
    assert owning_pipeline({"metadata": {}}) is None


def test_with_autoscaling_the_autoscaler_tells_the_scaling() -> None:
    autoscaled = pipeline(replicas=3, autoscaling={"enabled": True})
    assert change_events(outcome(pipeline=autoscaled, changes={"replicas": (1, 3)})) == []  # its ScaledUp says why


def test_turning_autoscaling_on_and_off_is_told() -> None:
    on = pipeline(autoscaling={"enabled": True, "minReplicas": 2, "targetLagPerReplica": 500})
    changes = {"autoscaling": (None, {"enabled": True})}
    assert change_events(outcome(pipeline=on, changes=changes)) == [
        Event("Normal", "Autoscaling", "Autoscaling is on: minReplicas 2, maxReplicas the partition count, "
              "targetLagPerReplica 500, scaleDownStabilizationSeconds 300; the operator sets spec.replicas"),
    ]  # fmt: skip
    capped = pipeline(autoscaling={"enabled": True, "maxReplicas": 4})
    assert "maxReplicas 4," in change_events(outcome(pipeline=capped, changes=changes))[0].message
    off = pipeline(replicas=4, autoscaling={"enabled": False})
    assert change_events(outcome(pipeline=off, changes=changes)) == [
        Event("Normal", "Autoscaling", "Autoscaling is off: spec.replicas (4) decides")
    ]
