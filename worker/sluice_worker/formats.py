"""How a message value becomes the document the transforms read: JSON, or Avro or Protobuf in the Confluent wire
format through a schema registry (confluent-kafka's registry client, Avro deserializer and schema id framing)."""

from __future__ import annotations

import base64
import io
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .credentials import registry_login
from .model import SchemaRegistry, SourceSpec
from .transform import Record, RejectionKind

Decoder = Callable[[Record], object]
"""Decodes a record's value (never None: tombstones are not decoded). Raises Undecodable or RegistryUnavailable."""


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
    if source.format == "json":
        return decode_json
    assert source.schema_registry is not None, "validated: avro and protobuf have a registry"
    if source.format == "avro":
        return AvroDecoder(source.schema_registry, credentials_dir)
    return ProtobufDecoder(source.schema_registry, credentials_dir)


def decode_json(record: Record) -> object:
    assert record.value is not None
    try:
        return parse_json(record.value)
    except (ValueError, RecursionError) as error:
        raise Undecodable(f"message value is not valid JSON: {error}", "invalid_json") from None


_decode_text = json.JSONDecoder().decode


def parse_json(value: bytes) -> object:
    """`json.loads(value)`, sparing the common case (an object in UTF-8) its encoding sniffing, which costs a
    third of parsing a small message: a value opening with `{` and no NUL after it is UTF-8 to json.loads too."""
    if value[:1] == b"{" and value[1:2] != b"\x00":
        return _decode_text(value.decode("utf-8", "surrogatepass"))
    return json.loads(value)


class _RegistryDecoder:
    """What Avro and Protobuf values share: the wire format's header, and the schema by its id (cached by the
    client), telling a schema the registry does not have from a registry that does not answer."""

    format_name = ""

    def __init__(self, registry: SchemaRegistry, credentials_dir: Path) -> None:
        from confluent_kafka.schema_registry import SchemaRegistryClient

        config: dict[str, object] = {"url": registry.url, "timeout": registry.timeout_seconds}
        if registry.auth is not None:
            username, password = registry_login(credentials_dir)
            config["basic.auth.user.info"] = f"{username}:{password}"
        self._url, self._config = registry.url, config
        self._client = SchemaRegistryClient(config)

    def _new_client(self) -> Any:
        from confluent_kafka.schema_registry import SchemaRegistryClient

        return SchemaRegistryClient(self._config)

    def _schema_id(self, value: bytes) -> int:
        if len(value) < 6 or value[0] != 0:
            raise Undecodable(
                f"message value is not {self.format_name} in the Confluent wire format (byte 0, a 4-byte schema id, "
                "then the data)",
                "undecodable",
            )
        return int.from_bytes(value[1:5], "big")

    def _registry(self, what: str, call: Callable[[], Any]) -> Any:
        """`call` to the registry; 404: Undecodable naming `what`; any other failure: RegistryUnavailable."""
        from confluent_kafka.schema_registry.error import SchemaRegistryError

        try:
            return call()
        except SchemaRegistryError as error:
            if error.http_status_code == 404:
                raise Undecodable(f"{what} is unknown to the schema registry", "unknown_schema") from None
            raise RegistryUnavailable(
                f"the schema registry at {self._url} answered {error.http_status_code}: {error.error_message}"
            ) from None
        except Exception as error:  # the client's HTTP errors: unreachable, timed out
            raise RegistryUnavailable(f"the schema registry at {self._url} did not answer: {error!r}") from None


class AvroDecoder(_RegistryDecoder):
    """Avro values of any schema the registry holds, by the id each value starts with."""

    format_name = "Avro"

    def __init__(self, registry: SchemaRegistry, credentials_dir: Path) -> None:
        from confluent_kafka.schema_registry.avro import AvroDeserializer

        super().__init__(registry, credentials_dir)
        self._deserialize = AvroDeserializer(self._client)

    def __call__(self, record: Record) -> object:
        value = record.value
        assert value is not None
        schema_id = self._schema_id(value)
        # Fetched (and cached) here: the deserializer then finds it, and the registry's errors are told apart.
        self._registry(f"schema id {schema_id}", lambda: self._client.get_schema(schema_id))
        try:
            # No context: no subject, so the writer schema is the one just fetched by its id (a subject-filtered
            # lookup would miss schemas registered under another naming strategy), and no rule sets run.
            return self._deserialize(value, None)
        except Exception as error:  # the schema is there: the data does not match it
            reason = f"Avro value of schema id {schema_id} cannot be decoded: {error!r}"
            raise Undecodable(reason, "undecodable") from None


