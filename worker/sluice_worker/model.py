"""The typed DataPipeline: the one model the worker reads, the operator builds from and the CRD is made of.

Values in, values out: no I/O here (`sluice_worker.manifest` reads manifests from YAML and files)."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Annotated, Any, Final, Literal, TypeVar

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_camel
from pydantic_core import ErrorDetails

API_VERSION: Final = "sluice.dev/v1alpha1"
KIND: Final = "DataPipeline"
CASSANDRA_PORT = 9042

# librdkafka settings the worker sets itself (offset commits only after durable writes, group membership,
# security from the typed fields) or that are Python callbacks; consumerConfig may not override them.
WORKER_OWNED_CONSUMER_KEYS = frozenset({
    "bootstrap.servers", "group.id", "group.instance.id", "partition.assignment.strategy",
    "enable.auto.commit", "enable.auto.offset.store", "auto.offset.reset", "enable.partition.eof",
    "security.protocol", "sasl.mechanism", "sasl.mechanisms", "sasl.username", "sasl.password",
    "ssl.ca.location", "ssl.ca.pem", "ssl.certificate.location", "ssl.certificate.pem", "ssl.key.location",
    "ssl.key.pem", "ssl.key.password", "ssl.endpoint.identification.algorithm",
    "on_commit", "error_cb", "throttle_cb", "stats_cb", "oauth_cb", "logger",
    "session.timeout.ms", "heartbeat.interval.ms",
})  # fmt: skip
# Where a consumerConfig key the worker owns is set instead, when the spec has a field for it.
SPEC_FIELD_OF_CONSUMER_KEY = {
    **dict.fromkeys(
        (
            "ssl.ca.location",
            "ssl.ca.pem",
            "ssl.certificate.location",
            "ssl.certificate.pem",
            "ssl.key.location",
            "ssl.key.pem",
            "ssl.key.password",
            "ssl.endpoint.identification.algorithm",
        ),
        "spec.source.tls (certificates from Secrets)",
    ),
    **dict.fromkeys(
        (
            "sasl.mechanism",
            "sasl.mechanisms",
            "sasl.username",
            "sasl.password",
            "sasl.oauthbearer.method",
            "sasl.oauthbearer.client.id",
            "sasl.oauthbearer.client.secret",
            "sasl.oauthbearer.token.endpoint.url",
            "sasl.oauthbearer.scope",
        ),
        "spec.source.auth (a login from a Secret)",
    ),
    "session.timeout.ms": "spec.source.sessionTimeoutMs",
    "heartbeat.interval.ms": "spec.source.sessionTimeoutMs (the heartbeat is a fifth of it)",
}

_SEGMENT = r"[A-Za-z0-9_-]+(\[[0-9]+\])*"
CQL_IDENTIFIER_PATTERN = r"^[a-z][a-z0-9_]{0,47}$"

CqlIdentifier = Annotated[str, Field(pattern=CQL_IDENTIFIER_PATTERN)]
TopicName = Annotated[str, Field(pattern=r"^[A-Za-z0-9._-]{1,249}$")]
EnvVarName = Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")]
HostPort = Annotated[str, Field(pattern=r"^[A-Za-z0-9.-]+(:[0-9]{1,5})?$")]
DnsLabel = Annotated[str, Field(pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", max_length=63)]
DnsSubdomain = Annotated[
    str, Field(pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$", max_length=253)
]
JsonPath = Annotated[str, Field(pattern=rf"^(\$(\[[0-9]+\])*(\.{_SEGMENT})*|{_SEGMENT}(\.{_SEGMENT})*)$")]
PythonReference = Annotated[str, Field(pattern=r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*$")]

StartFrom = Literal["earliest", "latest"]
SecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
SaslMechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "OAUTHBEARER"]
FieldSource = Literal["value", "key", "header", "topic", "partition", "offset", "timestamp"]
TombstoneAction = Literal["deadLetter", "skip", "delete"]
ValueFormat = Literal["json", "avro", "protobuf"]
CqlType = Literal[
    "text", "ascii", "varchar", "tinyint", "smallint", "int", "bigint", "varint", "float", "double",
    "decimal", "boolean", "timestamp", "date", "uuid", "timeuuid", "blob",
]  # fmt: skip
Consistency = Literal[
    "ANY", "ONE", "TWO", "THREE", "QUORUM", "ALL", "LOCAL_ONE", "LOCAL_QUORUM", "EACH_QUORUM"
]  # fmt: skip


class PipelineError(ValueError):
    """A DataPipeline that cannot be loaded; each problem starts with the field path as the user wrote it."""

    def __init__(self, *problems: str) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


class SpecModel(BaseModel):
    """Base of every spec model: immutable, camelCase in YAML, snake_case in Python, unknown keys refused."""

    model_config = ConfigDict(frozen=True, populate_by_name=True, extra="forbid", alias_generator=to_camel)


def _check_columns(names: Iterable[str]) -> None:
    for name in names:
        if not re.fullmatch(CQL_IDENTIFIER_PATTERN, name):
            raise ValueError(f"column {name!r} is not a CQL identifier (a-z, then up to 47 of a-z, 0-9, _)")


class EnvCredentials(SpecModel):
    """A username and password read from the worker's environment; the spec holds only the variable names."""

    username_env: EnvVarName = Field(description="Environment variable holding the username.")
    password_env: EnvVarName = Field(description="Environment variable holding the password.")


SecretName = Annotated[DnsSubdomain, Field(description="A Secret in the pipeline's namespace.")]
SecretKey = Annotated[str, Field(pattern=r"^[-._a-zA-Z0-9]+$", max_length=253)]


