"""The DataPipeline CRD, generated from the pydantic models: `python -m sluice_operator.crd -o FILE` writes it."""

from __future__ import annotations

import argparse
import copy
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

import yaml
from pydantic import BaseModel
from sluice_worker.model import KIND, DataPipeline, PipelineSpec

from .api import CRD_NAME, GROUP, PLURAL, VERSION
from .status import PipelineStatus

CRD_FILE: Final = Path("crds") / f"{CRD_NAME}.yaml"

Schema = dict[str, Any]

# JSON-schema keywords that mean the same in a Kubernetes structural schema (OpenAPI v3.0 subset).
_KEPT = frozenset({
    "type", "description", "enum", "default", "format", "pattern", "minimum", "maximum", "minLength",
    "maxLength", "minItems", "maxItems", "minProperties", "maxProperties", "required", "nullable",
})  # fmt: skip
_DROPPED = frozenset({"title"})

_DNS_LABEL = "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"


def _is_column(transform: str, column: str) -> str:
    """CEL: `column` is a column of the transform at `transform` (a field or a lookup)."""
    return (
        f"((has({transform}.fields) && {column} in {transform}.fields) || "
        f"(has({transform}.lookups) && {column} in {transform}.lookups))"
    )


def _key_columns_cover(transform: str, table: str) -> str:
    """CEL: every primary key column of createTable at `table` is one a tombstone still has (a field not read
    from the value, or a lookup of one)."""
    fields, lookups = f"{transform}.fields", f"{transform}.lookups"
    from_record = f"(has({fields}) && k in {fields} && {fields}[k].source != 'value')"
    looked_up = (f"(has({lookups}) && k in {lookups} && has({fields}) && {lookups}[k].field in {fields} && "
                 f"{fields}[{lookups}[k].field].source != 'value')")  # fmt: skip
    return f"{table}.primaryKey.all(k, {from_record} || {looked_up})"


def _table_rules(transform: str, options: str, where: str) -> list[Schema]:
    """The CEL of one table's options and mapping: the one-table form (transform, sink) or an entry of tables."""
    return [
        {
            "rule": f"!has({options}.ttlFrom) || {_is_column(transform, options + '.ttlFrom.column')}",
            "message": f"{where}ttlFrom.column must be a column of the transform's fields or lookups",
        },
        {
            "rule": f"!has({options}.writeTimestampFrom) || "
            f"{_is_column(transform, options + '.writeTimestampFrom.column')}",
            "message": f"{where}writeTimestampFrom.column must be a column of the transform's fields or lookups",
        },
        {
            "rule": f"{transform}.tombstones != 'delete' || !has({options}.createTable) || "
            + _key_columns_cover(transform, f"{options}.createTable"),
            "message": "transform.tombstones is delete: every primary key column must be read from the key, a header "
            "or the record (a tombstone has no value to read it from)",
        },
    ]


# The one-table form's rules hold where it is used: with transform set.
_ONE_TABLE_RULES = [
    {**rule, "rule": f"!has(self.transform) || ({rule['rule']})"}
    for rule in _table_rules("self.transform", "self.sink", "sink.")
]

