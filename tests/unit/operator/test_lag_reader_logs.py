"""The lag reader's child process logs in the operator's format: a JSON log stream stays JSON (no Kafka)."""

from __future__ import annotations

import json
import subprocess
import sys


def reader_process(*argv: str) -> subprocess.CompletedProcess[str]:
    """`python -m sluice_operator.offsets` as kafka.LagReader starts it, with `argv`."""
    command = [sys.executable, "-P", "-m", "sluice_operator.offsets", *argv]
    return subprocess.run(command, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60)


def test_a_failure_of_the_reader_process_is_one_json_line_when_the_operator_logs_json() -> None:
    failed = reader_process("not-a-descriptor", "10", "json")
    assert failed.returncode == 1
    (line,) = failed.stderr.splitlines()
    entry = json.loads(line)
    assert entry["level"] == "ERROR"
    assert entry["logger"] == "sluice_operator.offsets"
    assert entry["message"] == "the lag reader process failed"
    assert "ValueError: invalid literal for int() with base 10: 'not-a-descriptor'" in entry["exception"]


def test_without_a_format_the_reader_process_logs_text() -> None:
    failed = reader_process("not-a-descriptor", "10")
    assert failed.returncode == 1
    first = failed.stderr.splitlines()[0]
    assert "ERROR   sluice_operator.offsets: the lag reader process failed" in first
    assert not first.startswith("{")
