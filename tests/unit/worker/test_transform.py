"""The compiled transform: Gophers R Us rows, coercions, every field source, rejections, the Python hook."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sluice_worker.hooks import load_hook
from sluice_worker.manifest import load_pipeline
from sluice_worker.model import PipelineError, TransformSpec
from sluice_worker.transform import Record, Rejection, Row, Transformer, compile_transform, parse_path

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "gophers-r-us.yaml"
RECORD_TIME_MS = 1_714_563_200_123  # 2024-05-01T11:33:20.123Z


@pytest.fixture(scope="module")
def gophers() -> Transformer:
    """The transform of examples/gophers-r-us.yaml, department table included."""
    return compile_transform(load_pipeline(EXAMPLE).spec.transform)


def event(value: object, **record: Any) -> Record:
    """A store-events record whose value is `value` as JSON (or raw bytes)."""
    payload = value if isinstance(value, bytes) else json.dumps(value).encode()
    fields = {"topic": "store-events", "partition": 3, "offset": 42, "timestamp_ms": RECORD_TIME_MS, **record}
    return Record(value=payload, **fields)


def purchase(item: str, price: object = 9.99) -> Record:
    return event({"id": "evt-1", "item": {"name": item, "price": price}, "store": "sf", "ts": RECORD_TIME_MS})


def transform(fields: dict[str, Any], **spec: Any) -> Transformer:
    """The transform as the worker compiles it: the Python hook, if any, loaded first."""
    validated = TransformSpec.model_validate({"fields": fields, **spec})
    return compile_transform(validated, load_hook(validated))


def row_of(result: Row | Rejection) -> Row:
    assert not isinstance(result, Rejection), result
    return result


def rejection_of(result: Row | Rejection) -> Rejection:
    assert isinstance(result, Rejection), result
    return result


def test_gophers_event_becomes_a_row(gophers: Transformer) -> None:
    assert gophers(purchase("blue-gopher")) == {
        "id": "evt-1",
        "item_name": "blue-gopher",
        "price": 9.99,
        "event_time": datetime(2024, 5, 1, 11, 33, 20, 123_000, tzinfo=UTC),
        "department": "gophers",
    }


@pytest.mark.parametrize(
    ("item", "department"),
    [
        ("blue-gopher", "gophers"),
        ("pink-gopher", "gophers"),
        ("purple-gopher", "gophers"),
        ("gophercon-us-sticker", "stickers"),
        ("gosf-sticker", "stickers"),
        ("gophercon-uk-sticker", "stickers"),
        ("gophercon-us-shirt", "clothing"),
        ("gophercon-uk-shirt", "clothing"),
        ("gopher-mug", "misc"),
        ("", "misc"),
    ],
)
def test_department_lookup(gophers: Transformer, item: str, department: str) -> None:
    assert row_of(gophers(purchase(item)))["department"] == department


def test_missing_required_field_is_rejected_naming_it(gophers: Transformer) -> None:
    rejection = rejection_of(gophers(event({"item": {"name": "blue-gopher", "price": 1}})))
    assert rejection == Rejection("required field 'id' ($.id) is missing", "missing_field")


def test_json_null_counts_as_missing(gophers: Transformer) -> None:
    rejection = rejection_of(gophers(event({"id": "evt-1", "item": {"name": None}})))
    assert (rejection.error, rejection.reason) == (
        "missing_field",
        "required field 'item_name' ($.item.name) is missing",
    )


def test_missing_optional_field_is_none(gophers: Transformer) -> None:
    row = row_of(gophers(event({"id": "evt-2", "item": {"name": "gosf-sticker"}})))
    assert row["price"] is None
    assert row["department"] == "stickers"


@pytest.mark.parametrize("value", [b"{not json", b"", b"\xff\xfe{", b"[" * 100_000])
def test_bad_json_is_rejected(gophers: Transformer, value: bytes) -> None:
    rejection = rejection_of(gophers(event(value)))
    assert rejection.error == "invalid_json"
    assert rejection.reason.startswith("message value is not valid JSON")


def test_a_tombstone_is_dead_lettered_by_default_saying_so(gophers: Transformer) -> None:
    rejection = rejection_of(gophers(Record("store-events", 0, 1, RECORD_TIME_MS, key=b"evt-1", value=None)))
    assert rejection == Rejection(
        "message has no value (a tombstone) and transform.tombstones is deadLetter", "tombstone"
    )


def test_wrong_type_is_rejected_naming_the_field(gophers: Transformer) -> None:
    rejection = rejection_of(gophers(purchase("blue-gopher", price="cheap")))
    assert rejection == Rejection("field 'price' ($.item.price): expected double, got str 'cheap'", "wrong_type")


def test_numeric_text_is_coerced(gophers: Transformer) -> None:
    assert row_of(gophers(purchase("blue-gopher", price="12.5")))["price"] == 12.5


def test_record_sources() -> None:
    fields = {
        "key": {"source": "key"},
        "trace": {"source": "header", "header": "trace-id"},
        "retries": {"source": "header", "header": "retries", "type": "int"},
        "absent": {"source": "header", "header": "nope"},
        "topic": {"source": "topic"},
        "partition": {"source": "partition"},
        "offset": {"source": "offset", "type": "bigint"},
        "at": {"source": "timestamp"},
        "at_ms": {"source": "timestamp", "type": "bigint"},
    }
    record = Record(
        topic="store-events",
        partition=3,
        offset=42,
        timestamp_ms=RECORD_TIME_MS,
        key=b"evt-1",
        value=b"this is not JSON and nothing reads it",
        headers=(("trace-id", b"first"), ("retries", b"2"), ("trace-id", b"last")),
    )
    assert row_of(transform(fields)(record)) == {
        "key": "evt-1",
        "trace": "last",
        "retries": 2,
        "absent": None,
        "topic": "store-events",
        "partition": 3,
        "offset": 42,
        "at": datetime(2024, 5, 1, 11, 33, 20, 123_000, tzinfo=UTC),
        "at_ms": RECORD_TIME_MS,
    }


def test_key_as_blob_keeps_the_bytes_and_bad_utf8_text_is_wrong_type() -> None:
    record = Record("t", 0, 0, 0, key=b"\xff\x00", value=b"")  # an empty value, not a tombstone
    assert row_of(transform({"raw": {"source": "key", "type": "blob"}})(record)) == {"raw": b"\xff\x00"}
    rejection = rejection_of(transform({"text": {"source": "key"}})(record))
    assert rejection == Rejection("field 'text' (message key): is not valid UTF-8", "wrong_type")


def test_missing_required_key_is_rejected() -> None:
    rejection = rejection_of(transform({"key": {"source": "key"}}, required=["key"])(Record("t", 0, 0, 0, value=b"")))
    assert rejection == Rejection("required field 'key' (message key) is missing", "missing_field")


@pytest.mark.parametrize(
    ("cql_type", "value", "expected"),
    [
        ("text", "blue", "blue"),
        ("text", 42, "42"),
        ("text", {"a": [1, True]}, '{"a":[1,true]}'),
        ("ascii", "plain", "plain"),
        ("int", 7, 7),
        ("int", "-12", -12),
        ("int", 3.0, 3),
        ("bigint", 2**40, 2**40),
        ("varint", 10**30, 10**30),
        ("double", 1, 1.0),
        ("float", "2.5", 2.5),
        ("decimal", "9.99", Decimal("9.99")),
        ("decimal", 0.1, Decimal("0.1")),
        ("boolean", True, True),
        ("boolean", "FALSE", False),
        ("timestamp", "2024-05-01T11:33:20Z", datetime(2024, 5, 1, 11, 33, 20, tzinfo=UTC)),
        ("timestamp", "2024-05-01T11:33:20", datetime(2024, 5, 1, 11, 33, 20, tzinfo=UTC)),
        ("timestamp", 0, datetime(1970, 1, 1, tzinfo=UTC)),
        ("date", "2024-05-01", date(2024, 5, 1)),
        ("uuid", "12345678-1234-5678-1234-567812345678", uuid.UUID("12345678-1234-5678-1234-567812345678")),
        (
            "timeuuid",
            "b0f1a7ce-07c4-11ef-9262-0242ac120002",
            uuid.UUID("b0f1a7ce-07c4-11ef-9262-0242ac120002"),
        ),
        ("blob", "hi", b"hi"),
    ],
)
def test_coercions(cql_type: str, value: object, expected: object) -> None:
    result = row_of(transform({"column": {"path": "$.v", "type": cql_type}})(event({"v": value})))
    assert result["column"] == expected
    assert type(result["column"]) is type(expected)


@pytest.mark.parametrize(
    ("cql_type", "value", "problem"),
    [
        ("int", "seven", "expected int, got str 'seven'"),
        ("int", 2**31, "2147483648 is out of range for int"),
        ("tinyint", -129, "-129 is out of range for tinyint"),
        ("int", 1.5, "expected int, got float 1.5"),
        ("bigint", True, "expected bigint, got bool True"),
        ("double", [1], "expected double, got list [1]"),
        ("boolean", 1, "expected boolean, got int 1"),
        ("ascii", "café", "expected ascii, got str 'café'"),
        ("timestamp", "yesterday", "expected timestamp, got str 'yesterday'"),
        ("uuid", "not-a-uuid", "expected uuid, got str 'not-a-uuid'"),
        ("timeuuid", "12345678-1234-4678-9234-567812345678", "expected timeuuid, got str"),
        ("decimal", "lots", "expected decimal, got str 'lots'"),
        ("date", 20240501, "expected date, got int 20240501"),
    ],
)
def test_wrong_types(cql_type: str, value: object, problem: str) -> None:
    rejection = rejection_of(transform({"column": {"path": "$.v", "type": cql_type}})(event({"v": value})))
    assert rejection.error == "wrong_type"
    assert rejection.reason.startswith(f"field 'column' ($.v): {problem}")


def test_untyped_json_passes_through() -> None:
    fields = {"n": {"path": "n"}, "flag": {"path": "$.flag"}, "nested": {"path": "$.nested"}}
    result = transform(fields)(event({"n": 1.5, "flag": False, "nested": {"a": [1, 2]}}))
    assert row_of(result) == {"n": 1.5, "flag": False, "nested": '{"a":[1,2]}'}


def test_list_indexes_and_whole_value() -> None:
    fields = {
        "first_sku": {"path": "$.items[0].sku"},
        "second": {"path": "items[1].sku"},
        "gone": {"path": "items[5]"},
    }
    result = transform(fields)(event({"items": [{"sku": "a"}, {"sku": "b"}]}))
    assert row_of(result) == {"first_sku": "a", "second": "b", "gone": None}
    assert row_of(transform({"whole": {"path": "$", "type": "text"}})(event("just text"))) == {"whole": "just text"}


def test_parse_path() -> None:
    assert parse_path("$.items[0].name") == ("items", 0, "name")
    assert parse_path("item.name") == ("item", "name")
    assert parse_path("$[2][0]") == (2, 0)
    assert parse_path("$") == ()


def test_python_hook_builds_the_row(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(Path(__file__).parent))
    hooked = transform({"store": {"path": "$.store"}}, python="gopher_hooks:tag_region", required=["region"])
    assert hooked(purchase("blue-gopher")) == {"store": "sf", "region": "us-west", "partition": 3}


def test_python_hook_exception_is_a_transform_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(Path(__file__).parent))
    hooked = transform({"price": {"path": "$.item.price"}}, python="gopher_hooks:refuse_free_items")
    assert row_of(hooked(purchase("blue-gopher", price=3))) == {"price": 3}
    rejection = rejection_of(hooked(purchase("blue-gopher", price=0)))
    assert rejection.error == "transform_error"
    assert rejection.reason == "python hook gopher_hooks:refuse_free_items raised ValueError('free items are not sold')"


def test_python_hook_must_return_a_dict(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(Path(__file__).parent))
    hooked = transform({"store": {"path": "$.store"}}, python="gopher_hooks:forget_to_return")
    rejection = rejection_of(hooked(purchase("blue-gopher")))
    assert rejection == Rejection(
        "python hook gopher_hooks:forget_to_return returned NoneType, not a dict", "transform_error"
    )


def test_python_hook_that_cannot_be_loaded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(Path(__file__).parent))
    with pytest.raises(PipelineError, match=r"^spec\.transform\.python: cannot import 'no_such_hooks'"):
        transform({"id": {"path": "$.id"}}, python="no_such_hooks:enrich")
    with pytest.raises(PipelineError, match="'gopher_hooks' has no function 'not_a_function'"):
        transform({"id": {"path": "$.id"}}, python="gopher_hooks:not_a_function")


def test_compiled_transform_is_reusable(gophers: Transformer) -> None:
    rows = [row_of(gophers(purchase(item))) for item in ("pink-gopher", "gosf-sticker", "gophercon-uk-shirt")]
    assert [row["department"] for row in rows] == ["gophers", "stickers", "clothing"]


def test_a_hook_is_loaded_by_the_caller_never_by_the_transform() -> None:
    spec = TransformSpec.model_validate({"fields": {"id": {"path": "$.id"}}, "python": "gopher_hooks:tag_region"})
    with pytest.raises(PipelineError, match="pass its loaded hook"):
        compile_transform(spec)
    with pytest.raises(PipelineError, match="pass its loaded hook"):
        compile_transform(spec.model_copy(update={"python": None}), hook=lambda record, row: row)
