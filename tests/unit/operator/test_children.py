"""What the operator keeps of each pipeline and child between reconciles, and how it tells a child still holds its
apply."""

from __future__ import annotations

from sluice_operator.children import ChildCache, Packed, PipelineCache, Seen, holds, trimmed


def test_a_child_holds_what_was_applied_whatever_the_server_added() -> None:
    applied = {"spec": {"replicas": 2, "template": {"spec": {"containers": [{"name": "w", "image": "w:1"}]}}}}
    container = {"name": "w", "image": "w:1", "imagePullPolicy": "IfNotPresent"}  # a default the server added
    live = {
        "metadata": {"uid": "u", "generation": 3},
        "spec": {
            "replicas": 2,
            "strategy": {"type": "RollingUpdate"},
            "template": {"spec": {"containers": [container]}},
        },
        "status": {"readyReplicas": 2},
    }
    assert holds(live, applied)


def test_a_hand_edit_or_a_missing_item_breaks_it() -> None:
    applied = {"spec": {"replicas": 2, "template": {"spec": {"containers": [{"name": "w", "image": "w:1"}]}}}}
    edited = {"spec": {"replicas": 5, "template": {"spec": {"containers": [{"name": "w", "image": "w:1"}]}}}}
    other_image = {"spec": {"replicas": 2, "template": {"spec": {"containers": [{"name": "w", "image": "w:2"}]}}}}
    extra_container = {"spec": {"replicas": 2, "template": {"spec": {"containers": [{"name": "w", "image": "w:1"},
                                                                                    {"name": "x"}]}}}}  # fmt: skip
    assert not holds(edited, applied) and not holds(other_image, applied) and not holds(extra_container, applied)
    assert not holds({"spec": {}}, applied)


def test_trimmed_keeps_identity_ownership_replicas_and_status_only() -> None:
    deployment = {
        "kind": "Deployment",
        "metadata": {"name": "p", "namespace": "ns", "uid": "u", "generation": 2, "resourceVersion": "9",
                     "ownerReferences": [{"uid": "o", "controller": True}], "managedFields": [{"big": "x" * 1000}],
                     "annotations": {"a": "b"}},
        "spec": {"replicas": 3, "template": {"spec": {"containers": [{"name": "w"}]}}},
        "status": {"availableReplicas": 3},
    }  # fmt: skip
    assert trimmed(deployment) == {
        "kind": "Deployment",
        "metadata": {"name": "p", "namespace": "ns", "uid": "u", "generation": 2, "resourceVersion": "9",
                     "ownerReferences": [{"uid": "o", "controller": True}]},
        "spec": {"replicas": 3},
        "status": {"availableReplicas": 3},
    }  # fmt: skip


def test_the_cache_forgets_a_pipeline_whole() -> None:
    cache = ChildCache()
    cache.put(("ns", "p"), "Deployment", Seen.of(None, False))
    cache.put(("ns", "p"), "ConfigMap", Seen.of({"kind": "ConfigMap", "data": {"a": "b"}}, True))
    kept = cache.get(("ns", "p"), "ConfigMap")
    assert kept is not None and kept.obj == {"kind": "ConfigMap", "metadata": {}} and kept.holds_applied  # trimmed
    cache.forget(("ns", "p"))
    assert cache.get(("ns", "p"), "Deployment") is None and cache.get(("ns", "p"), "ConfigMap") is None


def pipeline_body(version: str, uid: str = "u1", replicas: int = 1) -> dict[str, object]:
    return {
        "apiVersion": "sluice.dev/v1alpha1",
        "kind": "DataPipeline",
        "metadata": {"name": "p", "namespace": "ns", "uid": uid, "resourceVersion": version,
                     "managedFields": [{"big": "x" * 1000}],
                     "annotations": {"sluice.dev/last-handled-configuration": "{...}",
                                     "kubectl.kubernetes.io/last-applied-configuration": "{...}"}},
        "spec": {"replicas": replicas},
        "status": {"observedGeneration": 1},
    }  # fmt: skip


def test_the_pipeline_cache_keeps_the_newest_version_without_managed_fields_or_annotations() -> None:
    cache = PipelineCache()
    cache.put(pipeline_body("10", replicas=2))
    cache.put(pipeline_body("9", replicas=1))  # older: a reconcile must not go back to it
    kept = cache.get(("ns", "p"))
    assert kept is not None and kept["spec"] == {"replicas": 2} and kept["status"] == {"observedGeneration": 1}
    assert kept["metadata"] == {
        "name": "p", "namespace": "ns", "uid": "u1", "resourceVersion": "10",
        "annotations": {"sluice.dev/last-handled-configuration": ""},  # only that kopf's copy is there, to remove it
    }  # fmt: skip
    cache.put(pipeline_body("3", uid="u2", replicas=5))  # deleted and made again under the same name
    assert cache.get(("ns", "p"))["spec"] == {"replicas": 5}  # type: ignore[index]
    cache.forget(("ns", "p"))
    assert cache.get(("ns", "p")) is None and len(cache) == 0


