"""The DataPipeline model: defaults, camelCase aliases, validation errors that name the field, the loader."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError
from sluice_worker.manifest import load_pipeline
from sluice_worker.model import (
    WORKER_OWNED_CONSUMER_KEYS,
    DataPipeline,
    PipelineError,
    PipelineSpec,
    parse_pipeline,
    parse_spec,
)

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "gophers-r-us.yaml"
EXAMPLES = EXAMPLE.parent

MINIMAL_SPEC: dict[str, Any] = {
    "source": {"bootstrapServers": "kafka:9092", "topics": ["orders"]},
    "transform": {"fields": {"id": {"path": "$.id"}}},
    "sink": {"contactPoints": ["cassandra"], "keyspace": "shop", "table": "orders"},
}


def manifest(**spec_changes: Any) -> dict[str, Any]:
    """A full manifest of MINIMAL_SPEC with top-level spec keys replaced."""
    spec = {**copy.deepcopy(MINIMAL_SPEC), **spec_changes}
    return {
        "apiVersion": "sluice.dev/v1alpha1",
        "kind": "DataPipeline",
        "metadata": {"name": "p"},
        "spec": spec,
    }


def error_of(document: dict[str, Any]) -> str:
    with pytest.raises(PipelineError) as raised:
        parse_pipeline(document)
    return str(raised.value)


def with_source(**changes: Any) -> dict[str, Any]:
    return manifest(source={**MINIMAL_SPEC["source"], **changes})


def with_sink(**changes: Any) -> dict[str, Any]:
    return manifest(sink={**MINIMAL_SPEC["sink"], **changes})


def test_defaults() -> None:
    pipeline = parse_pipeline(manifest())
    spec = pipeline.spec
    assert pipeline.metadata.namespace == "default"
    assert (spec.source.start_from, spec.source.security_protocol, spec.source.consumer_config) == (
        "earliest",
        "PLAINTEXT",
        {},
    )
    assert (spec.sink.local_datacenter, spec.sink.consistency, spec.sink.ttl_seconds) == (
        "datacenter1",
        "LOCAL_QUORUM",
        None,
    )
    assert spec.sink.use_record_timestamp is True
    assert spec.sink.create_table is None
    assert (spec.delivery.max_batch_size, spec.delivery.max_in_flight) == (500, 64)
    assert (spec.delivery.retry_backoff.initial_ms, spec.delivery.retry_backoff.max_ms) == (100, 30_000)
    assert (spec.replicas, spec.paused, spec.image, spec.termination_grace_period_seconds) == (
        1,
        False,
        None,
        30,
    )
    assert spec.resources.requests == {} and spec.resources.limits == {}


def test_group_id_defaults_to_namespace_dot_name() -> None:
    document = manifest()
    document["metadata"] = {"name": "orders-to-cassandra", "namespace": "shop"}
    assert parse_pipeline(document).group_id == "shop.orders-to-cassandra"
    assert parse_pipeline(with_source(groupId="legacy-group")).group_id == "legacy-group"


def test_dead_letter_topic_defaults_to_topic_dot_dlq() -> None:
    delivery = parse_pipeline(manifest()).spec.delivery
    assert delivery.dead_letter_topic_for("orders") == "orders.dlq"
    custom = parse_pipeline(manifest(delivery={"deadLetterTopic": "rejects-{topic}"})).spec.delivery
    assert custom.dead_letter_topic_for("orders") == "rejects-orders"
    shared = parse_pipeline(manifest(delivery={"deadLetterTopic": "all-rejects"})).spec.delivery
    assert shared.dead_letter_topic_for("orders") == "all-rejects"


def test_dead_letter_topic_may_not_be_a_source_topic() -> None:
    document = manifest(delivery={"deadLetterTopic": "orders"})
    assert "delivery.deadLetterTopic resolves to 'orders', a source topic" in error_of(document)


def test_camel_case_aliases_round_trip() -> None:
    pipeline = load_pipeline(EXAMPLE)
    dumped = pipeline.model_dump(by_alias=True)
    assert dumped["apiVersion"] == "sluice.dev/v1alpha1"
    assert dumped["spec"]["source"]["bootstrapServers"] == "127.0.0.1:9092"
    assert dumped["spec"]["sink"]["createTable"]["primaryKey"] == ["id"]
    assert dumped["spec"]["delivery"]["retryBackoff"] == {"initialMs": 100, "maxMs": 30_000}
    assert "bootstrap_servers" not in dumped["spec"]["source"]
    assert DataPipeline.model_validate(dumped) == pipeline


def test_snake_case_names_are_accepted_too() -> None:
    spec = PipelineSpec.model_validate(
        {**MINIMAL_SPEC, "source": {"bootstrap_servers": "kafka:9092", "topics": ["orders"]}}
    )
    assert spec.source.bootstrap_servers == "kafka:9092"


def test_models_are_frozen() -> None:
    spec = parse_pipeline(manifest()).spec
    with pytest.raises(ValidationError):
        spec.replicas = 3


def test_unknown_key_is_named() -> None:
    document = manifest()
    document["spec"]["source"]["topic"] = "orders"
    assert "spec.source.topic: Extra inputs are not permitted" in error_of(document)


@pytest.mark.parametrize("key", ["enable.auto.commit", "group.id", "auto.offset.reset", "on_commit"])
def test_consumer_config_refuses_worker_owned_keys(key: str) -> None:
    message = error_of(with_source(consumerConfig={"fetch.min.bytes": 1, key: "x"}))
    assert message.startswith("spec.source.consumerConfig: ")
    assert f"{key!r} is managed by the worker" in message


@pytest.mark.parametrize("key", ["session.timeout.ms", "heartbeat.interval.ms"])
def test_the_group_session_is_set_by_its_own_field_not_consumer_config(key: str) -> None:
    message = error_of(with_source(consumerConfig={key: 6000}))
    assert f"{key!r} cannot be set in consumerConfig: use spec.source.sessionTimeoutMs" in message


def test_session_timeout_is_bounded_like_the_brokers_bound_it() -> None:
    assert parse_pipeline(manifest()).spec.source.session_timeout_ms == 6_000
    assert "spec.source.sessionTimeoutMs: Input should be greater than or equal to 6000" in error_of(
        with_source(sessionTimeoutMs=3000)
    )


def test_consumer_config_passes_other_librdkafka_settings_through() -> None:
    config = {"fetch.min.bytes": 1024, "client.id": "sluice", "check.crcs": True}
    source = parse_pipeline(with_source(consumerConfig=config)).spec.source
    assert source.consumer_config == config
    assert {"enable.auto.commit", "enable.auto.offset.store", "partition.assignment.strategy"} <= (
        WORKER_OWNED_CONSUMER_KEYS
    )


def test_at_least_one_topic() -> None:
    message = error_of(with_source(topics=[]))
    assert message == "spec.source.topics: List should have at least 1 item after validation, not 0"


def test_list_items_are_located_by_index() -> None:
    message = error_of(with_source(topics=["orders", "bad topic"]))
    assert message.startswith("spec.source.topics[1]: String should match pattern")


def test_every_problem_is_reported_on_its_own_line() -> None:
    document = manifest(replicas=-1, sink={**MINIMAL_SPEC["sink"], "table": "Orders"})
    with pytest.raises(PipelineError) as raised:
        parse_pipeline(document)
    assert [problem.split(":")[0] for problem in raised.value.problems] == [
        "spec.sink.table",
        "spec.replicas",
    ]
    assert str(raised.value).count("\n") == 1


def test_retry_backoff_initial_must_not_exceed_max() -> None:
    document = manifest(delivery={"retryBackoff": {"initialMs": 5000, "maxMs": 1000}})
    assert error_of(document) == "spec.delivery.retryBackoff: initialMs (5000) must not exceed maxMs (1000)"


def test_sasl_needs_mechanism_and_credential_env_names() -> None:
    message = error_of(with_source(securityProtocol="SASL_SSL"))
    assert message == "spec.source: securityProtocol SASL_SSL needs saslMechanism and credentials"
    credentials = {"usernameEnv": "KAFKA_USERNAME", "passwordEnv": "KAFKA_PASSWORD"}
    source = parse_pipeline(
        with_source(
            securityProtocol="SASL_SSL",
            saslMechanism="SCRAM-SHA-512",
            sslCaLocation="/etc/kafka/ca.crt",
            credentials=credentials,
        )
    ).spec.source
    assert source.credentials is not None
    assert (source.credentials.username_env, source.credentials.password_env) == (
        "KAFKA_USERNAME",
        "KAFKA_PASSWORD",
    )


def test_ssl_ca_location_needs_tls() -> None:
    assert "sslCaLocation needs securityProtocol SSL or SASL_SSL" in error_of(with_source(sslCaLocation="/ca"))


def test_credentials_are_environment_variable_names() -> None:
    credentials = {"usernameEnv": "CASSANDRA_USER", "passwordEnv": "hunter2 is my password"}
    message = error_of(with_sink(credentials=credentials))
    assert message.startswith("spec.sink.credentials.passwordEnv: String should match pattern")


def test_python_hook_must_be_module_colon_function() -> None:
    transform = {"fields": {"id": {"path": "$.id"}}, "python": "my_hooks:enrich"}
    assert parse_pipeline(manifest(transform=transform)).spec.transform.python == "my_hooks:enrich"
    message = error_of(manifest(transform={**transform, "python": "my_hooks.enrich"}))
    assert message.startswith("spec.transform.python: String should match pattern")


@pytest.mark.parametrize("path", ["$.item.name", "item.name", "$.items[0].sku", "$[2]", "$", "id"])
def test_json_paths_accepted(path: str) -> None:
    transform = {"fields": {"column": {"path": path}}}
    assert parse_pipeline(manifest(transform=transform)).spec.transform.fields["column"].path == path


@pytest.mark.parametrize("path", ["$..name", "item name", "items[x]", ".name", "$.a."])
def test_json_paths_refused(path: str) -> None:
    message = error_of(manifest(transform={"fields": {"column": {"path": path}}}))
    assert message.startswith("spec.transform.fields.column.path: String should match pattern")


def test_field_operands_must_match_their_source() -> None:
    message = error_of(manifest(transform={"fields": {"trace": {"source": "header"}}}))
    assert message == "spec.transform.fields.trace: header is required with source 'header', and only allowed with it"
    message = error_of(manifest(transform={"fields": {"id": {"source": "key", "path": "$.id"}}}))
    assert message == "spec.transform.fields.id: path is required with source 'value', and only allowed with it"


def test_column_names_are_cql_identifiers() -> None:
    message = error_of(manifest(transform={"fields": {"Item-Name": {"path": "$.item.name"}}}))
    assert message.startswith("spec.transform.fields: column 'Item-Name' is not a CQL identifier")


def test_lookups_read_a_mapped_field() -> None:
    lookup = {"field": "item_name", "table": {"blue-gopher": "gophers"}}
    message = error_of(manifest(transform={"fields": {"id": {"path": "$.id"}}, "lookups": {"dept": lookup}}))
    assert message == "spec.transform.lookups: lookup 'dept' reads 'item_name', which is not a column in fields"


def test_required_names_a_column() -> None:
    message = error_of(manifest(transform={"fields": {"id": {"path": "$.id"}}, "required": ["idd"]}))
    assert message == "spec.transform.required: 'idd' is not a column in fields or lookups"


def test_create_table_is_consistent_with_the_transform() -> None:
    table = {"columns": {"id": "text"}, "primaryKey": ["id"]}
    document = with_sink(createTable=table)
    assert error_of(document) == (
        "spec: primary key column 'id' must be in transform.required: a row without it cannot be written"
    )
    document["spec"]["transform"]["required"] = ["id"]
    create_table = parse_pipeline(document).spec.sink.create_table
    assert create_table is not None
    assert (create_table.primary_key, create_table.partition_key_columns) == (["id"], 1)
    document["spec"]["transform"]["fields"]["note"] = {"path": "$.note"}
    assert error_of(document) == "spec: transform column 'note' is not in sink.createTable.columns"
    message = error_of(with_sink(createTable={**table, "primaryKey": ["id", "ts"]}))
    assert message == "spec.sink.createTable: primaryKey column 'ts' is not in columns"


def test_sink_identifiers_and_ttl() -> None:
    assert error_of(with_sink(table="store-events")).startswith("spec.sink.table: String should match pattern")
    assert error_of(with_sink(ttlSeconds=0)) == "spec.sink.ttlSeconds: Input should be greater than or equal to 1"
    assert error_of(with_sink(consistency="SERIAL")).startswith("spec.sink.consistency: Input should be 'ANY'")


def test_sink_endpoints_default_the_port() -> None:
    sink = parse_pipeline(with_sink(contactPoints=["cassandra-0", "10.0.0.7:19042"])).spec.sink
    assert sink.endpoints() == [("cassandra-0", 9042), ("10.0.0.7", 19042)]


def test_replicas_may_be_zero_but_not_negative() -> None:
    assert parse_pipeline(manifest(replicas=0)).spec.replicas == 0
    assert error_of(manifest(replicas=-1)) == "spec.replicas: Input should be greater than or equal to 0"


def test_shutdown_margin_fits_in_the_grace_period() -> None:
    message = error_of(manifest(terminationGracePeriodSeconds=5, delivery={"shutdownMarginSeconds": 5}))
    assert message == "spec: delivery.shutdownMarginSeconds must be less than terminationGracePeriodSeconds"


def test_resource_quantities_may_be_numbers() -> None:
    resources = parse_pipeline(manifest(resources={"requests": {"cpu": 1}, "limits": {"memory": "256Mi"}}))
    assert resources.spec.resources.requests == {"cpu": "1"}


def test_replication_as_cql_map() -> None:
    table = {"columns": {"id": "text"}, "primaryKey": ["id"]}
    document = with_sink(
        createTable={
            **table,
            "replication": {"strategy": "NetworkTopologyStrategy", "datacenters": {"dc1": 3}},
        }
    )
    document["spec"]["transform"]["required"] = ["id"]
    create_table = parse_pipeline(document).spec.sink.create_table
    assert create_table is not None
    assert create_table.replication.as_cql_map() == {"class": "NetworkTopologyStrategy", "dc1": 3}
    simple = load_pipeline(EXAMPLE).spec.sink.create_table
    assert simple is not None
    assert simple.replication.as_cql_map() == {"class": "SimpleStrategy", "replication_factor": 1}


def test_load_full_manifest_from_text() -> None:
    pipeline = load_pipeline(yaml.safe_dump(manifest()))
    assert (pipeline.metadata.name, pipeline.metadata.namespace) == ("p", "default")
    assert pipeline.spec.source.topics == ["orders"]


def test_load_bare_spec_needs_a_name() -> None:
    text = yaml.safe_dump(MINIMAL_SPEC)
    pipeline = load_pipeline(text, name="orders", namespace="shop")
    assert (pipeline.metadata.name, pipeline.metadata.namespace, pipeline.group_id) == (
        "orders",
        "shop",
        "shop.orders",
    )
    with pytest.raises(PipelineError, match=r"^metadata.name: a bare spec has no metadata"):
        load_pipeline(text)


def test_bare_spec_errors_are_located_under_spec() -> None:
    with pytest.raises(PipelineError, match=r"^spec.source.topics: List should have at least 1 item"):
        load_pipeline(
            yaml.safe_dump({**MINIMAL_SPEC, "source": {"bootstrapServers": "k:9092", "topics": []}}), name="p"
        )


def test_parse_spec_locates_errors_under_spec() -> None:
    assert parse_spec(MINIMAL_SPEC).sink.keyspace == "shop"
    with pytest.raises(PipelineError, match=r"^spec.sink.keyspace: Field required$"):
        parse_spec({**MINIMAL_SPEC, "sink": {"contactPoints": ["cassandra"], "table": "orders"}})


def test_load_errors_are_pipeline_errors(tmp_path: Path) -> None:
    with pytest.raises(PipelineError, match="invalid YAML"):
        load_pipeline("spec: [unclosed")
    with pytest.raises(PipelineError, match="expected a DataPipeline manifest or spec mapping, got list"):
        load_pipeline("- a\n- b\n")
    with pytest.raises(PipelineError, match=r"got str \(pass a pathlib.Path to load a file\)"):
        load_pipeline(str(EXAMPLE))
    with pytest.raises(PipelineError, match=r"cannot read .*missing\.yaml: No such file"):
        load_pipeline(tmp_path / "missing.yaml")
    with pytest.raises(PipelineError, match=r"^kind: Input should be 'DataPipeline'$"):
        parse_pipeline({**manifest(), "kind": "Pipeline"})


def test_metadata_added_by_the_api_server_is_ignored() -> None:
    document = manifest()
    document["metadata"] = {"name": "p", "namespace": "shop", "uid": "1234", "resourceVersion": "7"}
    assert parse_pipeline(document).metadata.namespace == "shop"


def test_gophers_example_is_valid() -> None:
    pipeline = load_pipeline(EXAMPLE)
    spec = pipeline.spec
    assert (pipeline.metadata.name, pipeline.metadata.namespace) == ("gophers-r-us", "default")
    assert spec.source.topics == ["store-events"]
    assert spec.source.bootstrap_servers == "127.0.0.1:9092"
    assert spec.sink.endpoints() == [("127.0.0.1", 9042)]
    assert (spec.sink.keyspace, spec.sink.table) == ("store", "store_events")
    assert spec.sink.create_table is not None
    assert spec.sink.create_table.primary_key == ["id"]
    assert spec.sink.create_table.columns == {
        "id": "text",
        "item_name": "text",
        "price": "double",
        "department": "text",
        "event_time": "timestamp",
    }
    assert spec.transform.fields["event_time"].source == "timestamp"
    department = spec.transform.lookups["department"]
    assert (department.field, department.default) == ("item_name", "misc")
    assert set(department.table.values()) == {"gophers", "stickers", "clothing"}


def test_json_schema_describes_every_field() -> None:
    schema = DataPipeline.model_json_schema(by_alias=True)
    models = [schema, *schema["$defs"].values()]
    undocumented = [
        f"{model['title']}.{name}"
        for model in models
        for name, field in model.get("properties", {}).items()
        if not field.get("description")
    ]
    assert undocumented == []
    open_models = [model["title"] for model in models if model.get("additionalProperties") is not False]
    assert open_models == ["ObjectMeta"]  # the API server adds uid, resourceVersion, ...
    source = schema["$defs"]["SourceSpec"]["properties"]
    assert source["topics"]["minItems"] == 1
    assert source["startFrom"] == {
        "default": "earliest",
        "description": source["startFrom"]["description"],
        "enum": ["earliest", "latest"],
        "title": "Startfrom",
        "type": "string",
    }


@pytest.mark.parametrize("example", sorted(p.name for p in EXAMPLES.glob("*.yaml")))
def test_every_example_loads(example: str) -> None:
    pipeline = load_pipeline(EXAMPLES / example)
    assert example.startswith(pipeline.metadata.name)  # the file is named after its pipeline
    assert pipeline.spec.sink.consistency == "LOCAL_QUORUM"