class CaCertificate(SpecModel):
    """A CA bundle (PEM) in a Secret, e.g. the `ca.crt` of a cert-manager or Strimzi CA Secret."""

    secret: SecretName
    key: SecretKey = Field(default="ca.crt", description="The key holding the PEM bundle.")


class ClientCertificate(SpecModel):
    """A client certificate and its private key (PEM), e.g. a `kubernetes.io/tls` Secret, for mutual TLS."""

    secret: SecretName
    certificate: SecretKey = Field(default="tls.crt", description="The key holding the certificate (chain).")
    key: SecretKey = Field(default="tls.key", description="The key holding the unencrypted private key.")


class TlsSpec(SpecModel):
    """TLS to the servers, with certificates from Secrets that the operator mounts into the worker pods."""

    ca: CaCertificate | None = Field(default=None, description="Trusted CAs; unset: the image's system CAs.")
    client_certificate: ClientCertificate | None = Field(
        default=None, description="Presented to the servers (mutual TLS)."
    )
    verify_hostname: bool = Field(
        default=True, description="Check that a server's certificate names the address it was reached at."
    )


class Login(SpecModel):
    """A username and password from one Secret (its keys `username` and `password` unless told)."""

    secret: SecretName
    username_key: SecretKey = Field(default="username", description="The key holding the username.")
    password_key: SecretKey = Field(default="password", description="The key holding the password.")


class SaslLogin(Login):
    """A SASL login to the brokers (security.protocol SASL_SSL with tls, else SASL_PLAINTEXT). With OAUTHBEARER,
    the Secret's usernameKey and passwordKey hold an OAuth client's id and secret, exchanged at tokenEndpoint
    for tokens (the client credentials grant, OIDC)."""

    mechanism: SaslMechanism = Field(default="SCRAM-SHA-512", description="The SASL mechanism.")
    token_endpoint: str | None = Field(
        default=None,
        pattern=r"^https?://[^\s/]+(/\S*)?$",
        description="OAUTHBEARER only (and required with it): the OAuth token endpoint, e.g. Keycloak's "
        "`https://sso/realms/kafka/protocol/openid-connect/token`.",
    )
    scope: str | None = Field(default=None, min_length=1, description="OAUTHBEARER only: the scope to ask for.")

    @model_validator(mode="after")
    def _token_endpoint_with_oauth(self) -> SaslLogin:
        oauth = self.mechanism == "OAUTHBEARER"
        if oauth != (self.token_endpoint is not None):
            raise ValueError("tokenEndpoint is required with mechanism OAUTHBEARER, and only allowed with it")
        if self.scope is not None and not oauth:
            raise ValueError("scope is only allowed with mechanism OAUTHBEARER")
        return self


class SchemaRegistry(SpecModel):
    """A schema registry speaking the Confluent protocol (Confluent's, Apicurio's ccompat API, Karapace...)."""

    url: str = Field(
        pattern=r"^https?://[^\s/]+(/\S*)?$",
        description="Its API root, e.g. `http://registry:8081` or Apicurio's `http://apicurio:8080/apis/ccompat/v7`.",
    )
    auth: Login | None = Field(default=None, description="HTTP basic authentication, from a Secret.")
    timeout_seconds: float = Field(
        default=5.0,
        ge=0.1,
        le=60,
        description="How long one request to the registry may take; a registry that does not answer in time is "
        "asked again after a backoff, and nothing is dead-lettered meanwhile.",
    )


LEGACY_SECURITY = ("security_protocol", "sasl_mechanism", "ssl_ca_location", "credentials")


