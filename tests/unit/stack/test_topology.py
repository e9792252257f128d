"""How the local stack lays out one node or three: names, Cassandra tokens, Kafka's voters and replication."""

from __future__ import annotations

from pathlib import Path

import pytest
from sluice_stack.cassandra import _token
from sluice_stack.kafka import _server_properties
from sluice_stack.stack import Stack, kind_of, nodes_from_env


def _properties(text: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in text.splitlines() if "=" in line and not line.startswith("#"))


def test_three_nodes_are_numbered_and_one_node_keeps_its_plain_name(tmp_path: Path) -> None:
    assert Stack(tmp_path, nodes=3).members("cassandra") == ("cassandra-1", "cassandra-2", "cassandra-3")
    assert Stack(tmp_path, nodes=1).members("kafka") == ("kafka",)
    assert [kind_of(n) for n in ("kafka-2", "cassandra", "kube-apiserver", "kafka-x")] == [
        "kafka", "cassandra", "kube-apiserver", "kafka-x",
    ]  # fmt: skip


def test_the_ring_tokens_are_spread_evenly_over_murmur3s_range() -> None:
    tokens = [_token(node, 3) for node in range(3)]
    assert tokens[0] == -(2**63)
    gaps = {b - a for a, b in zip(tokens, [*tokens[1:], 2**63], strict=True)}
    assert max(gaps) - min(gaps) <= 2, gaps
    assert _token(0, 1) == -(2**63)


def test_three_brokers_vote_together_and_replicate_three_ways_with_two_in_sync(tmp_path: Path) -> None:
    ports = [(9001, 9101), (9002, 9102), (9003, 9103)]
    second = _properties(_server_properties(tmp_path, 2, ports))
    assert second["node.id"] == "2"
    assert second["controller.quorum.voters"] == "1@127.0.0.1:9101,2@127.0.0.1:9102,3@127.0.0.1:9103"
    assert second["listeners"] == "PLAINTEXT://127.0.0.1:9002,CONTROLLER://127.0.0.1:9102"
    assert (second["default.replication.factor"], second["min.insync.replicas"]) == ("3", "2")
    assert second["offsets.topic.replication.factor"] == "3"

    single = _properties(_server_properties(tmp_path, 1, ports[:1]))
    assert (single["default.replication.factor"], single["min.insync.replicas"]) == ("1", "1")


def test_the_size_setting_takes_one_or_three(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLUICE_STACK_NODES", "3")
    assert nodes_from_env() == 3
    monkeypatch.setenv("SLUICE_STACK_NODES", "2")
    with pytest.raises(ValueError, match="SLUICE_STACK_NODES=2"):
        nodes_from_env()
