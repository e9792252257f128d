"""The settings the worker gives librdkafka: what it owns, and what the spec decides."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from sluice_worker.credentials import secret_items
from sluice_worker.kafka import client_config, consumer_config, worker_client_config
from sluice_worker.manifest import parse_pipeline
from sluice_worker.model import PipelineError
from sluice_worker.settings import WorkerSettings

from .test_model import manifest


def test_the_consumer_heartbeats_a_fifth_of_its_session_and_owns_what_delivery_needs() -> None:
    document = manifest()
    document["spec"]["source"]["sessionTimeoutMs"] = 8000
    document["spec"]["source"]["consumerConfig"] = {"fetch.min.bytes": 1024}
    config = consumer_config(parse_pipeline(document), WorkerSettings(pod_name="gophers-7c9f-abcde"))
    assert config["session.timeout.ms"] == 8000 and config["heartbeat.interval.ms"] == 1600
    assert config["fetch.min.bytes"] == 1024
    assert (config["enable.auto.commit"], config["enable.auto.offset.store"]) == (False, False)
    assert config["client.id"] == "gophers-7c9f-abcde"
    assert isinstance(config["logger"], logging.Logger)  # librdkafka's lines in the worker's log format


def test_static_membership_names_the_member_after_the_pod() -> None:
    document = manifest()
    document["spec"]["source"]["staticMembership"] = True
    pod = WorkerSettings(pod_name="pod-a")
    assert consumer_config(parse_pipeline(document), pod)["group.instance.id"] == "pod-a"
    assert "group.instance.id" not in consumer_config(parse_pipeline(manifest()), pod)


def secured(source: dict[str, object]) -> dict[str, object]:
    document = manifest()
    document["spec"]["source"].update(source)
    return document


SASL_SSL = {
    "tls": {"ca": {"secret": "kafka-ca"}, "clientCertificate": {"secret": "kafka-client"}},
    "auth": {"secret": "kafka-user", "mechanism": "SCRAM-SHA-512"},
    "consumerConfig": {"socket.keepalive.enable": True, "fetch.min.bytes": 1024},
}


def test_every_client_of_the_brokers_gets_tls_the_login_and_the_connection_settings(tmp_path: Path) -> None:
    (tmp_path / "source").mkdir()
    for name, value in {"ca.crt": "CA PEM", "tls.crt": "CERT PEM", "tls.key": "KEY PEM",
                        "username": "alice\n", "password": "s3cret\n"}.items():  # fmt: skip
        (tmp_path / "source" / name).write_text(value)
    config = worker_client_config(parse_pipeline(secured(SASL_SSL)), WorkerSettings(credentials_dir=tmp_path))
    assert config["security.protocol"] == "SASL_SSL" and config["sasl.mechanism"] == "SCRAM-SHA-512"
    assert (config["sasl.username"], config["sasl.password"]) == ("alice", "s3cret")  # a file's newline is not part
    assert (config["ssl.ca.pem"], config["ssl.certificate.pem"], config["ssl.key.pem"]) == (
        "CA PEM",
        "CERT PEM",
        "KEY PEM",
    )
    assert config["ssl.endpoint.identification.algorithm"] == "https"
    # The dead-letter producer and replay-dlq use this: connection settings yes, consumer settings no.
    assert config["socket.keepalive.enable"] is True and "fetch.min.bytes" not in config


@pytest.mark.parametrize(
    ("source", "protocol"),
    [({"tls": {}}, "SSL"), ({"auth": {"secret": "u"}}, "SASL_PLAINTEXT"), ({}, "PLAINTEXT")],
)
def test_the_protocol_follows_from_tls_and_auth(source: dict[str, object], protocol: str) -> None:
    values = {"username": "u", "password": "p"}
    assert client_config(parse_pipeline(secured(source)).spec.source, "c", values)["security.protocol"] == protocol


def test_a_login_that_is_not_mounted_names_the_field() -> None:
    with pytest.raises(RuntimeError, match=r"spec.source.auth: no 'password'"):
        client_config(parse_pipeline(secured({"auth": {"secret": "u"}})).spec.source, "c", {"username": "u"})


def test_tls_and_auth_refuse_the_older_fields_by_name() -> None:
    with pytest.raises(PipelineError, match=r"spec.source: .*securityProtocol, sslCaLocation: tls and auth replace"):
        parse_pipeline(secured({"tls": {}, "securityProtocol": "SSL", "sslCaLocation": "/ca.pem"}))
    with pytest.raises(PipelineError, match=r"'ssl.key.pem' cannot be set in consumerConfig: use spec.source.tls"):
        parse_pipeline(secured({"consumerConfig": {"ssl.key.pem": "x"}}))


def test_the_secret_keys_a_pipeline_names_and_where_they_are_mounted() -> None:
    document = secured(SASL_SSL)
    document["spec"]["sink"]["auth"] = {"secret": "cassandra-user", "passwordKey": "pw"}
    items = [(i.secret, i.key, i.path, i.field) for i in secret_items(parse_pipeline(document).spec)]
    assert items == [
        ("kafka-ca", "ca.crt", "source/ca.crt", "spec.source.tls.ca.key"),
        ("kafka-client", "tls.crt", "source/tls.crt", "spec.source.tls.clientCertificate.certificate"),
        ("kafka-client", "tls.key", "source/tls.key", "spec.source.tls.clientCertificate.key"),
        ("kafka-user", "username", "source/username", "spec.source.auth.usernameKey"),
        ("kafka-user", "password", "source/password", "spec.source.auth.passwordKey"),
        ("cassandra-user", "username", "sink/username", "spec.sink.auth.usernameKey"),
        ("cassandra-user", "pw", "sink/password", "spec.sink.auth.passwordKey"),
    ]


def test_oauthbearer_asks_the_token_endpoint_with_the_clients_id_and_secret() -> None:
    auth = {"secret": "kafka-oauth", "mechanism": "OAUTHBEARER", "scope": "kafka",
            "tokenEndpoint": "https://sso.example/realms/kafka/protocol/openid-connect/token"}  # fmt: skip
    source = parse_pipeline(secured({"tls": {}, "auth": auth})).spec.source
    config = client_config(source, "c", {"username": "pipeline-client\n", "password": "client-secret\n"})
    assert config["security.protocol"] == "SASL_SSL" and config["sasl.mechanism"] == "OAUTHBEARER"
    assert config["sasl.oauthbearer.method"] == "oidc"
    assert config["sasl.oauthbearer.token.endpoint.url"] == auth["tokenEndpoint"]
    assert (config["sasl.oauthbearer.client.id"], config["sasl.oauthbearer.client.secret"]) == (
        "pipeline-client",
        "client-secret",
    )
    assert config["sasl.oauthbearer.scope"] == "kafka" and "sasl.username" not in config


@pytest.mark.parametrize(
    ("auth", "message"),
    [
        ({"mechanism": "OAUTHBEARER"}, "tokenEndpoint is required with mechanism OAUTHBEARER"),
        ({"tokenEndpoint": "https://sso/token"}, "tokenEndpoint is required with mechanism OAUTHBEARER, and only"),
        ({"scope": "kafka"}, "scope is only allowed with mechanism OAUTHBEARER"),
    ],
    ids=["no-endpoint", "endpoint-without-oauth", "scope-without-oauth"],
)
def test_oauthbearer_settings_only_with_oauthbearer(auth: dict[str, str], message: str) -> None:
    with pytest.raises(PipelineError, match=message):
        parse_pipeline(secured({"auth": {"secret": "s", **auth}}))
    with pytest.raises(PipelineError, match="saslMechanism OAUTHBEARER needs a token endpoint: use auth"):
        parse_pipeline(secured({"securityProtocol": "SASL_SSL", "saslMechanism": "OAUTHBEARER",
                                "credentials": {"usernameEnv": "U", "passwordEnv": "P"}}))  # fmt: skip
