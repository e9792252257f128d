"""source.format: the model's rules for Avro and its schema registry, the registry's Secret, JSON decoding."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from sluice_worker.credentials import secret_items
from sluice_worker.formats import Undecodable, decode_json
from sluice_worker.manifest import load_pipeline
from sluice_worker.model import PipelineError, SourceSpec, parse_pipeline
from sluice_worker.transform import Record

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "gophers-r-us-avro.yaml"


def source(**changes: Any) -> SourceSpec:
    return SourceSpec.model_validate({"bootstrapServers": "k:9092", "topics": ["t"], **changes})


def test_avro_needs_a_registry_and_only_avro_uses_one() -> None:
    assert source().format == "json"
    assert source(format="avro", schemaRegistry={"url": "http://r:8081"}).schema_registry is not None
    with pytest.raises(ValueError, match="formats avro and protobuf need schemaRegistry, and only they use one"):
        source(format="avro")
    with pytest.raises(ValueError, match="formats avro and protobuf need schemaRegistry"):
        source(schemaRegistry={"url": "http://r:8081"})
    with pytest.raises(ValueError, match="url"):
        source(format="avro", schemaRegistry={"url": "r:8081"})  # no scheme


def test_the_registry_login_is_mounted_from_its_secret() -> None:
    spec = load_pipeline(EXAMPLE).spec
    registry = {"url": "http://r:8081", "auth": {"secret": "registry-login"}}
    spec = spec.model_copy(update={"source": source(format="avro", schemaRegistry=registry)})
    items = [(i.secret, i.key, i.path, i.field) for i in secret_items(spec)]
    assert items == [
        ("registry-login", "username", "registry/username", "spec.source.schemaRegistry.auth.usernameKey"),
        ("registry-login", "password", "registry/password", "spec.source.schemaRegistry.auth.passwordKey"),
    ]


def test_the_avro_example_loads() -> None:
    pipeline = load_pipeline(EXAMPLE)
    assert pipeline.spec.source.format == "avro"


def test_json_that_does_not_parse_is_undecodable_naming_why() -> None:
    assert decode_json(Record("t", 0, 0, 0, value=b'{"a": 1}')) == {"a": 1}
    with pytest.raises(Undecodable) as raised:
        decode_json(Record("t", 0, 0, 0, value=b"{nope"))
    assert raised.value.kind == "invalid_json" and raised.value.reason.startswith("message value is not valid JSON")


def test_a_bad_spec_names_the_field() -> None:
    manifest = yaml.safe_load(EXAMPLE.read_text())
    del manifest["spec"]["source"]["schemaRegistry"]
    with pytest.raises(PipelineError) as raised:
        parse_pipeline(manifest)
    assert str(raised.value) == "spec.source: formats avro and protobuf need schemaRegistry, and only they use one"


TEXT = '{"id": "g-1", "name": "gopher \u00e9 \U0001f600", "n": 123456789012345678901234567890}'


@pytest.mark.parametrize(
    "value",
    [
        TEXT.encode(),
        b"  " + TEXT.encode(),  # not opening with {: json.loads' own way
        b"[1, 2]",
        b'{"lone": "\xed\xa0\x80"}',  # a lone surrogate, as json.loads lets through ('surrogatepass')
        TEXT.encode("utf-16-le"),  # UTF-16 and -32, with and without a byte order mark, and UTF-8's
        TEXT.encode("utf-16"),
        TEXT.encode("utf-32-be"),
        TEXT.encode("utf-32"),
        b"\xef\xbb\xbf" + TEXT.encode(),
        b"{\x00",
        b"{}",
    ],
)
def test_json_values_decode_as_json_loads_decodes_them(value: bytes) -> None:
    try:
        expected: object = json.loads(value)
    except ValueError as error:
        with pytest.raises(Undecodable, match=re.escape(str(error))):
            decode_json(Record("t", 0, 0, 0, value=value))
        return
    assert decode_json(Record("t", 0, 0, 0, value=value)) == expected


@pytest.mark.parametrize("value", [b'{"a": "\xff"}', b'{"a": 1', b"{\x00\x00\x00"])
def test_a_value_json_loads_refuses_is_refused_with_its_reason(value: bytes) -> None:
    with pytest.raises(ValueError) as expected:
        json.loads(value)
    with pytest.raises(Undecodable, match=re.escape(str(expected.value))):
        decode_json(Record("t", 0, 0, 0, value=value))