class SourceSpec(SpecModel):
    """The Kafka topics to consume and how to reach the brokers."""

    bootstrap_servers: str = Field(min_length=1, description="Kafka brokers, comma-separated host:port.")
    topics: list[TopicName] = Field(min_length=1, description="Topics to consume, one or more.")
    group_id: str | None = Field(default=None, min_length=1, description="Default: `<namespace>.<name>`.")
    start_from: StartFrom = Field(default="earliest", description="Where a group without offsets starts.")
    static_membership: bool = Field(
        default=False,
        description="Use the pod name as `group.instance.id`, so a rolling restart causes no rebalance.",
    )
    session_timeout_ms: int = Field(
        default=6_000,
        ge=6_000,
        le=300_000,
        description="How long the group waits for a silent worker (a crashed pod, or this worker while its broker "
        "restarts) before its partitions move on; heartbeats go every fifth of it. The default, the least the "
        "brokers allow (group.min.session.timeout.ms), lets a replacement write within seconds of a crash; a "
        "broker or network stall longer than this makes a live worker rejoin (a rebalance; nothing is lost).",
    )
    consumer_config: dict[str, str | int | bool] = Field(
        default_factory=dict, description="Extra librdkafka settings; those the worker owns are refused."
    )
    format: ValueFormat = Field(
        default="json",
        description="How message values are encoded: `json`, or `avro` or `protobuf` in the Confluent wire format (a "
        "schema id, then the data), decoded with the schema from schemaRegistry. Paths in transform.fields read "
        "them alike (Protobuf fields by their names in the .proto).",
    )
    schema_registry: SchemaRegistry | None = Field(
        default=None, description="Where the schemas of `avro` and `protobuf` values are."
    )
    tls: TlsSpec | None = Field(default=None, description="TLS to the brokers; certificates from Secrets.")
    auth: SaslLogin | None = Field(default=None, description="SASL login to the brokers, from a Secret.")
    security_protocol: SecurityProtocol = Field(
        default="PLAINTEXT", description="Older style (unset with tls or auth): the broker security protocol."
    )
    sasl_mechanism: SaslMechanism | None = Field(
        default=None, description="Older style: the SASL mechanism, with SASL_* protocols."
    )
    ssl_ca_location: str | None = Field(
        default=None, min_length=1, description="Older style: a CA file path in the image, for *SSL."
    )
    credentials: EnvCredentials | None = Field(
        default=None, description="Older style: SASL login from environment variables, with SASL_* only."
    )

    @field_validator("topics")
    @classmethod
    def _distinct_topics(cls, topics: list[str]) -> list[str]:
        if len(set(topics)) != len(topics):
            raise ValueError("topics must be distinct")
        return topics

    @field_validator("consumer_config")
    @classmethod
    def _no_worker_owned_keys(cls, config: dict[str, str | int | bool]) -> dict[str, str | int | bool]:
        for key in config:
            if key in SPEC_FIELD_OF_CONSUMER_KEY:
                raise ValueError(f"{key!r} cannot be set in consumerConfig: use {SPEC_FIELD_OF_CONSUMER_KEY[key]}")
            if key in WORKER_OWNED_CONSUMER_KEYS:
                raise ValueError(f"{key!r} is managed by the worker and cannot be set in consumerConfig")
        return config

    @model_validator(mode="after")
    def _registry_with_avro(self) -> SourceSpec:
        if (self.format != "json") != (self.schema_registry is not None):
            raise ValueError("formats avro and protobuf need schemaRegistry, and only they use one")
        return self

    @model_validator(mode="after")
    def _consistent_security(self) -> SourceSpec:
        if self.tls is not None or self.auth is not None:
            # securityProtocol's default (PLAINTEXT) is what the API server stores when it is not given.
            legacy = [to_camel(name) for name in LEGACY_SECURITY if getattr(self, name) not in (None, "PLAINTEXT")]
            if legacy:
                raise ValueError(
                    f"{', '.join(legacy)}: tls and auth replace securityProtocol, saslMechanism, sslCaLocation and "
                    "credentials (the protocol follows from them); use one style"
                )
            return self
        if self.sasl_mechanism == "OAUTHBEARER":
            raise ValueError("saslMechanism OAUTHBEARER needs a token endpoint: use auth (mechanism, tokenEndpoint)")
        sasl = self.security_protocol.startswith("SASL_")
        if sasl and (self.sasl_mechanism is None or self.credentials is None):
            raise ValueError(f"securityProtocol {self.security_protocol} needs saslMechanism and credentials")
        if not sasl and (self.sasl_mechanism is not None or self.credentials is not None):
            raise ValueError("saslMechanism and credentials need securityProtocol SASL_PLAINTEXT or SASL_SSL")
        if self.ssl_ca_location is not None and not self.security_protocol.endswith("SSL"):
            raise ValueError("sslCaLocation needs securityProtocol SSL or SASL_SSL")
        return self

    @property
    def protocol(self) -> SecurityProtocol:
        """The security protocol: from tls and auth when either is set, else securityProtocol."""
        if self.tls is None and self.auth is None:
            return self.security_protocol
        return "SASL_SSL" if self.tls and self.auth else "SSL" if self.tls else "SASL_PLAINTEXT"


class FieldMapping(SpecModel):
    """Where one column's value comes from, and the CQL type it is coerced to and checked against.

    Without a type, JSON values pass through (objects and arrays as JSON text), the key and headers become
    UTF-8 text and the record timestamp (milliseconds since the epoch) becomes a timestamp.
    """

    source: FieldSource = Field(
        default="value", description="`value` (JSON), `key`, `header`, or the record's topic, partition, ..."
    )
    path: JsonPath | None = Field(default=None, description="For `value`: e.g. `$.item.name`, `items[0].sku`.")
    header: str | None = Field(default=None, min_length=1, description="For `header`: the header name.")
    type: CqlType | None = Field(default=None, description="CQL type the value is coerced to.")
    write: bool = Field(
        default=True,
        description="false: the column is not inserted; it only feeds lookups, the filter, the hook, "
        "sink.ttlFrom or sink.writeTimestampFrom.",
    )

    @model_validator(mode="after")
    def _operands_match_source(self) -> FieldMapping:
        if (self.source == "value") != (self.path is not None):
            raise ValueError("path is required with source 'value', and only allowed with it")
        if (self.source == "header") != (self.header is not None):
            raise ValueError("header is required with source 'header', and only allowed with it")
        return self

    def describe(self) -> str:
        """Where the value comes from, for messages: `$.item.name`, `header 'trace'`, `record offset`."""
        if self.path is not None:
            return self.path
        if self.header is not None:
            return f"header {self.header!r}"
        return "message key" if self.source == "key" else f"record {self.source}"


class Lookup(SpecModel):
    """Derives a text column from a field through a table, e.g. item name -> department."""

    field: str = Field(min_length=1, description="The column (from fields) whose value is looked up.")
    table: dict[str, str] = Field(min_length=1, description="Maps a value of the field to the derived value.")
    default: str | None = Field(default=None, description="For values not in the table; unset: null.")


Scalar = str | int | float | bool


class ColumnTest(SpecModel):
    """One test of a column of the row that fields and lookups built: it `equals` a value, is `in` a list, or
    `exists` (is not null) or not. Values compare as mapped: text with strings, numbers with numbers."""

    column: str = Field(description="A column of transform.fields or transform.lookups.")
    equals: Scalar | None = Field(default=None, description="The column equals this value.")
    in_: list[Scalar] | None = Field(default=None, alias="in", min_length=1, description="The column is one of these.")
    exists: bool | None = Field(default=None, description="true: the column has a value; false: it is null.")

    @model_validator(mode="after")
    def _one_test(self) -> ColumnTest:
        given = [name for name, value in (("equals", self.equals), ("in", self.in_), ("exists", self.exists))
                 if value is not None]  # fmt: skip
        if len(given) != 1:
            raise ValueError(f"test of {self.column!r} needs exactly one of equals, in, exists (got {given or 'none'})")
        return self


