"""What the handlers report: events from a kopf diff and a reconcile outcome; children traced to their owner."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from sluice_operator.api import owning_pipeline
from sluice_operator.handlers import Event, change_events, drift_events
from sluice_operator.reconcile import Outcome
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
    assert change_events("create", [], outcome(created=True)) == [
        Event("Normal", "Created", "Created Deployment gophers-r-us with 1 workers and ConfigMap gophers-r-us-pipeline")
    ]
    assert change_events("resume", [], outcome()) == []
    # The operator died after applying the Deployment and before kopf recorded the creation: kopf runs the
    # create handler again, which finds the Deployment, and the creation has still not been told.
    assert [e.reason for e in change_events("create", [], outcome(created=False))] == ["Created"]


def test_a_change_made_while_the_operator_was_down_is_told_by_the_update_handler_only() -> None:
    # On start-up kopf runs the resume handler beside the update handler, with the same diff.
    diff = [("change", ("spec", "replicas"), 1, 3)]
    assert change_events("resume", diff, outcome(pipeline=pipeline(replicas=3))) == []
    assert change_events("update", diff, outcome(pipeline=pipeline(replicas=3))) == [
        Event("Normal", "Scaled", "Scaled from 1 to 3 workers")
    ]


def test_scaling_pausing_and_resuming() -> None:
    scaled = change_events("update", [("change", ("spec", "replicas"), 1, 5)], outcome(pipeline=pipeline(replicas=5)))
    assert scaled == [Event("Normal", "Scaled", "Scaled from 1 to 5 workers")]
    paused = change_events(
        "update", [("change", ("spec", "paused"), False, True)], outcome(pipeline=pipeline(paused=True))
    )
    assert paused == [Event("Normal", "Paused", "Paused: the workers are scaled to zero; spec.replicas (1) is kept")]
    resumed = change_events("update", [("change", ("spec", "paused"), True, False)], outcome())
    assert resumed == [Event("Normal", "Resumed", "Resumed with 1 workers")]
    while_paused = change_events(
        "update", [("change", ("spec", "replicas"), 1, 3)], outcome(pipeline=pipeline(paused=True, replicas=3))
    )
    assert while_paused[0].message == "Scaled from 1 to 3 workers (paused: the Deployment stays at 0 until resumed)"


def test_other_changes_roll_out_a_config() -> None:
    diff = [
        ("change", ("spec", "transform", "fields", "id", "path"), "$.id", "$.order.id"),
        ("change", ("spec", "terminationGracePeriodSeconds"), 30, 60),
        ("change", ("metadata", "labels", "team"), "a", "b"),
    ]
    assert change_events("update", diff, outcome()) == [
        Event("Normal", "Updated", "spec.terminationGracePeriodSeconds, spec.transform changed: rolling out config h1")
    ]


def test_a_whole_spec_in_the_diff_is_split_into_fields() -> None:
    diff = [("change", ("spec",), {"replicas": 1, "image": "a"}, {"replicas": 2, "image": "b"})]
    events = change_events("update", diff, outcome(pipeline=pipeline(replicas=2)))
    assert [e.reason for e in events] == ["Scaled", "Updated"]
    assert events[1].message.startswith("spec.image changed")


def test_problems_are_warnings_and_nothing_else() -> None:
    problem = ("InvalidSpec", "spec.source.topics: List should have at least 1 item")
    assert change_events("create", [], outcome(pipeline=None, problem=problem, created=False)) == [
        Event("Warning", "InvalidSpec", "spec.source.topics: List should have at least 1 item")
    ]


def test_a_vanished_pipeline_has_no_events() -> None:
    assert change_events("update", [("change", ("spec", "replicas"), 1, 2)], Outcome(body=None)) == []


def test_repairs_are_told_per_child() -> None:
    repaired = outcome(repaired={"Deployment gophers-r-us": ["spec.replicas 7 -> 1"], "ConfigMap x": ["deleted"]})
    assert drift_events(repaired) == [
        Event("Normal", "DriftRepaired", "Deployment gophers-r-us: spec.replicas 7 -> 1; restored"),
        Event("Normal", "DriftRepaired", "ConfigMap x: deleted; restored"),
    ]
    assert change_events("resume", [], repaired) == drift_events(repaired)


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
    diff = [("change", ("spec", "replicas"), 1, 3)]
    assert change_events("update", diff, outcome(pipeline=autoscaled)) == []  # its ScaledUp event says why


def test_turning_autoscaling_on_and_off_is_told() -> None:
    on = pipeline(autoscaling={"enabled": True, "minReplicas": 2, "targetLagPerReplica": 500})
    diff = [("add", ("spec", "autoscaling", "enabled"), None, True)]
    assert change_events("update", diff, outcome(pipeline=on)) == [
        Event("Normal", "Autoscaling", "Autoscaling is on: minReplicas 2, maxReplicas the partition count, "
              "targetLagPerReplica 500, scaleDownStabilizationSeconds 300; the operator sets spec.replicas"),
    ]  # fmt: skip
    capped = pipeline(autoscaling={"enabled": True, "maxReplicas": 4})
    assert "maxReplicas 4," in change_events("update", diff, outcome(pipeline=capped))[0].message
    off = pipeline(replicas=4, autoscaling={"enabled": False})
    assert change_events("update", diff, outcome(pipeline=off)) == [
        Event("Normal", "Autoscaling", "Autoscaling is off: spec.replicas (4) decides")
    ]
