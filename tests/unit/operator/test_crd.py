"""The CRD generated from the pydantic models: committed as generated, structural, defaults as the model's."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import pytest
import yaml
from pydantic import BaseModel, Field
from sluice_operator.crd import CRD_FILE, RULES, SchemaError, build_crd, render_crd, spec_schema, structural
from sluice_worker.model import parse_pipeline, parse_spec

REPO = Path(__file__).resolve().parents[3]
EXAMPLE = REPO / "examples" / "gophers-r-us.yaml"
SCALAR_TYPES = {"string", "integer", "boolean", "number"}


def test_the_committed_crd_is_the_generated_one() -> None:
    committed = (REPO / CRD_FILE).read_text()
    assert committed == render_crd(), "crds/ is stale: run `make crds` and commit the result"


def nodes(schema: dict[str, Any], path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    """Every schema node with its path (`.a.b`, `[]` for items, `{}` for map values)."""
    yield path, schema
    for name, sub in schema.get("properties", {}).items():
        yield from nodes(sub, f"{path}.{name}")
    if isinstance(schema.get("items"), dict):
        yield from nodes(schema["items"], f"{path}[]")
    if isinstance(schema.get("additionalProperties"), dict):
        yield from nodes(schema["additionalProperties"], f"{path}{{}}")


def openapi() -> dict[str, Any]:
    schema: dict[str, Any] = build_crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return schema


def test_the_schema_is_structural() -> None:
    for path, node in nodes(openapi()):
        assert not {"$ref", "$defs", "anyOf", "oneOf", "allOf", "title", "const"} & set(node), path
        typed = (
            node.get("type")
            or node.get("x-kubernetes-preserve-unknown-fields")
            or node.get("x-kubernetes-int-or-string")
        )
        assert typed, f"{path} has no type"
        if "properties" in node:
            assert "additionalProperties" not in node, path


def test_every_field_is_described() -> None:
    undescribed = [
        path
        for path, node in nodes(openapi())
        if path.startswith((".spec", ".status")) and not path.endswith(("[]", "{}")) and not node.get("description")
    ]
    assert undescribed == []


def test_the_constraints_of_the_model_are_kept() -> None:
    spec = spec_schema()
    source, sink = spec["properties"]["source"], spec["properties"]["sink"]
    assert source["properties"]["topics"]["minItems"] == 1
    assert source["properties"]["topics"]["items"]["pattern"] == r"^[A-Za-z0-9._-]{1,249}$"
    assert sink["properties"]["consistency"]["enum"][:2] == ["ANY", "ONE"]
    assert sink["properties"]["ttlSeconds"] == {
        "type": "integer",
        "description": "Unset: rows never expire.",
        "minimum": 1,
        "maximum": 630_720_000,
    }
    assert spec["properties"]["replicas"]["minimum"] == 0
    assert sink["required"] == ["contactPoints", "keyspace"]  # table: unless spec.tables (a CEL rule)
    assert spec["properties"]["tables"]["items"]["required"] == ["table", "transform"]
    assert sink["properties"]["createTable"]["properties"]["columns"]["additionalProperties"]["type"] == "string"


def apply_defaults(schema: dict[str, Any], value: Any) -> Any:
    """What the API server does: fill in missing fields that have a default, from the top down."""
    if not isinstance(value, dict):
        return value
    out = dict(value)
    for name, sub in schema.get("properties", {}).items():
        if name not in out and "default" in sub:
            out[name] = copy.deepcopy(sub["default"])
        if name in out:
            out[name] = apply_defaults(sub, out[name])
    if isinstance(schema.get("additionalProperties"), dict):
        out = {key: apply_defaults(schema["additionalProperties"], item) for key, item in out.items()}
    return out


def test_the_defaults_are_the_models() -> None:
    spec = yaml.safe_load(EXAMPLE.read_text())["spec"]
    for optional in ("delivery", "replicas"):
        del spec[optional]
    defaulted = apply_defaults(spec_schema(), spec)
    assert defaulted["delivery"]["retryBackoff"] == {"initialMs": 100, "maxMs": 30000}
    assert {"delivery", "replicas", "paused", "terminationGracePeriodSeconds", "resources"} <= set(defaulted)
    assert parse_spec(defaulted) == parse_spec(spec)  # the model reads the same pipeline either way


def test_every_rule_is_attached_where_its_path_points() -> None:
    spec = spec_schema()
    for path, rules in RULES.items():
        node = spec
        for part in filter(None, path.split(".")):
            node = (
                node["additionalProperties"]
                if part == "*"
                else node["items"]
                if part == "[]"
                else node["properties"][part]
            )
        assert node["x-kubernetes-validations"] == rules
        for rule in rules:
            assert rule["message"] and "rule" in rule


def test_the_crd_names_subresources_and_columns() -> None:
    crd = build_crd()
    names = crd["spec"]["names"]
    assert (names["kind"], names["plural"], names["shortNames"], names["categories"]) == (
        "DataPipeline",
        "datapipelines",
        ["dp"],
        ["sluice"],
    )
    version = crd["spec"]["versions"][0]
    assert version["subresources"]["scale"] == {
        "specReplicasPath": ".spec.replicas",
        "statusReplicasPath": ".status.replicas",
        "labelSelectorPath": ".status.selector",
    }
    columns = [c["name"] for c in version["additionalPrinterColumns"] if not c.get("priority")]
    assert columns == ["Ready", "Reason", "Replicas", "Available", "Lag", "Topics", "Age"]  # Reason: why not Ready
    conditions = version["schema"]["openAPIV3Schema"]["properties"]["status"]["properties"]["conditions"]
    assert (conditions["x-kubernetes-list-type"], conditions["x-kubernetes-list-map-keys"]) == ("map", ["type"])


def test_the_sample_passes_the_model_that_made_the_schema() -> None:
    assert parse_pipeline(yaml.safe_load(EXAMPLE.read_text())).metadata.name == "gophers-r-us"


class _Const(BaseModel):
    kind: str = Field(json_schema_extra={"const": "x"})


class _Union(BaseModel):
    value: int | list[int]


@pytest.mark.parametrize("model", [_Const, _Union])
def test_what_a_structural_schema_cannot_say_is_an_error(model: type[BaseModel]) -> None:
    with pytest.raises(SchemaError):
        structural(model)


class _Scalars(BaseModel):
    """Doc."""

    value: str | bool | None = Field(default=None, description="Either.")
    count: int | Annotated[str, Field(pattern="^[0-9]+%$")] | None = Field(default=None, description="Or percent.")
    above: float = Field(default=1.0, gt=0, description="Positive.")


def test_scalar_unions_keep_unknown_fields_and_exclusive_bounds_are_openapi_v3() -> None:
    schema = structural(_Scalars)
    assert schema["properties"]["value"] == {"description": "Either.", "x-kubernetes-preserve-unknown-fields": True}
    assert schema["properties"]["count"] == {  # as a PodDisruptionBudget's maxUnavailable
        "description": "Or percent.", "x-kubernetes-int-or-string": True, "pattern": "^[0-9]+%$"
    }  # fmt: skip
    above = schema["properties"]["above"]
    assert (above["minimum"], above["exclusiveMinimum"]) == (0, True)
    assert set(above) - {"type", "description", "default", "minimum", "exclusiveMinimum"} == set()
    assert above["type"] in SCALAR_TYPES