class Filter(SpecModel):
    """Which messages are written: those for which every part given holds (`all` of its tests, at least one of
    `any`, `none` of `none`). The others are skipped: committed and counted, never written nor dead-lettered."""

    all_: list[ColumnTest] = Field(default_factory=list, alias="all", description="Every one of these holds.")
    any_: list[ColumnTest] = Field(default_factory=list, alias="any", description="At least one of these holds.")
    none: list[ColumnTest] = Field(default_factory=list, description="None of these holds.")

    @model_validator(mode="after")
    def _some_test(self) -> Filter:
        if not (self.all_ or self.any_ or self.none):
            raise ValueError("a filter needs at least one test in all, any or none")
        return self

    def tests(self) -> list[ColumnTest]:
        return [*self.all_, *self.any_, *self.none]


class TransformSpec(SpecModel):
    """How a message becomes a row: column mappings, lookups, an optional Python hook, required columns."""

    fields: dict[str, FieldMapping] = Field(default_factory=dict, description="Column -> where its value is.")
    lookups: dict[str, Lookup] = Field(default_factory=dict, description="Column -> lookup of a field.")
    python: PythonReference | None = Field(
        default=None,
        description="`module:function` in the worker image, called as `function(record, row)` after fields "
        "and lookups; returns the row to write, raises to reject the message.",
    )
    required: list[str] = Field(default_factory=list, description="Columns whose absence rejects a message.")
    filter: Filter | None = Field(
        default=None,
        description="Write only the messages that pass, tested after fields and lookups (before the python hook); "
        "the others are skipped, counted in sluice_messages_skipped.",
    )
    tombstones: TombstoneAction = Field(
        default="deadLetter",
        description="A message with no value (a tombstone of a compacted topic or CDC stream): `delete` the row "
        "whose primary key the fields read from the key, headers or record (not the value), `skip` it (counted "
        "in sluice_messages_skipped), or `deadLetter` it (the default: nothing deleted or dropped unasked).",
    )

    @field_validator("fields")
    @classmethod
    def _valid_columns(cls, fields: dict[str, FieldMapping]) -> dict[str, FieldMapping]:
        _check_columns(fields)
        return fields

    @field_validator("lookups")
    @classmethod
    def _lookups_read_fields(cls, lookups: dict[str, Lookup], info: ValidationInfo) -> dict[str, Lookup]:
        _check_columns(lookups)
        fields = info.data.get("fields", {})
        for column, lookup in lookups.items():
            if column in fields:
                raise ValueError(f"{column!r} is already a column in fields")
            if lookup.field not in fields:
                raise ValueError(f"lookup {column!r} reads {lookup.field!r}, which is not a column in fields")
        return lookups

    @field_validator("required")
    @classmethod
    def _required_are_columns(cls, required: list[str], info: ValidationInfo) -> list[str]:
        if info.data.get("python") is None:  # a hook may add columns
            known = {*info.data.get("fields", {}), *info.data.get("lookups", {})}
            for column in required:
                if column not in known:
                    raise ValueError(f"{column!r} is not a column in fields or lookups")
        return required

    @model_validator(mode="after")
    def _produces_columns(self) -> TransformSpec:
        if not self.fields and self.python is None:
            raise ValueError("fields must map at least one column, unless python builds the row")
        if self.filter is not None:
            for test in self.filter.tests():
                if test.column not in self.columns():
                    raise ValueError(f"filter tests {test.column!r}, which is not a column in fields or lookups")
        return self

    def columns(self) -> list[str]:
        """The columns the declarative part produces, in order: fields, then lookups."""
        return [*self.fields, *self.lookups]

    def written_columns(self) -> list[str]:
        """The columns inserted: those of `columns()` not marked `write: false`."""
        return [c for c in self.columns() if c in self.lookups or self.fields[c].write]

    def key_columns(self) -> list[str]:
        """The columns a tombstone still has: fields not read from the value, and lookups of them."""
        from_record = [c for c, mapping in self.fields.items() if mapping.source != "value"]
        return [*from_record, *(c for c, lookup in self.lookups.items() if lookup.field in from_record)]


class Replication(SpecModel):
    """Replication of a keyspace that the worker creates."""

    strategy: Literal["SimpleStrategy", "NetworkTopologyStrategy"] = Field(
        default="SimpleStrategy", description="Cassandra replication strategy."
    )
    replication_factor: int = Field(default=1, ge=1, description="Replicas, with SimpleStrategy.")
    datacenters: dict[str, int] = Field(default_factory=dict, description="With NetworkTopologyStrategy.")

    @model_validator(mode="after")
    def _datacenters_match_strategy(self) -> Replication:
        if (self.strategy == "NetworkTopologyStrategy") != bool(self.datacenters):
            raise ValueError("datacenters are required with NetworkTopologyStrategy, and only allowed with it")
        return self

    def as_cql_map(self) -> dict[str, str | int]:
        """The `WITH replication = {...}` map of CREATE KEYSPACE."""
        if self.strategy == "SimpleStrategy":
            return {"class": self.strategy, "replication_factor": self.replication_factor}
        return {"class": self.strategy, **self.datacenters}


