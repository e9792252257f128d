"""`sluice-worker` on the command line: invalid files are refused naming the field; dead letters replay."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
import yaml

from .harness import EXAMPLE, WORKER, running


def run_worker(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(WORKER), *args], capture_output=True, text=True, timeout=60)


def broken(tmp_path: Path, change) -> Path:  # type: ignore[no-untyped-def]
    manifest = yaml.safe_load(EXAMPLE.read_text())
    change(manifest["spec"])
    path = tmp_path / "broken.yaml"
    path.write_text(yaml.safe_dump(manifest))
    return path


@pytest.mark.parametrize(
    ("change", "field", "words"),
    [
        (lambda s: s["source"].update(topics=[]), "spec.source.topics", "at least 1"),
        (lambda s: s["sink"].update(consistency="SOMETIMES"), "spec.sink.consistency", "LOCAL_QUORUM"),
        (lambda s: s["sink"].update(tabel="x"), "spec.sink.tabel", "not permitted"),
        (
            lambda s: s["source"].update(consumerConfig={"enable.auto.commit": True}),
            "spec.source.consumerConfig",
            "enable.auto.commit",
        ),
        (lambda s: s["delivery"].update(maxInFlight=0), "spec.delivery.maxInFlight", "greater than or equal to 1"),
        (
            lambda s: s["transform"]["fields"]["price"].update(type="money"),
            "spec.transform.fields.price.type",
            "double",
        ),
    ],
    ids=["no-topics", "unknown-consistency", "typo-key", "worker-owned-key", "zero-in-flight", "unknown-type"],
)
def test_invalid_pipeline_exits_2_naming_the_field(tmp_path: Path, change, field: str, words: str) -> None:  # type: ignore[no-untyped-def]
    result = run_worker("--pipeline", str(broken(tmp_path, change)))
    assert result.returncode == 2, result.stderr
    assert field in result.stderr
    assert words in result.stderr


def test_missing_file_and_bad_yaml_exit_2(tmp_path: Path) -> None:
    missing = run_worker("--pipeline", str(tmp_path / "nope.yaml"))
    assert missing.returncode == 2 and "nope.yaml" in missing.stderr
    (tmp_path / "bad.yaml").write_text("spec: [unclosed\n")
    bad = run_worker("--pipeline", str(tmp_path / "bad.yaml"))
    assert bad.returncode == 2 and "invalid YAML" in bad.stderr


def test_a_hook_that_cannot_be_imported_exits_2_naming_the_field_and_tells_kubernetes(tmp_path: Path) -> None:
    manifest = broken(tmp_path, lambda s: s["transform"].update(python="no_such_module:enrich"))
    termination_log = tmp_path / "termination-log"
    termination_log.touch()  # as the kubelet makes it in a pod; elsewhere it does not exist and is not written
    result = subprocess.run(
        [str(WORKER), "--pipeline", str(manifest)],
        capture_output=True, text=True, timeout=60,
        env={**os.environ, "SLUICE_TERMINATION_LOG": str(termination_log), "SLUICE_HTTP_PORT": "0"},
    )  # fmt: skip
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    said = "spec.transform.python: cannot import 'no_such_module': No module named 'no_such_module'"
    assert said in result.stderr
    assert said in termination_log.read_text()


def test_help_names_both_commands() -> None:
    assert "--pipeline" in run_worker("--help").stdout
    assert "--rate" in run_worker("replay-dlq", "--help").stdout


def test_replay_dlq_republishes_dead_letters_once_they_are_fixable(pipeline, make_worker) -> None:  # type: ignore[no-untyped-def]
    # Events without an item name are refused while item_name is required ...
    producer_events = [{"id": f"no-name-{i}", "item": {"price": 2.5}} for i in range(20)]
    from confluent_kafka import Producer

    producer = Producer({"bootstrap.servers": pipeline.bootstrap})
    for event in producer_events:
        producer.produce(pipeline.topic, json.dumps(event).encode())
    assert producer.flush(30) == 0
    with running(make_worker(pipeline.manifest)) as worker:
        assert len(pipeline.dead_letters(20)) == 20
        assert worker.stop()[0] == 0
    assert pipeline.written() == 0

    # ... then the rule is relaxed, and the dead letters are replayed through the fixed pipeline.
    relaxed = pipeline.write_manifest(pipeline.workdir / "relaxed.yaml", transform={"required": ["id"]})
    with running(make_worker(relaxed)) as worker:
        worker.wait_ready()
        replay = subprocess.run(
            [str(WORKER), "replay-dlq", "--pipeline", str(relaxed), "--rate", "200", "--idle-seconds", "3"],
            capture_output=True,
            text=True,
            timeout=40,
            env=worker.env,
        )
        assert replay.returncode == 0, replay.stderr
        assert "replayed 20 dead letters" in replay.stdout
        rows = pipeline.wait_for_rows(20)
        assert worker.stop()[0] == 0
    assert rows == {e["id"]: (None, 2.5, None) for e in producer_events}
