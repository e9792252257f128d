"""Several tables: spec.tables resolved into targets, the one-table form as one target, and what is refused."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from sluice_worker.manifest import load_pipeline
from sluice_worker.model import PipelineError, parse_spec
from sluice_worker.offsets import OffsetTracker

EXAMPLES = Path(__file__).resolve().parents[3] / "examples"
FIELDS = {"id": {"path": "$.id"}}


def spec(tables: list[dict[str, Any]] | None = None, **changes: Any) -> dict[str, Any]:
    document: dict[str, Any] = {
        "source": {"bootstrapServers": "k:9092", "topics": ["orders", "refunds"]},
        "sink": {"contactPoints": ["c"], "keyspace": "shop", "consistency": "QUORUM", "ttlSeconds": 60},
        "tables": tables or [{"table": "orders", "transform": {"fields": FIELDS}}],
    }
    document.update(changes)
    return document


def test_the_one_table_form_is_one_target_reading_every_topic() -> None:
    (target,) = load_pipeline(EXAMPLES / "gophers-r-us.yaml").spec.targets()
    assert (target.location, target.name, sorted(target.topics)) == ("spec", "store.store_events", ["store-events"])
    assert target.consistency == "LOCAL_QUORUM"


def test_tables_take_the_sinks_defaults_unless_they_set_their_own() -> None:
    tables = [
        {"table": "orders", "topics": ["orders"], "transform": {"fields": FIELDS}},
        {"table": "all_events", "keyspace": "audit", "consistency": "ONE", "ttlSeconds": 5, "useRecordTimestamp": False,
         "transform": {"fields": FIELDS}},
    ]  # fmt: skip
    orders, everything = parse_spec(spec(tables)).targets()
    assert (orders.name, sorted(orders.topics), orders.consistency, orders.ttl_seconds) == (
        "shop.orders",
        ["orders"],
        "QUORUM",
        60,
    )
    assert (everything.name, sorted(everything.topics), everything.consistency, everything.ttl_seconds) == (
        "audit.all_events",
        ["orders", "refunds"],
        "ONE",
        5,
    )
    assert (orders.use_record_timestamp, everything.use_record_timestamp) == (True, False)
    assert everything.location == "spec.tables[1]"


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"transform": {"fields": FIELDS}}, "tables replaces transform and sink.table: set one or the other"),
        ({"tables": []}, "set transform and sink.table (one table), or tables (several)"),
        ({"tables": [{"table": "t", "topics": ["payments"], "transform": {"fields": FIELDS}}]},
         "tables[0].topics: 'payments' is not one of source.topics"),
        ({"tables": [{"table": "t", "topics": ["orders"], "transform": {"fields": FIELDS}}]},
         "source topic(s) 'refunds' feed no table"),
        ({"tables": [{"table": "t", "transform": {"fields": FIELDS}, "ttlFrom": {"column": "ttl"}}]},
         "tables[0].ttlFrom.column 'ttl' is not a column in fields or lookups"),
        ({"tables": [{"table": "t", "transform": {"fields": FIELDS, "required": ["id"]},
                      "createTable": {"columns": {"id": "text"}, "primaryKey": ["id"]}},
                     {"table": "u", "transform": {"fields": FIELDS},
                      "createTable": {"columns": {"id": "text"}, "primaryKey": ["id"]}}]},
         "primary key column 'id' must be in tables[1].transform.required"),
    ],
    ids=["both-forms", "neither", "unknown-topic", "unread-topic", "ttl-column", "second-table-key"],
)  # fmt: skip
def test_what_cannot_work_is_refused_naming_the_table(changes: dict[str, Any], message: str) -> None:
    document = spec()
    document.update(changes)
    if "tables" in changes and not changes["tables"]:
        del document["tables"]
    with pytest.raises(PipelineError, match=re.escape(message)):
        parse_spec(document)


def test_an_offset_feeding_two_tables_is_committable_once_both_are_done() -> None:
    offsets = OffsetTracker()
    tp = ("orders", 0)
    offsets.consumed(tp, 10, parts=2)
    offsets.consumed(tp, 11)
    offsets.done(tp, 11)
    offsets.done(tp, 10)  # the first table's write
    assert offsets.to_commit() == {}
    offsets.done(tp, 10)  # the second table's: now 10 and 11 are done
    assert offsets.to_commit() == {tp: 12}