class TableDefinition(SpecModel):
    """A keyspace and table the worker creates if missing, so a demo needs no manual CQL."""

    columns: dict[str, CqlType] = Field(min_length=1, description="Column -> CQL type.")
    primary_key: list[str] = Field(min_length=1, max_length=16, description="Partition key column(s), then clustering.")
    partition_key_columns: int = Field(default=1, ge=1, description="How many primaryKey columns partition.")
    replication: Replication = Field(default=Replication(), description="Of the keyspace, if created.")

    @field_validator("columns")
    @classmethod
    def _valid_columns(cls, columns: dict[str, CqlType]) -> dict[str, CqlType]:
        _check_columns(columns)
        return columns

    @model_validator(mode="after")
    def _key_in_columns(self) -> TableDefinition:
        for column in self.primary_key:
            if column not in self.columns:
                raise ValueError(f"primaryKey column {column!r} is not in columns")
        if len(set(self.primary_key)) != len(self.primary_key):
            raise ValueError("primaryKey columns must be distinct")
        if self.partition_key_columns > len(self.primary_key):
            raise ValueError("partitionKeyColumns is larger than primaryKey")
        return self


class TimeFrom(SpecModel):
    """A per-message time taken from a column of the transform: a number in `unit`, or a timestamp."""

    column: str = Field(min_length=1, description="A column of transform.fields or transform.lookups.")
    unit: Literal["seconds", "milliseconds", "microseconds"] = Field(
        default="seconds", description="Of a number; a timestamp-typed column (writeTimestampFrom only) needs none."
    )


class SinkSpec(SpecModel):
    """The Cassandra side: the cluster, and the table transform's rows go to (with spec.tables, the defaults of
    every table)."""

    contact_points: list[HostPort] = Field(min_length=1, description="`host` or `host:port` (port 9042).")
    local_datacenter: str = Field(default="datacenter1", min_length=1, description="Of the contact points.")
    keyspace: CqlIdentifier = Field(description="Keyspace of the table (with spec.tables: of those naming none).")
    table: CqlIdentifier | None = Field(
        default=None, description="Table transform's rows are inserted into; unset with spec.tables."
    )
    consistency: Consistency = Field(default="LOCAL_QUORUM", description="Consistency level of writes.")
    ttl_seconds: int | None = Field(default=None, ge=1, le=630_720_000, description="Unset: rows never expire.")
    use_record_timestamp: bool = Field(
        default=True,
        description="Write `USING TIMESTAMP` of the Kafka record time, so replays and retries never "
        "overwrite a newer version of a row.",
    )
    ttl_from: TimeFrom | None = Field(
        default=None,
        description="Each row's TTL from this column (0: never expires); where it is null, ttlSeconds applies.",
    )
    write_timestamp_from: TimeFrom | None = Field(
        default=None,
        description="`USING TIMESTAMP` from this column, an event time since the epoch (e.g. a CDC change time), "
        "instead of the Kafka record time; where it is null, the record time applies.",
    )
    create_table: TableDefinition | None = Field(default=None, description="Created at start-up if missing.")
    tls: TlsSpec | None = Field(default=None, description="TLS to Cassandra (client_encryption_options).")
    auth: Login | None = Field(default=None, description="Cassandra login (PasswordAuthenticator), from a Secret.")
    credentials: EnvCredentials | None = Field(
        default=None, description="Older style: Cassandra login from environment variables (not with auth)."
    )

    @model_validator(mode="after")
    def _one_login(self) -> SinkSpec:
        if self.auth is not None and self.credentials is not None:
            raise ValueError("set auth (a Secret) or credentials (environment variables), not both")
        return self

    def endpoints(self) -> list[tuple[str, int]]:
        """The contact points as (host, port)."""
        endpoints = []
        for point in self.contact_points:
            host, _, port = point.partition(":")
            endpoints.append((host, int(port) if port else CASSANDRA_PORT))
        return endpoints


class TableMapping(SpecModel):
    """One table of spec.tables: which topics feed it, how their messages become its rows, how they are written.
    Unset options take the sink's (consistency, ttlSeconds, useRecordTimestamp, keyspace)."""

    table: CqlIdentifier = Field(description="Table the rows are inserted into.")
    keyspace: CqlIdentifier | None = Field(default=None, description="Unset: sink.keyspace.")
    topics: list[TopicName] = Field(
        default_factory=list, description="Source topics whose messages feed this table; unset: all of them."
    )
    transform: TransformSpec = Field(description="How each message of those topics becomes a row of this table.")
    consistency: Consistency | None = Field(default=None, description="Unset: sink.consistency.")
    ttl_seconds: int | None = Field(default=None, ge=1, le=630_720_000, description="Unset: sink.ttlSeconds.")
    use_record_timestamp: bool | None = Field(default=None, description="Unset: sink.useRecordTimestamp.")
    ttl_from: TimeFrom | None = Field(default=None, description="Each row's TTL from this column, as sink.ttlFrom.")
    write_timestamp_from: TimeFrom | None = Field(
        default=None, description="`USING TIMESTAMP` from this column, as sink.writeTimestampFrom."
    )
    create_table: TableDefinition | None = Field(default=None, description="Created at start-up if missing.")


