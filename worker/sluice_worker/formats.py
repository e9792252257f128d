"""How a message value becomes the document the transforms read: JSON, or Avro in the Confluent wire format
through a schema registry (confluent-kafka's own deserializer and registry client)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from .credentials import registry_login
from .model import SchemaRegistry, SourceSpec
from .transform import Record, RejectionKind

Decoder = Callable[[Record], object]
"""Decodes a record's value (never None: tombstones are not decoded). Raises Undecodable or RegistryUnavailable."""

REGISTRY_TIMEOUT_SECONDS = 5.0


class Undecodable(Exception):
    """A value that cannot be decoded, whatever happens later: the message goes to the dead letters."""

    def __init__(self, reason: str, kind: RejectionKind) -> None:
        super().__init__(reason)
        self.reason, self.kind = reason, kind


class RegistryUnavailable(Exception):
    """The schema registry did not answer as it should (down, slow, refusing the login): nothing is wrong with the
    message, so it is read again once the registry answers."""


def decoder_for(source: SourceSpec, credentials_dir: Path) -> Decoder:
    """The decoder of `source.format`."""
    if source.format == "avro":
        assert source.schema_registry is not None, "validated: avro has a registry"
        return AvroDecoder(source.schema_registry, credentials_dir)
    return decode_json


def decode_json(record: Record) -> object:
    assert record.value is not None
    try:
        return json.loads(record.value)
    except (ValueError, RecursionError) as error:
        raise Undecodable(f"message value is not valid JSON: {error}", "invalid_json") from None


class AvroDecoder:
    """Avro values of any schema the registry holds, by the id each value starts with; schemas are cached."""

    def __init__(self, registry: SchemaRegistry, credentials_dir: Path) -> None:
        from confluent_kafka.schema_registry import SchemaRegistryClient
        from confluent_kafka.schema_registry.avro import AvroDeserializer

        config: dict[str, object] = {"url": registry.url, "timeout": REGISTRY_TIMEOUT_SECONDS}
        if registry.auth is not None:
            username, password = registry_login(credentials_dir)
            config["basic.auth.user.info"] = f"{username}:{password}"
        self._url = registry.url
        self._client = SchemaRegistryClient(config)
        self._deserialize = AvroDeserializer(self._client)

    def __call__(self, record: Record) -> object:
        from confluent_kafka.schema_registry.error import SchemaRegistryError

        value = record.value
        assert value is not None
        if len(value) < 6 or value[0] != 0:
            raise Undecodable(
                "message value is not Avro in the Confluent wire format (byte 0, a 4-byte schema id, then the data)",
                "undecodable",
            )
        schema_id = int.from_bytes(value[1:5], "big")
        try:
            self._client.get_schema(schema_id)  # cached after the first time: the registry's errors come from here
        except SchemaRegistryError as error:
            if error.http_status_code == 404:
                raise Undecodable(
                    f"schema id {schema_id} is unknown to the schema registry", "unknown_schema"
                ) from None
            raise RegistryUnavailable(
                f"the schema registry at {self._url} answered {error.http_status_code}: {error.error_message}"
            ) from None
        except Exception as error:  # the client's HTTP errors: unreachable, timed out
            raise RegistryUnavailable(f"the schema registry at {self._url} did not answer: {error!r}") from None
        try:
            # No context: no subject, so the writer schema is the one just fetched by its id (a subject-filtered
            # lookup would miss schemas registered under another naming strategy), and no rule sets run.
            return self._deserialize(value, None)
        except Exception as error:  # the schema is there: the data does not match it
            raise Undecodable(
                f"Avro value of schema id {schema_id} cannot be decoded: {error!r}", "undecodable"
            ) from None
