"""A group's lag and throughput from snapshots of its offsets, and the admin client's settings (no Kafka)."""

from __future__ import annotations

import pytest
from sluice_operator.kafka import LagUnavailable, admin_config
from sluice_operator.lag import PartitionOffsets, Snapshot, partition_lag, position, throughput, total_lag
from sluice_worker.model import SourceSpec

T0 = 1_800_000_000.0


def offsets(earliest: int, latest: int, committed: int | None) -> PartitionOffsets:
    return PartitionOffsets(earliest=earliest, latest=latest, committed=committed)


def snapshot(taken: float, *committed: int | None, latest: int = 100, earliest: int = 0) -> Snapshot:
    return Snapshot(taken, {("t", p): offsets(earliest, latest, c) for p, c in enumerate(committed)})


def test_a_committed_partition_lags_by_what_is_left() -> None:
    assert partition_lag(offsets(0, 100, 40), "earliest") == 60
    assert partition_lag(offsets(0, 100, 100), "latest") == 0


def test_without_a_usable_commit_the_group_starts_where_start_from_says() -> None:
    assert partition_lag(offsets(10, 100, None), "earliest") == 90  # everything retention kept
    assert partition_lag(offsets(10, 100, None), "latest") == 0
    assert partition_lag(offsets(50, 100, 20), "earliest") == 50  # a commit retention deleted past
    assert position(offsets(50, 100, 20), "latest") is None


def test_the_total_lag_adds_up_the_partitions() -> None:
    assert total_lag(snapshot(T0, 40, None, 100), "earliest") == 60 + 100 + 0


def test_throughput_is_committed_messages_per_second() -> None:
    before = snapshot(T0, 10, None, 50)
    after = snapshot(T0 + 2, 30, 40, 50)
    assert throughput(None, after, "earliest") is None
    assert throughput(before, after, "earliest") == (20 + 40 + 0) / 2  # no commit yet: from the earliest
    assert throughput(before, after, "latest") == 20 / 2  # no commit yet: the position is not known
    assert throughput(after, before, "earliest") is None  # time did not move forward


def test_an_offset_reset_is_no_progress_and_new_partitions_wait_for_a_second_snapshot() -> None:
    before = snapshot(T0, 50)
    after = snapshot(T0 + 1, 20, 30)
    assert throughput(before, after, "earliest") == 0


def test_the_admin_client_connects_like_the_workers_but_without_sasl() -> None:
    plain = SourceSpec(bootstrap_servers="kafka:9092", topics=["t"])
    assert admin_config(plain) == {
        "bootstrap.servers": "kafka:9092", "security.protocol": "PLAINTEXT", "client.id": "sluice-operator",
    }  # fmt: skip
    tls = SourceSpec(bootstrap_servers="kafka:9093", topics=["t"], security_protocol="SSL", ssl_ca_location="/ca.pem")
    assert admin_config(tls)["ssl.ca.location"] == "/ca.pem"
    sasl = SourceSpec.model_validate({
        "bootstrapServers": "kafka:9094", "topics": ["t"], "securityProtocol": "SASL_SSL", "saslMechanism": "PLAIN",
        "credentials": {"usernameEnv": "U", "passwordEnv": "P"},
    })  # fmt: skip
    with pytest.raises(LagUnavailable, match="only the workers have the login"):
        admin_config(sasl)