@dataclass(frozen=True)
class TableTarget:
    """One table a pipeline writes, every option resolved: from an entry of spec.tables, or from transform and
    sink. `location` is where it was written, for messages (`spec.tables[1]`, or `spec`)."""

    location: str
    keyspace: str
    table: str
    topics: frozenset[str]
    transform: TransformSpec
    consistency: Consistency
    ttl_seconds: int | None
    use_record_timestamp: bool
    ttl_from: TimeFrom | None
    write_timestamp_from: TimeFrom | None
    create_table: TableDefinition | None

    @property
    def name(self) -> str:
        """`keyspace.table`, as dead letters and metrics name it."""
        return f"{self.keyspace}.{self.table}"

    def problems(self) -> list[str]:
        """What cannot work in this table's options and mapping, each naming its field."""
        where = "" if self.location == "spec" else f"{self.location[len('spec.') :]}."
        options = "sink." if self.location == "spec" else where
        found = []
        for name, time_from in (("ttlFrom", self.ttl_from), ("writeTimestampFrom", self.write_timestamp_from)):
            if time_from is not None and time_from.column not in self.transform.columns():
                found.append(f"{options}{name}.column {time_from.column!r} is not a column in fields or lookups")
        if self.write_timestamp_from is not None and not self.use_record_timestamp:
            found.append(
                f"{options}writeTimestampFrom sets the write time: useRecordTimestamp false would contradict it"
            )
        table = self.create_table
        if table is None:
            return found
        for column in self.transform.written_columns():
            if column not in table.columns:
                found.append(f"{where}transform column {column!r} is not in {options}createTable.columns")
        for column in table.primary_key:
            if column not in self.transform.required:
                found.append(
                    f"primary key column {column!r} must be in {where}transform.required: "
                    "a row without it cannot be written"
                )
            if self.transform.tombstones == "delete" and column not in self.transform.key_columns():
                found.append(
                    f"{where}transform.tombstones is delete, but primary key column {column!r} is not read from "
                    "the key, a header or the record: a tombstone has no value to read it from"
                )
        return found


class RetryBackoff(SpecModel):
    """Exponential backoff between retries of failed Cassandra writes."""

    initial_ms: int = Field(default=100, ge=1, description="First delay, in milliseconds.")
    max_ms: int = Field(default=30_000, ge=1, description="Largest delay, in milliseconds.")

    @model_validator(mode="after")
    def _initial_not_above_max(self) -> RetryBackoff:
        if self.initial_ms > self.max_ms:
            raise ValueError(f"initialMs ({self.initial_ms}) must not exceed maxMs ({self.max_ms})")
        return self


class DeliverySpec(SpecModel):
    """Batching, retries, dead letters and offset commits."""

    max_batch_size: int = Field(default=500, ge=1, description="Most messages polled and transformed at once.")
    max_in_flight: int = Field(default=64, ge=1, description="Most concurrent Cassandra writes per worker.")
    max_rows_per_write: int = Field(
        default=50,
        ge=1,
        le=1000,
        description="Most rows of one write request: rows bound for the same replicas (and of the same table and "
        "Kafka partition) go as one unlogged batch, which costs Cassandra far less CPU per row than one request each; "
        "a partition's rows go together.",
    )
    max_bytes_per_write: int = Field(
        default=4096,
        ge=256,
        le=1_048_576,
        description="Most bytes of one write request (the rows' values and their cells' overhead, about what "
        "Cassandra counts): under its batch_size_warn_threshold (5 KiB by default), each batch over which is a WARN "
        "in its log, and far under batch_size_fail_threshold (50 KiB), over which it refuses the batch. Raise it "
        "with the warn threshold. A larger row goes alone. Cassandra counts no batch of one partition: rows of one "
        "partition go up to maxRowsPerWrite (and 1 MiB) a request.",
    )
    retry_backoff: RetryBackoff = Field(default=RetryBackoff(), description="Between write retries.")
    dead_letter_topic: str = Field(
        default="{topic}.dlq",
        pattern=r"^([A-Za-z0-9._-]|\{topic\})+$",
        description="Where rejected messages go; `{topic}` is replaced by the source topic.",
    )
    commit_interval_ms: int = Field(default=1000, ge=1, description="How often durable offsets are committed.")
    shutdown_margin_seconds: int = Field(
        default=5, ge=0, description="Seconds kept before the grace period ends, to commit and close."
    )

    def dead_letter_topic_for(self, topic: str) -> str:
        """The dead-letter topic of a source topic."""
        return self.dead_letter_topic.replace("{topic}", topic)


class Resources(SpecModel):
    """Compute resources of each worker container, as in a Kubernetes container spec."""

    model_config = ConfigDict(coerce_numbers_to_str=True)

    requests: dict[str, str] = Field(default_factory=dict, description="Requested resources, e.g. cpu: 100m.")
    limits: dict[str, str] = Field(default_factory=dict, description="Resource limits, e.g. memory: 256Mi.")


# Labels the operator sets on the worker pods itself; spec.template.labels may not set them.
OPERATOR_LABEL_PREFIXES: Final = ("app.kubernetes.io/", "sluice.dev/")
_LABEL_KEY = re.compile(r"([a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?")
KubeObject = Annotated[dict[str, Any], Field(json_schema_extra={"x-kubernetes-preserve-unknown-fields": True})]
Labels = Annotated[dict[str, str], Field(max_length=64)]


def _check_label_keys(labels: Mapping[str, str]) -> None:
    for key in labels:
        if not _LABEL_KEY.fullmatch(key):
            raise ValueError(f"{key!r} is not a label key ([prefix/]name, the name up to 63 of A-Z, a-z, 0-9, -_.)")


