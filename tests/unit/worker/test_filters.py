"""The transform's filter: which rows pass, and the model's checks of a filter."""

from __future__ import annotations

from typing import Any

import pytest
from sluice_worker.filters import compile_filter
from sluice_worker.model import Filter, PipelineError, TransformSpec, parse_pipeline
from sluice_worker.transform import SKIPPED, Record, Rejection, compile_transform


def keeps(spec: dict[str, Any], row: dict[str, object]) -> bool:
    return compile_filter(Filter.model_validate(spec))(row)


@pytest.mark.parametrize(
    ("spec", "row", "kept"),
    [
        ({"all": [{"column": "dept", "equals": "gophers"}]}, {"dept": "gophers"}, True),
        ({"all": [{"column": "dept", "equals": "gophers"}]}, {"dept": "misc"}, False),
        ({"all": [{"column": "dept", "in": ["gophers", "stickers"]}]}, {"dept": "stickers"}, True),
        ({"all": [{"column": "dept", "exists": True}]}, {"dept": None}, False),
        ({"all": [{"column": "dept", "exists": False}]}, {}, True),
        ({"all": [{"column": "price", "equals": 1}]}, {"price": 1.0}, True),  # numbers compare as numbers
        ({"all": [{"column": "flag", "equals": True}]}, {"flag": 1}, False),  # a boolean is not a number
        ({"all": [{"column": "n", "equals": 1}]}, {"n": True}, False),
        ({"all": [{"column": "tags", "equals": "a"}]}, {"tags": ["a"]}, False),  # a collection equals no scalar
        ({"any": [{"column": "a", "equals": 1}, {"column": "b", "equals": 2}]}, {"a": 0, "b": 2}, True),
        ({"any": [{"column": "a", "equals": 1}, {"column": "b", "equals": 2}]}, {"a": 0, "b": 0}, False),
        ({"none": [{"column": "dept", "equals": "misc"}]}, {"dept": "misc"}, False),
        ({"none": [{"column": "dept", "equals": "misc"}]}, {"dept": "gophers"}, True),
        (
            {"all": [{"column": "dept", "exists": True}], "any": [{"column": "p", "in": [1, 2]}],
             "none": [{"column": "dept", "equals": "misc"}]},
            {"dept": "gophers", "p": 2},
            True,
        ),
    ],
)  # fmt: skip
def test_which_rows_pass(spec: dict[str, Any], row: dict[str, object], kept: bool) -> None:
    assert keeps(spec, row) is kept


def test_the_transform_skips_before_the_hook_and_the_required_check() -> None:
    spec = TransformSpec.model_validate({
        "fields": {"id": {"path": "$.id"}, "dept": {"path": "$.dept"}},
        "required": ["id"],
        "filter": {"all": [{"column": "dept", "equals": "gophers"}]},
    })  # fmt: skip
    transform = compile_transform(spec)

    def record(value: bytes) -> Record:
        return Record("t", 0, 0, 0, value=value)

    assert transform(record(b'{"id": "1", "dept": "gophers"}')) == {"id": "1", "dept": "gophers"}
    assert transform(record(b'{"dept": "misc"}')) is SKIPPED  # filtered out before a missing id counts
    assert isinstance(transform(record(b"not json")), Rejection)  # what cannot be read is still a dead letter


def spec_with(filter_spec: object) -> dict[str, Any]:
    return {
        "apiVersion": "sluice.dev/v1alpha1", "kind": "DataPipeline", "metadata": {"name": "p"},
        "spec": {
            "source": {"bootstrapServers": "k:9092", "topics": ["t"]},
            "transform": {"fields": {"id": {"path": "$.id"}}, "filter": filter_spec},
            "sink": {"contactPoints": ["c"], "keyspace": "k", "table": "t"},
        },
    }  # fmt: skip


@pytest.mark.parametrize(
    ("filter_spec", "message"),
    [
        ({}, "spec.transform.filter: a filter needs at least one test in all, any or none"),
        ({"all": [{"column": "id"}]}, "spec.transform.filter.all[0]: test of 'id' needs exactly one of equals, in"),
        ({"all": [{"column": "id", "equals": 1, "exists": True}]}, "got ['equals', 'exists']"),
        ({"any": [{"column": "nope", "equals": 1}]}, "filter tests 'nope', which is not a column in fields or lookups"),
        ({"all": [{"column": "id", "in": []}]}, "spec.transform.filter.all[0].in: List should have at least 1 item"),
        ({"some": []}, "spec.transform.filter.some: Extra inputs are not permitted"),
    ],
)
def test_a_filter_the_model_refuses_names_the_field(filter_spec: object, message: str) -> None:
    with pytest.raises(PipelineError) as raised:
        parse_pipeline(spec_with(filter_spec))
    assert message in str(raised.value), str(raised.value)
