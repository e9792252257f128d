"""The settings the worker gives librdkafka: what it owns, and what the spec decides."""

from __future__ import annotations

import logging

from sluice_worker.kafka import consumer_config
from sluice_worker.manifest import parse_pipeline

from .test_model import manifest


def test_the_consumer_heartbeats_a_fifth_of_its_session_and_owns_what_delivery_needs() -> None:
    document = manifest()
    document["spec"]["source"]["sessionTimeoutMs"] = 8000
    document["spec"]["source"]["consumerConfig"] = {"fetch.min.bytes": 1024}
    config = consumer_config(parse_pipeline(document), pod_name="gophers-7c9f-abcde")
    assert config["session.timeout.ms"] == 8000 and config["heartbeat.interval.ms"] == 1600
    assert config["fetch.min.bytes"] == 1024
    assert (config["enable.auto.commit"], config["enable.auto.offset.store"]) == (False, False)
    assert config["client.id"] == "gophers-7c9f-abcde"
    assert isinstance(config["logger"], logging.Logger)  # librdkafka's lines in the worker's log format


def test_static_membership_names_the_member_after_the_pod() -> None:
    document = manifest()
    document["spec"]["source"]["staticMembership"] = True
    assert consumer_config(parse_pipeline(document), "pod-a")["group.instance.id"] == "pod-a"
    assert "group.instance.id" not in consumer_config(parse_pipeline(manifest()), "pod-a")