class PodTemplate(SpecModel):
    """Where and how the worker pods run, beside what the operator sets. The Kubernetes-shaped objects
    (affinity, tolerations, topologySpreadConstraints) are checked by the API server when the operator
    applies the Deployment: a refusal is the condition `Ready=False`, reason `ApplyFailed`, with its message."""

    labels: Labels = Field(
        default_factory=dict, description="Extra labels of the worker pods (not app.kubernetes.io/* or sluice.dev/*)."
    )
    annotations: dict[str, str] = Field(default_factory=dict, description="Extra annotations of the worker pods.")
    node_selector: Labels = Field(default_factory=dict, description="Labels of the nodes the workers may run on.")
    affinity: KubeObject | None = Field(default=None, description="A pod spec's affinity, as in Kubernetes.")
    tolerations: list[KubeObject] = Field(default_factory=list, description="A pod spec's tolerations.")
    topology_spread_constraints: list[KubeObject] = Field(
        default_factory=list, description="How the workers spread over zones or nodes, as in a pod spec."
    )
    priority_class_name: DnsSubdomain | None = Field(default=None, description="The workers' PriorityClass.")
    service_account_name: DnsSubdomain | None = Field(
        default=None,
        description="The workers' ServiceAccount (its token is never mounted: workers do not call the API).",
    )
    image_pull_secrets: list[DnsSubdomain] = Field(
        default_factory=list, description="Names of Secrets for pulling the worker image from a private registry."
    )

    @field_validator("labels", "node_selector")
    @classmethod
    def _label_keys(cls, labels: dict[str, str], info: ValidationInfo) -> dict[str, str]:
        _check_label_keys(labels)
        if info.field_name == "labels" and (
            taken := sorted(k for k in labels if k.startswith(OPERATOR_LABEL_PREFIXES))
        ):
            raise ValueError(f"{', '.join(taken)}: the operator sets the app.kubernetes.io/* and sluice.dev/* labels")
        return labels


IntOrPercent = int | Annotated[str, Field(pattern=r"^[0-9]{1,3}%$")]


class DisruptionBudget(SpecModel):
    """A PodDisruptionBudget for the workers: how many a voluntary disruption (a node drain, a cluster upgrade)
    may take at once. Exactly one of the two, a count or a percentage such as "25%"."""

    max_unavailable: IntOrPercent | None = Field(default=None, description="Workers that may be down at once.")
    min_available: IntOrPercent | None = Field(default=None, description="Workers that must stay up.")

    @model_validator(mode="after")
    def _one_bound(self) -> DisruptionBudget:
        if (self.max_unavailable is None) == (self.min_available is None):
            raise ValueError("set exactly one of maxUnavailable and minAvailable")
        for name, value in (("maxUnavailable", self.max_unavailable), ("minAvailable", self.min_available)):
            if isinstance(value, int) and value < 0:
                raise ValueError(f"{name} must not be negative")
        return self


class AutoscalingSpec(SpecModel):
    """While enabled, the operator sets `replicas` from the consumer group's lag."""

    enabled: bool = Field(
        default=False,
        description="The operator owns `replicas`: it sets them from the lag, and overrides kubectl scale.",
    )
    min_replicas: int = Field(default=1, ge=0, description="Fewest workers, also with no lag.")
    max_replicas: int | None = Field(default=None, ge=1, description="Most workers; unset: the partition count.")
    target_lag_per_replica: int = Field(
        default=1000, ge=1, description="Messages of lag one worker is expected to work off: workers = lag / this."
    )
    scale_down_stabilization_seconds: int = Field(
        default=300,
        ge=0,
        le=86_400,
        description="Scale down only to the highest worker count the lag asked for in this many seconds.",
    )

    @model_validator(mode="after")
    def _min_not_above_max(self) -> AutoscalingSpec:
        if self.max_replicas is not None and self.min_replicas > self.max_replicas:
            raise ValueError(f"minReplicas ({self.min_replicas}) must not exceed maxReplicas ({self.max_replicas})")
        return self


class PipelineSpec(SpecModel):
    """What a DataPipeline runs (source, transform, sink, delivery) and how its workers are deployed."""

    source: SourceSpec = Field(description="The Kafka side.")
    transform: TransformSpec | None = Field(
        default=None, description="How each message becomes a row of sink.table; unset with tables."
    )
    sink: SinkSpec = Field(description="The Cassandra side.")
    tables: list[TableMapping] = Field(
        default_factory=list,
        max_length=16,
        description="Several tables, each with its topics, mapping and write options, instead of transform and "
        "sink.table: a message's offset is committed once every table's write of it is durable or dead-lettered.",
    )
    delivery: DeliverySpec = Field(default=DeliverySpec(), description="Batching, retries and dead letters.")
    replicas: int = Field(
        default=1,
        ge=0,
        description="Worker pods (beyond the partition count, idle); set by the operator while autoscaling is enabled.",
    )
    autoscaling: AutoscalingSpec = Field(default=AutoscalingSpec(), description="Lag-driven worker count.")
    paused: bool = Field(default=False, description="Scale workers to zero, keeping committed offsets.")
    image: str | None = Field(default=None, min_length=1, description="Unset: the operator's worker image.")
    termination_grace_period_seconds: int = Field(default=30, ge=1, description="To drain writes and commit.")
    resources: Resources = Field(default=Resources(), description="Compute resources of each worker.")
    template: PodTemplate = Field(default=PodTemplate(), description="Scheduling and metadata of the worker pods.")
    disruption_budget: DisruptionBudget | None = Field(
        default=None, description="A PodDisruptionBudget of the workers; unset: none (removed if there was one)."
    )

    @model_validator(mode="after")
    def _consistent(self) -> PipelineSpec:
        for topic in self.source.topics:
            dead_letters = self.delivery.dead_letter_topic_for(topic)
            if dead_letters in self.source.topics:
                raise ValueError(
                    f"delivery.deadLetterTopic resolves to {dead_letters!r}, a source topic: "
                    "rejected messages would be consumed again"
                )
        if self.delivery.shutdown_margin_seconds >= self.termination_grace_period_seconds:
            raise ValueError("delivery.shutdownMarginSeconds must be less than terminationGracePeriodSeconds")
        if self.tables:
            _check_tables_form(self)
        elif self.transform is None or self.sink.table is None:
            raise ValueError("set transform and sink.table (one table), or tables (several)")
        problems = [problem for target in self.targets() for problem in target.problems()]
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def targets(self) -> list[TableTarget]:
        """The tables this pipeline writes, options resolved: spec.tables, or the one of transform and sink."""
        sink, every_topic = self.sink, frozenset(self.source.topics)
        if not self.tables:
            assert self.transform is not None and sink.table is not None, "validated"
            return [TableTarget("spec", sink.keyspace, sink.table, every_topic, self.transform, sink.consistency,
                                sink.ttl_seconds, sink.use_record_timestamp, sink.ttl_from, sink.write_timestamp_from,
                                sink.create_table)]  # fmt: skip
        return [
            TableTarget(
                location=f"spec.tables[{i}]",
                keyspace=mapping.keyspace or sink.keyspace,
                table=mapping.table,
                topics=frozenset(mapping.topics) or every_topic,
                transform=mapping.transform,
                consistency=mapping.consistency or sink.consistency,
                ttl_seconds=mapping.ttl_seconds or sink.ttl_seconds,
                use_record_timestamp=(
                    sink.use_record_timestamp if mapping.use_record_timestamp is None else mapping.use_record_timestamp
                ),
                ttl_from=mapping.ttl_from,
                write_timestamp_from=mapping.write_timestamp_from,
                create_table=mapping.create_table,
            )
            for i, mapping in enumerate(self.tables)
        ]


