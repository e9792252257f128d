"""examples/gophers-r-us-by-department.yaml against the real servers: one topic into two tables, each with its own
columns, filter and TTL; poison messages dead-lettered once per table, each letter naming its table; every offset
committed, none ahead of both tables' writes."""

from __future__ import annotations

import time
from pathlib import Path

from .harness import DEPARTMENTS, CommitAuditor, running

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "gophers-r-us-by-department.yaml"
N, POISON_EVERY = 300, 25
THIRTY_DAYS = 2_592_000


def test_one_topic_feeds_two_tables_and_commits_once_both_have_each_message(pipeline, make_worker) -> None:  # type: ignore[no-untyped-def]
    events = pipeline.produce(N, poison_every=POISON_EVERY)
    poison = [e for e in events if e.poison]
    good = [e for e in events if not e.poison]
    by_department = {(DEPARTMENTS[e.item], e.id): e.price for e in good if DEPARTMENTS[e.item] != "misc"}
    assert 0 < len(by_department) < len(good)  # the filter has something to leave out

    tables = {"store_events", "sales_by_department"}
    # The auditor checks store_events; committing past a message that only that table had would also leave its
    # sales row missing at the end, which the counts below catch.
    # A value that is no JSON is refused once, before any table reads it; the others by each table.
    unreadable = [e for e in poison if e.poison == "invalid_json"]
    with CommitAuditor(pipeline) as audit, running(make_worker(pipeline.example_manifest(EXAMPLE))) as worker:
        letters = pipeline.dead_letters(2 * len(poison) - len(unreadable))
        deadline = time.monotonic() + 60
        while pipeline.committed().get(0) != N and time.monotonic() < deadline:
            time.sleep(0.2)
        written = {table: worker.metric(f'sluice_rows_written_total{{table="{table}"}}') for table in tables}
        assert worker.stop()[0] == 0
    assert pipeline.committed() == {0: N}
    assert pipeline.rows() == pipeline.expected_rows()
    query = f"SELECT department, id, price, ttl(price) AS ttl FROM {pipeline.keyspace}.sales_by_department"
    sales = list(pipeline.session.execute(query))
    assert {(r.department, r.id): r.price for r in sales} == by_department
    assert all(THIRTY_DAYS - 300 < r.ttl <= THIRTY_DAYS for r in sales)
    assert written == {"store_events": len(good), "sales_by_department": len(by_department)}
    # Each poison message that is JSON is refused by both tables: two letters, each naming the table.
    headers = [dict(m.headers()) for m in letters]
    refused = sorted((h.get("sluice.table", b"").decode(), int(h["sluice.source.offset"])) for h in headers)
    expected = [(f"{pipeline.keyspace}.{table}", e.offset) for table in tables for e in poison if e not in unreadable]
    assert refused == sorted([*expected, *(("", e.offset) for e in unreadable)])
    assert 0 < len(unreadable) < len(poison)
    assert audit.violations == []
