"""A group's lag and throughput from snapshots of its offsets, and the admin client's settings (no Kafka)."""

from __future__ import annotations

import pytest
from sluice_operator.kafka import LagUnavailable, admin_config
from sluice_operator.lag import (
    THROUGHPUT_WINDOW_SECONDS,
    PartitionOffsets,
    Snapshot,
    partition_lag,
    position,
    throughput,
    total_lag,
    windowed,
)
from sluice_operator.status import lag_status_due
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


def test_with_checks_a_window_apart_the_throughput_is_between_the_last_two() -> None:
    samples: list[Snapshot] = []
    for number in range(4):
        samples = windowed(samples, snapshot(T0 + THROUGHPUT_WINDOW_SECONDS * number, 10 * number, latest=1000))
    assert [s.taken for s in samples] == [T0 + THROUGHPUT_WINDOW_SECONDS * 2, T0 + THROUGHPUT_WINDOW_SECONDS * 3]


def test_with_frequent_checks_a_bursty_commit_shows_a_steady_throughput() -> None:
    """A worker committing 100 messages every 4 s (25 msgs/s), checked every 2 s: between two checks that is
    0 or 50 msgs/s, which would write the status at every check; over the window it stays near 25."""
    samples: list[Snapshot] = []
    shown: dict[str, float] = {}
    per_check: list[float | None] = []
    filling, writes = 0, 0
    for check in range(60):
        taken = T0 + 2 * check
        samples = windowed(samples, snapshot(taken, 100 * (check // 2), latest=100_000))
        rate = throughput(samples[0], samples[-1], "earliest")
        last_two = throughput(samples[-2], samples[-1], "earliest") if len(samples) > 1 else None
        if rate is None:
            continue
        per_check.append(last_two)
        assert samples[-1].taken - samples[0].taken <= THROUGHPUT_WINDOW_SECONDS + 2
        observed = {"throughput": round(rate, 2)}
        due = lag_status_due(shown, observed, refresh_due=False)
        if due:
            shown = observed
        if taken - T0 < THROUGHPUT_WINDOW_SECONDS:
            filling += due
        else:  # a full window
            assert 25 * 0.9 <= rate <= 25 * 1.1
            writes += due
    assert set(per_check) == {0.0, 50.0}  # what the last two checks alone would show, a write each check
    assert filling <= 14  # while the window fills: one a check at most (the rate settles)
    assert writes <= 1  # of the 45 checks with a full window


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
