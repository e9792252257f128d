"""examples/user-changes-cdc.yaml against the real servers: tombstones delete rows, write times come from a header
and TTLs from the value, an older change arriving late does not overwrite a newer one, the filter leaves test
accounts out, and a tombstone without a key is a dead letter naming the column."""

from __future__ import annotations

import json
import time
from pathlib import Path

from confluent_kafka import Producer

from .harness import running

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "user-changes-cdc.yaml"
HOUR_MS = 3_600_000


def test_the_cdc_example_deletes_keeps_the_newest_change_and_expires_trials(pipeline, make_worker) -> None:  # type: ignore[no-untyped-def]
    at = int(time.time() * 1000) - HOUR_MS  # change times an hour back: every record time is later than them
    changes: list[tuple[bytes | None, dict[str, object] | None, int]] = [
        (b"u-1", {"name": "Ann", "plan": "pro"}, at + 1000),
        (b"u-2", {"name": "Bob", "plan": "pro"}, at + 1000),
        (b"u-1", {"name": "Ann (stale)", "plan": "free"}, at + 500),  # an older change, arriving late
        (b"u-2", None, at + 2000),  # Bob deleted
        (b"u-3", {"name": "Cy", "plan": "trial", "trial_seconds": 3600}, at + 1000),
        (b"u-4", {"name": "QA bot", "plan": "internal-test"}, at + 1000),  # filtered out
        (b"u-5", None, at + 1000),  # a delete of a user never written
        (None, None, at + 1000),  # a tombstone with no key: no row to delete
    ]
    producer = Producer({"bootstrap.servers": pipeline.bootstrap, "enable.idempotence": True})
    for key, value, changed_at in changes:
        payload = None if value is None else json.dumps(value).encode()
        producer.produce(pipeline.topic, key=key, value=payload, headers=[("changed-at", str(changed_at).encode())])
    assert producer.flush(30) == 0

    with running(make_worker(pipeline.example_manifest(EXAMPLE))) as worker:
        letters = pipeline.dead_letters(1)
        deadline = time.monotonic() + 30
        while pipeline.committed().get(0) != len(changes) and time.monotonic() < deadline:
            time.sleep(0.2)
        skipped = worker.metric("sluice_messages_skipped_total")
        assert worker.stop()[0] == 0
    assert pipeline.committed() == {0: len(changes)}
    query = f"SELECT user_id, name, plan, writetime(name) AS wt, ttl(name) AS ttl FROM {pipeline.keyspace}.users"
    users = {r.user_id: r for r in pipeline.session.execute(query)}
    assert sorted(users) == ["u-1", "u-3"], "Bob deleted, the QA bot filtered out, u-5 never existed"
    assert (users["u-1"].name, users["u-1"].plan, users["u-1"].wt) == ("Ann", "pro", (at + 1000) * 1000)
    assert users["u-1"].ttl is None
    assert users["u-3"].name == "Cy" and 3500 < users["u-3"].ttl <= 3600
    assert skipped == 1
    (letter,) = letters
    headers = dict(letter.headers())
    assert headers["sluice.error"] == b"missing_field"
    assert b"tombstone: primary key column 'user_id' of " in headers["sluice.reason"]
    assert headers["sluice.table"] == f"{pipeline.keyspace}.users".encode()