# What the schema alone cannot say, as CEL, by path under `spec` (`*`: each value of a map, `[]`: each item of a
# list). The rest of the model's checks (e.g. consumerConfig keys, lookups of unknown fields, tables' topics)
# give the InvalidSpec condition instead.
RULES: Final[dict[str, list[Schema]]] = {
    "": [
        {
            "rule": "self.delivery.shutdownMarginSeconds < self.terminationGracePeriodSeconds",
            "message": "delivery.shutdownMarginSeconds must be less than terminationGracePeriodSeconds",
        },
        {
            "rule": "has(self.tables) && size(self.tables) > 0 ? !has(self.transform) && !has(self.sink.table) "
            ": has(self.transform) && has(self.sink.table)",
            "message": "set transform and sink.table (one table), or tables (several), not both",
        },
        {
            "rule": "!has(self.tables) || size(self.tables) == 0 || "
            "!(has(self.sink.ttlFrom) || has(self.sink.writeTimestampFrom) || has(self.sink.createTable))",
            "message": "sink.ttlFrom, writeTimestampFrom and createTable name columns of one table: with tables, "
            "set them in each of tables",
        },
        *_ONE_TABLE_RULES,
    ],
    "tables.[]": [
        *_table_rules("self.transform", "self", ""),
        {
            "rule": "!has(self.writeTimestampFrom) || !has(self.useRecordTimestamp) || self.useRecordTimestamp",
            "message": "writeTimestampFrom sets the write time: useRecordTimestamp false would contradict it",
        },
    ],
    "source": [
        {
            "rule": "!has(oldSelf.groupId) || (has(self.groupId) && self.groupId == oldSelf.groupId)",
            "message": "groupId is immutable once set: a new group would lose the committed offsets",
            "fieldPath": ".groupId",
        },
        {
            "rule": "self.securityProtocol.startsWith('SASL_') == (has(self.saslMechanism) && has(self.credentials))"
            " && (self.securityProtocol.startsWith('SASL_') || !(has(self.saslMechanism) || has(self.credentials)))",
            "message": "securityProtocol SASL_PLAINTEXT and SASL_SSL need saslMechanism and credentials; "
            "other protocols allow neither",
        },
        {
            "rule": "!(has(self.tls) || has(self.auth)) || (self.securityProtocol == 'PLAINTEXT' && "
            "!has(self.saslMechanism) && !has(self.sslCaLocation) && !has(self.credentials))",
            "message": "tls and auth replace securityProtocol, saslMechanism, sslCaLocation and credentials "
            "(the protocol follows from them); use one style",
        },
        {
            "rule": "(self.format != 'json') == has(self.schemaRegistry)",
            "message": "formats avro and protobuf need schemaRegistry, and only they use one",
        },
        {
            "rule": "!has(self.sslCaLocation) || self.securityProtocol.endsWith('SSL')",
            "message": "sslCaLocation needs securityProtocol SSL or SASL_SSL",
            "fieldPath": ".sslCaLocation",
        },
    ],
    "source.auth": [
        {
            "rule": "(self.mechanism == 'OAUTHBEARER') == has(self.tokenEndpoint)",
            "message": "tokenEndpoint is required with mechanism OAUTHBEARER, and only allowed with it",
        },
        {
            "rule": "!has(self.scope) || self.mechanism == 'OAUTHBEARER'",
            "message": "scope is only allowed with mechanism OAUTHBEARER",
        },
    ],
    "transform": [{
        "rule": "(has(self.fields) && size(self.fields) > 0) || has(self.python)",
        "message": "fields must map at least one column, unless python builds the row",
    }],
    "transform.fields.*": [
        {
            "rule": "(self.source == 'value') == has(self.path)",
            "message": "path is required with source 'value', and only allowed with it",
        },
        {
            "rule": "(self.source == 'header') == has(self.header)",
            "message": "header is required with source 'header', and only allowed with it",
        },
    ],
    "sink": [
        {
            "rule": "!(has(self.auth) && has(self.credentials))",
            "message": "set auth (a Secret) or credentials (environment variables), not both",
        },
        {
            "rule": "!has(self.writeTimestampFrom) || self.useRecordTimestamp",
            "message": "writeTimestampFrom sets the write time: useRecordTimestamp false would contradict it",
        },
    ],
    "sink.keyspace": [{"rule": "self == oldSelf", "message": "keyspace is immutable: create a new pipeline"}],
    "sink.table": [{"rule": "self == oldSelf", "message": "table is immutable: create a new pipeline"}],
    "sink.createTable.replication": [{
        "rule": "(self.strategy == 'NetworkTopologyStrategy') == (has(self.datacenters) && size(self.datacenters) > 0)",
        "message": "datacenters are required with NetworkTopologyStrategy, and only allowed with it",
    }],
    "template.labels": [{
        "rule": "self.all(k, !k.startsWith('app.kubernetes.io/') && !k.startsWith('sluice.dev/'))",
        "message": "labels may not be app.kubernetes.io/* or sluice.dev/*: the operator sets those",
    }],
    "disruptionBudget": [{
        "rule": "has(self.maxUnavailable) != has(self.minAvailable)",
        "message": "set exactly one of maxUnavailable and minAvailable",
    }],
    "autoscaling": [{
        "rule": "!has(self.maxReplicas) || self.minReplicas <= self.maxReplicas",
        "message": "minReplicas must not exceed maxReplicas",
        "fieldPath": ".minReplicas",
    }],
    "delivery.retryBackoff": [{
        "rule": "self.initialMs <= self.maxMs",
        "message": "initialMs must not exceed maxMs",
    }],
}  # fmt: skip

