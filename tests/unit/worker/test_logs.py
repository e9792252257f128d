"""The JSON log lines both command lines write: one object a line, the traceback kept."""

from __future__ import annotations

import json
import logging
import sys

from sluice_worker.logs import JsonLogFormatter


def test_json_logs_are_one_object_a_line() -> None:
    record = logging.LogRecord("sluice_operator", logging.INFO, __file__, 1, "hello %s", ("world",), None)
    entry = json.loads(JsonLogFormatter().format(record))
    assert (entry["level"], entry["logger"], entry["message"]) == ("INFO", "sluice_operator", "hello world")
    assert "exception" not in entry


def test_json_logs_keep_the_traceback() -> None:
    try:
        raise ValueError("bad row")
    except ValueError:
        record = logging.LogRecord("sluice.worker", logging.ERROR, __file__, 1, "failed", (), sys.exc_info())
    entry = json.loads(JsonLogFormatter().format(record))
    assert "ValueError: bad row" in entry["exception"]