class ProtobufDecoder(_RegistryDecoder):
    """Protobuf values of any schema the registry holds: the schema (a FileDescriptorProto, with the files it
    imports) by the value's id, the message by the indexes after it, read into a dict with the field names of the
    .proto and 64-bit integers as numbers."""

    format_name = "Protobuf"

    def __init__(self, registry: SchemaRegistry, credentials_dir: Path) -> None:
        super().__init__(registry, credentials_dir)
        self._classes: dict[tuple[int, tuple[int, ...]], Any] = {}
        # A registry keeps a Protobuf schema as .proto text (Confluent's) or as it was registered, often the
        # serialized form (Apicurio's, which fails `format=serialized` for those). Asked plainly first, then
        # serialized through a client of its own: the client caches a schema by id, whatever the format.
        self._serialized = self._new_client()

    def __call__(self, record: Record) -> object:
        from confluent_kafka.schema_registry.common.serde import SchemaId
        from google.protobuf import json_format
        from google.protobuf.message import DecodeError

        value = record.value
        assert value is not None
        schema_id = self._schema_id(value)
        framing = SchemaId("PROTOBUF")
        try:
            payload = framing.from_bytes(io.BytesIO(value))
        except Exception as error:
            raise Undecodable(f"Protobuf value of schema id {schema_id}: bad message indexes ({error!r})",
                              "undecodable") from None  # fmt: skip
        indexes = tuple(framing.message_indexes or [0])
        message_class = self._classes.get((schema_id, indexes)) or self._message_class(schema_id, indexes)
        message = message_class()
        try:
            message.ParseFromString(payload.read())
        except DecodeError as error:
            reason = f"Protobuf value of schema id {schema_id} cannot be decoded: {error}"
            raise Undecodable(reason, "undecodable") from None
        return json_format.MessageToDict(message, preserving_proto_field_name=True, unquote_int64_if_possible=True)

    def _message_class(self, schema_id: int, indexes: tuple[int, ...]) -> Any:
        from google.protobuf import descriptor_pb2, descriptor_pool
        from google.protobuf.message_factory import GetMessageClass

        what = f"schema id {schema_id}"
        schema = self._registry(what, lambda: self._client.get_schema(schema_id))
        if _decoded(schema.schema_str) is None:  # .proto text: ask for it serialized
            schema = self._registry(what, lambda: self._serialized.get_schema(schema_id, fmt="serialized"))
        pool = descriptor_pool.DescriptorPool()
        self._add_imports(pool, schema, set())
        try:
            root = descriptor_pb2.FileDescriptorProto.FromString(_decoded(schema.schema_str))
            root.name = f"sluice-schema-{schema_id}.proto"
            pool.Add(root)
            message_class = GetMessageClass(pool.FindMessageTypeByName(_message_name(root, indexes)))
        except Undecodable:
            raise
        except Exception as error:
            raise Undecodable(f"Protobuf schema id {schema_id} cannot be used: {error!r}", "undecodable") from None
        self._classes[(schema_id, indexes)] = message_class
        return message_class

    def _add_imports(self, pool: Any, schema: Any, added: set[str]) -> None:
        """The files `schema` imports: Google's well-known types from the runtime, the others from the registry."""
        from google.protobuf import descriptor_pb2, descriptor_pool

        for reference in schema.references or []:
            if reference.name in added:
                continue
            added.add(reference.name)
            try:  # google/protobuf/timestamp.proto and the like: the runtime has them
                pool.AddSerializedFile(descriptor_pool.Default().FindFileByName(reference.name).serialized_pb)
                continue
            except KeyError:
                pass
            subject, number = reference.subject, reference.version
            what = f"the schema {subject} version {number} (imported as {reference.name})"
            version = self._registry(what, lambda: self._client.get_version(subject, number, True))  # noqa: B023
            if _decoded(version.schema.schema_str) is None:
                version = self._registry(
                    what,
                    lambda: self._serialized.get_version(subject, number, True, "serialized"),  # noqa: B023
                )
            self._add_imports(pool, version.schema, added)
            imported = descriptor_pb2.FileDescriptorProto.FromString(
                base64.standard_b64decode(version.schema.schema_str)
            )
            imported.name = reference.name
            pool.Add(imported)


def _message_name(file: Any, indexes: tuple[int, ...]) -> str:
    """The full name of the message the indexes point at: the n-th top-level message, then its nested ones."""
    messages, path = file.message_type, []
    for index in indexes:
        if not 0 <= index < len(messages):
            raise Undecodable(f"message index {index} is not in the Protobuf schema", "undecodable")
        path.append(messages[index].name)
        messages = messages[index].nested_type
    return ".".join([file.package, *path] if file.package else path)


def _decoded(schema_str: str) -> bytes | None:
    """The FileDescriptorProto of a Protobuf schema served serialized (base64); None for .proto text."""
    try:
        return base64.b64decode(schema_str, validate=True)
    except ValueError:  # binascii.Error: not base64, so .proto text ("syntax = ...")
        return None