# Schema changes by path under `spec` (a None value removes the key): topics are a set (duplicates refused,
# merged as a set); resources are Kubernetes quantities, written as a number or a string as in a pod spec.
QUANTITY: Final = r"^[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)(([KMGTPE]i)|[numkMGTPE]|([eE][+-]?[0-9]+))?$"
_QUANTITY_VALUE: Final[Schema] = {"type": None, "x-kubernetes-int-or-string": True, "pattern": QUANTITY}
EXTENSIONS: Final[dict[str, Schema]] = {
    "source.topics": {"x-kubernetes-list-type": "set"},
    "resources.requests.*": _QUANTITY_VALUE,
    "resources.limits.*": _QUANTITY_VALUE,
}


class SchemaError(ValueError):
    """A part of a pydantic JSON schema with no structural-schema equivalent."""


def structural(model: type[BaseModel], *, defaults: bool = True) -> Schema:
    """The model's JSON schema as a Kubernetes structural schema: $refs inlined, titles dropped, ..."""
    raw = model.model_json_schema(by_alias=True)
    definitions = raw.pop("$defs", {})
    return _convert(raw, definitions, defaults)


def _resolve(node: Schema, definitions: Mapping[str, Schema]) -> Schema:
    """A `$ref` node merged with its definition; the field's description comes before the model's."""
    if "$ref" not in node:
        return node
    target = definitions[node["$ref"].rsplit("/", 1)[-1]]
    merged = {**target, **{k: v for k, v in node.items() if k != "$ref"}}
    described = [d for d in (node.get("description"), target.get("description")) if d]
    if described:
        merged["description"] = " ".join(dict.fromkeys(described))
    return merged


def _convert(node: Schema, definitions: Mapping[str, Schema], defaults: bool) -> Schema:
    node = _resolve(node, definitions)
    if "anyOf" in node:
        branches = [b for b in node["anyOf"] if b != {"type": "null"}]
        rest = {k: v for k, v in node.items() if k != "anyOf"}
        if rest.get("default", 0) is None:
            del rest["default"]  # unset is how "null" is written; null values are pruned
        if len(branches) == 1:
            return _convert({**branches[0], **rest}, definitions, defaults)
        branches = [_resolve(b, definitions) for b in branches]
        if sorted(b.get("type") for b in branches) == ["integer", "string"]:  # a count or e.g. a percentage
            checks = {k: v for b in branches for k, v in b.items() if k in ("pattern", "minimum", "maximum")}
            return {**_convert(rest, definitions, defaults), "x-kubernetes-int-or-string": True, **checks}
        if all(b.get("type") in ("string", "integer", "boolean", "number") for b in branches):
            return {**_convert(rest, definitions, defaults), "x-kubernetes-preserve-unknown-fields": True}
        raise SchemaError(f"a union of {branches} has no structural equivalent")
    out: Schema = {}
    for key, value in node.items():
        if key in _DROPPED or (key == "additionalProperties" and value is False):
            continue
        if key == "additionalProperties" and value is True:  # a free-form object: only as preserved fields
            if not node.get("x-kubernetes-preserve-unknown-fields"):
                raise SchemaError("an object of any keys needs x-kubernetes-preserve-unknown-fields")
            continue
        if key == "properties":
            out[key] = {name: _convert(sub, definitions, defaults) for name, sub in value.items()}
        elif key in ("items", "additionalProperties"):
            out[key] = _convert(value, definitions, defaults)
        elif key == "exclusiveMinimum" or key == "exclusiveMaximum":
            out["minimum" if key == "exclusiveMinimum" else "maximum"] = value
            out[key] = True
        elif key == "default":
            if defaults:
                out[key] = _without_nulls(value)  # an object's in full: the API server checks it with the CEL
        elif key in _KEPT or key.startswith("x-kubernetes-"):
            out[key] = copy.deepcopy(value)
        else:
            raise SchemaError(f"JSON-schema keyword {key!r} has no structural equivalent")
    return _ordered(out)


def _without_nulls(value: Any) -> Any:
    """A default with its null members left out: unset is how null is written."""
    if isinstance(value, dict):
        return {key: _without_nulls(item) for key, item in value.items() if item is not None}
    return copy.deepcopy(value)


_FIRST = ("type", "description", "format", "enum", "default", "nullable")
_LAST = ("required", "properties", "additionalProperties", "items")