def test_a_packed_object_is_equal_to_another_of_the_same_content_and_gives_copies() -> None:
    manifest = {"kind": "Deployment", "metadata": {"name": "p", "labels": {"a": "1", "b": "2"}}, "spec": {"x": 2}}
    reordered = {"spec": {"x": 2}, "metadata": {"labels": {"b": "2", "a": "1"}, "name": "p"}, "kind": "Deployment"}
    assert Packed.of(manifest) == Packed.of(reordered) and Packed.of(manifest) != Packed.of({**manifest, "spec": {}})
    packed = Packed.of(manifest)
    packed.unpacked()["spec"]["x"] = 5  # a caller's change stays the caller's
    assert packed.unpacked() == manifest


def test_what_the_pipeline_cache_hands_out_is_a_copy() -> None:
    cache = PipelineCache()
    cache.put(pipeline_body("10", replicas=2))
    first = cache.get(("ns", "p"))
    assert first is not None
    first["spec"]["replicas"] = 7
    again = cache.get(("ns", "p"))
    assert again is not None and again["spec"] == {"replicas": 2} and cache.keys() == [("ns", "p")]


def test_a_pipeline_needs_a_reconcile_when_shown_new_or_with_another_spec_labels_or_deletion() -> None:
    cache = PipelineCache()
    body = pipeline_body("10")
    assert cache.put({**body, "metadata": {**body["metadata"], "generation": 1}})  # type: ignore[dict-item]

    def shown(version: str, **meta: object) -> dict[str, object]:
        return {**body, "metadata": {**body["metadata"], "resourceVersion": version, "generation": 1, **meta}}  # type: ignore[dict-item]

    assert not cache.put(shown("11"))  # its status changed: nothing a reconcile reads
    assert cache.put(shown("12", generation=2))  # its spec changed
    assert cache.put(shown("13", generation=2, labels={"team": "a"}))
    assert cache.put(shown("14", generation=2, labels={"team": "a"}, deletionTimestamp="2026-12-03T00:00:00Z"))
    cache.forget(("ns", "p"))
    assert cache.put(shown("15"))  # shown again after it went: a reconcile


def test_a_change_is_reconciled_even_when_the_operators_own_write_showed_it_first() -> None:
    cache = PipelineCache()
    meta = {**pipeline_body("10")["metadata"], "generation": 1}  # type: ignore[dict-item]
    assert cache.put({**pipeline_body("10"), "metadata": meta})
    # A status write answered with generation 2 (changed by someone meanwhile) before the watch showed it.
    assert not cache.put({**pipeline_body("12"), "metadata": {**meta, "resourceVersion": "12", "generation": 2}},
                         watched=False)  # fmt: skip
    assert cache.put({**pipeline_body("11"), "metadata": {**meta, "resourceVersion": "11", "generation": 2}})
    assert cache.get(("ns", "p"))["metadata"]["resourceVersion"] == "12"  # type: ignore[index]  # the newest kept


def test_a_child_seen_is_not_replaced_by_an_older_version() -> None:
    cache = ChildCache()
    deployment = {"kind": "Deployment", "metadata": {"name": "p", "resourceVersion": "20"}, "spec": {"replicas": 2}}
    cache.put(("ns", "p"), "Deployment", Seen.of(deployment, True))  # the operator's apply answered 20
    late = {**deployment, "metadata": {"name": "p", "resourceVersion": "19"}, "spec": {"replicas": 1}}
    cache.put(("ns", "p"), "Deployment", Seen.of(late, False))  # an event of before the apply, late
    kept = cache.get(("ns", "p"), "Deployment")
    assert kept is not None and kept.holds_applied and kept.obj["spec"] == {"replicas": 2}  # type: ignore[index]
    cache.put(("ns", "p"), "Deployment", Seen.of(None, False, version=21))  # deleted after
    assert cache.get(("ns", "p"), "Deployment") == Seen(None, False, 21)


def test_the_watch_showing_an_apply_s_answer_does_not_undo_that_it_holds_what_was_applied() -> None:
    """The reconcile that applied a ConfigMap has not yet recorded its manifest when the watch shows the answer, so
    the event is judged against the manifest before (or none): the next reconcile must still skip the apply."""
    cache = ChildCache()
    config = {"kind": "ConfigMap", "metadata": {"name": "p-config", "resourceVersion": "30"}}
    for first, then in ((True, False), (False, True)):  # the apply's answer first, or the watch's event first
        cache.forget(("ns", "p"))
        cache.put(("ns", "p"), "ConfigMap", Seen.of(config, first))
        cache.put(("ns", "p"), "ConfigMap", Seen.of(config, then))
        kept = cache.get(("ns", "p"), "ConfigMap")
        assert kept is not None and kept.holds_applied and kept.version == 30
    edited = {**config, "metadata": {"name": "p-config", "resourceVersion": "31"}}
    cache.put(("ns", "p"), "ConfigMap", Seen.of(edited, False))  # a hand edit after: newer, not holding it
    kept = cache.get(("ns", "p"), "ConfigMap")
    assert kept is not None and not kept.holds_applied and kept.version == 31