def _check_tables_form(spec: PipelineSpec) -> None:
    """With spec.tables: nothing of the one-table form, and every topic fed to some table."""
    sink = spec.sink
    if spec.transform is not None or sink.table is not None:
        raise ValueError("tables replaces transform and sink.table: set one or the other")
    per_table = {"ttlFrom": sink.ttl_from, "writeTimestampFrom": sink.write_timestamp_from,
                 "createTable": sink.create_table}  # fmt: skip
    for name, value in per_table.items():
        if value is not None:
            raise ValueError(f"sink.{name} names columns of one table: with tables, set it in each of tables")
    fed: set[str] = set()
    for i, mapping in enumerate(spec.tables):
        for topic in mapping.topics:
            if topic not in spec.source.topics:
                raise ValueError(f"tables[{i}].topics: {topic!r} is not one of source.topics")
        fed.update(mapping.topics or spec.source.topics)
    unread = [topic for topic in spec.source.topics if topic not in fed]
    if unread:
        raise ValueError(f"source topic(s) {', '.join(map(repr, unread))} feed no table: add them to a table's topics")


class ObjectMeta(SpecModel):
    """The name and namespace of a DataPipeline; other metadata the API server adds is ignored."""

    model_config = ConfigDict(extra="ignore")

    name: DnsLabel = Field(description="Name of the pipeline, a DNS label.")
    namespace: DnsLabel = Field(default="default", description="Namespace of the pipeline.")


class DataPipeline(SpecModel):
    """A complete `sluice.dev/v1alpha1` DataPipeline manifest."""

    api_version: Literal["sluice.dev/v1alpha1"] = Field(default=API_VERSION, description="API version.")
    kind: Literal["DataPipeline"] = Field(default=KIND, description="Resource kind.")
    metadata: ObjectMeta = Field(description="Name and namespace.")
    spec: PipelineSpec = Field(description="The pipeline.")

    @property
    def group_id(self) -> str:
        """The Kafka consumer group of this pipeline: `spec.source.groupId` if set, else `<namespace>.<name>`."""
        return self.spec.source.group_id or f"{self.metadata.namespace}.{self.metadata.name}"


def parse_pipeline(document: object, *, name: str | None = None, namespace: str = "default") -> DataPipeline:
    """Validate a parsed document: a full manifest, or a bare spec (no apiVersion, kind, metadata, spec).

    A bare spec takes its metadata from `name` (required: it names the default consumer group, so it is never
    guessed) and `namespace`; both are ignored for a full manifest. Errors name paths as in a full manifest
    (`spec.source.topics: ...`). Raises `PipelineError`.
    """
    if not isinstance(document, Mapping):
        hint = " (pass a pathlib.Path to load a file)" if isinstance(document, str) else ""
        raise PipelineError(f"expected a DataPipeline manifest or spec mapping, got {type(document).__name__}{hint}")
    if document.keys() & {"apiVersion", "kind", "metadata", "spec"}:
        return _validate(DataPipeline, document)
    if name is None:
        raise PipelineError("metadata.name: a bare spec has no metadata; pass its name to load the pipeline")
    metadata = {"name": name, "namespace": namespace}
    return _validate(DataPipeline, {"apiVersion": API_VERSION, "kind": KIND, "metadata": metadata, "spec": document})


def parse_spec(spec: object) -> PipelineSpec:
    """Validate the `spec` of a DataPipeline object (e.g. from the API server). Raises `PipelineError`."""
    return _validate(PipelineSpec, spec, location=("spec",))


_Model = TypeVar("_Model", bound=BaseModel)


def _validate(model: type[_Model], data: object, location: tuple[str, ...] = ()) -> _Model:
    try:
        return model.model_validate(data)
    except ValidationError as error:
        raise PipelineError(*(_describe(detail, location) for detail in error.errors())) from error


def _describe(detail: ErrorDetails, location: tuple[str, ...]) -> str:
    path = ""
    for part in (*location, *detail["loc"]):
        if isinstance(part, int):
            path += f"[{part}]"
        elif "." in part:
            path += f"[{part!r}]"
        else:
            path += f".{part}" if path else part
    context: dict[str, Any] = detail.get("ctx", {})
    message = str(context["error"]) if detail["type"] == "value_error" else detail["msg"]
    return f"{path}: {message}" if path else message