def _ordered(node: Schema) -> Schema:
    """Keys in a readable order: type and description first, nested schemas and CEL rules last."""
    rank = {key: i for i, key in enumerate(_FIRST)} | {key: 100 + i for i, key in enumerate(_LAST)}
    return dict(sorted(node.items(), key=lambda kv: rank.get(kv[0], 200 if kv[0].startswith("x-") else 50)))


def _at(schema: Schema, path: str) -> Schema:
    node = schema
    for part in filter(None, path.split(".")):
        node = (
            node["additionalProperties"] if part == "*" else node["items"] if part == "[]" else node["properties"][part]
        )
    return node


def spec_schema() -> Schema:
    """The `spec` schema: the model's, with the CEL rules and extensions attached."""
    schema = structural(PipelineSpec)
    for path, extensions in EXTENSIONS.items():
        node = _at(schema, path)
        node.update(extensions)
        for key in [key for key, value in extensions.items() if value is None]:
            del node[key]
    for path, rules in RULES.items():
        _at(schema, path)["x-kubernetes-validations"] = copy.deepcopy(rules)
    return schema


def status_schema() -> Schema:
    return structural(PipelineStatus, defaults=False)


def _ready(field: str) -> str:
    return f'.status.conditions[?(@.type=="Ready")].{field}'


PRINTER_COLUMNS: Final = [
    {"name": "Ready", "type": "string", "jsonPath": _ready("status"), "description": "The Ready condition."},
    {"name": "Reason", "type": "string", "jsonPath": _ready("reason"), "description": "Why Ready is what it is."},
    {"name": "Replicas", "type": "integer", "jsonPath": ".spec.replicas", "description": "Desired workers."},
    {"name": "Available", "type": "integer", "jsonPath": ".status.availableReplicas",
     "description": "Available workers."},
    {"name": "Lag", "type": "integer", "jsonPath": ".status.lag",
     "description": "Messages the consumer group has not committed."},
    {"name": "Topics", "type": "string", "jsonPath": ".spec.source.topics", "description": "Source topics."},
    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
    {"name": "Paused", "type": "boolean", "jsonPath": ".spec.paused", "priority": 1},
    {"name": "Autoscaling", "type": "boolean", "jsonPath": ".spec.autoscaling.enabled", "priority": 1},
    {"name": "Partitions", "type": "integer", "jsonPath": ".status.partitions", "priority": 1},
    {"name": "Msgs/s", "type": "number", "jsonPath": ".status.throughput", "priority": 1,
     "description": "Messages per second the group committed lately."},
]  # fmt: skip


def build_crd() -> Schema:
    """The CustomResourceDefinition manifest."""
    root = {
        "type": "object",
        "description": DataPipeline.__doc__,
        "required": ["spec"],
        "properties": {
            "apiVersion": {"type": "string", "description": "sluice.dev/v1alpha1"},
            "kind": {"type": "string", "description": KIND},
            "metadata": {"type": "object"},
            "spec": spec_schema(),
            "status": status_schema(),
        },
        "x-kubernetes-validations": [{
            "rule": f"self.metadata.name.matches('{_DNS_LABEL}') && size(self.metadata.name) <= 63",
            "message": "metadata.name must be a DNS label (at most 63 of a-z, 0-9 and -): "
            "it names the worker Deployment and labels its pods",
        }],
    }  # fmt: skip
    version = {
        "name": VERSION,
        "served": True,
        "storage": True,
        "schema": {"openAPIV3Schema": root},
        "subresources": {
            "status": {},
            "scale": {
                "specReplicasPath": ".spec.replicas",
                "statusReplicasPath": ".status.replicas",
                "labelSelectorPath": ".status.selector",
            },
        },
        "additionalPrinterColumns": PRINTER_COLUMNS,
    }
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": CRD_NAME},
        "spec": {
            "group": GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": KIND,
                "listKind": f"{KIND}List",
                "plural": PLURAL,
                "singular": KIND.lower(),
                "shortNames": ["dp"],
                "categories": ["sluice"],
            },
            "versions": [version],
        },
    }


HEADER = "# Generated by `make crds` (python -m sluice_operator.crd) from the pydantic models. Do not edit.\n"


def render_crd() -> str:
    """The CRD as the YAML committed in crds/."""
    return HEADER + yaml.safe_dump(build_crd(), sort_keys=False, width=110, allow_unicode=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sluice_operator.crd", description=__doc__)
    parser.add_argument("-o", "--output", type=Path, help="file to write (default: stdout)")
    args = parser.parse_args(argv)
    text = render_crd()
    if args.output is None:
        sys.stdout.write(text)
    else:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
